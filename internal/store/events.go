package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

const eventInsertCols = `team_id, monitor_id, occurred_at, kind, status, severity, message, data, event_key`

// eventArgs are the eventInsertCols values of e.
func eventArgs(e Event) ([]any, error) {
	data := []byte("{}")
	if e.Data != nil {
		var err error
		if data, err = json.Marshal(e.Data); err != nil {
			return nil, fmt.Errorf("event %s of monitor %d: %w", e.Kind, e.MonitorID, err)
		}
	}
	return []any{e.TeamID, e.MonitorID, ms(e.At), e.Kind, string(e.Status), e.Severity, e.Message, string(data), e.Key}, nil
}

// AppendEvents stores events that belong to no check with their
// deliveries; events of checks are written with their check record, and
// agent alerts with the claim that raised them.
func (s *Store) AppendEvents(ctx context.Context, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	defer tx.Rollback()
	if err := s.writeEvents(ctx, tx, events); err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: append events: %w", err)
	}
	return nil
}

// writeEvents inserts events of no monitor and their deliveries in tx.
func (s *Store) writeEvents(ctx context.Context, tx querier, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([][]any, 0, len(events))
	routed := make([]routable, 0, len(events))
	for _, e := range events {
		e.Key = newEventKey()
		row, err := eventArgs(e)
		if err != nil {
			return err
		}
		rows = append(rows, row)
		routed = append(routed, routable{event: e})
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO events (`+eventInsertCols+`)`, "", eventCols, rows); err != nil {
		return err
	}
	return s.enqueue(ctx, tx, routed)
}

// eventCols is the number of eventInsertCols.
const eventCols = 9

// ListEvents returns events newest first and the next cursor (0 at the end).
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]Event, int64, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a any) {
		where = append(where, cond)
		args = append(args, a)
	}
	if f.TeamID != 0 {
		add(`team_id = ?`, f.TeamID)
	}
	if f.MonitorID != 0 {
		add(`monitor_id = ?`, f.MonitorID)
	}
	if f.Kind != "" {
		add(`kind = ?`, f.Kind)
	}
	if f.Before > 0 {
		add(`id < ?`, f.Before)
	}
	limit := pageLimit(f.Limit)
	q := `SELECT id, ` + eventInsertCols + ` FROM events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ?`
	return queryPage(ctx, s, "list events", scanEvent, func(e Event) int64 { return e.ID }, limit, q, args...)
}
