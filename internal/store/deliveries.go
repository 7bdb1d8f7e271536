package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// deliveryFrom selects a delivery with its event and the event's monitor's
// tags (scanDelivery). Both joins are LEFT: a delivery outlives a deleted
// monitor, and is still shown should its event be gone.
const deliveryFrom = `SELECT d.id, d.team_id, d.event_key, d.channel_id, d.address, d.status, d.attempts, d.next_at,
		d.last_error, d.last_code, d.created_at, d.sent_at,
		e.id, e.monitor_id, e.occurred_at, e.kind, e.status, e.severity, e.message, e.data, m.tags
	FROM deliveries d
	LEFT JOIN events e ON e.event_key = d.event_key AND e.team_id = d.team_id
	LEFT JOIN monitors m ON m.id = e.monitor_id`

// scanDelivery reads a row of deliveryFrom.
func scanDelivery(r rowScanner) (Delivery, error) {
	var (
		d                               Delivery
		next, created                   int64
		sent                            sql.NullInt64
		eventID, monitorID, at          sql.NullInt64
		kind, status, sev, msg, data, t sql.NullString
	)
	err := r.Scan(&d.ID, &d.TeamID, &d.EventKey, &d.ChannelID, &d.Address, &d.Status, &d.Attempts, &next,
		&d.LastError, &d.LastCode, &created, &sent,
		&eventID, &monitorID, &at, &kind, &status, &sev, &msg, &data, &t)
	if err != nil {
		return Delivery{}, err
	}
	d.NextAt, d.CreatedAt, d.SentAt = fromMS(next), fromMS(created), fromNullMS(sent)
	if !eventID.Valid {
		return d, nil
	}
	d.Event = Event{
		ID:        eventID.Int64,
		TeamID:    d.TeamID,
		MonitorID: monitorID.Int64,
		At:        fromNullMS(at),
		Kind:      kind.String,
		Status:    assess.Status(status.String),
		Severity:  sev.String,
		Message:   msg.String,
		Key:       d.EventKey,
	}
	if data.Valid && data.String != "" {
		if err := json.Unmarshal([]byte(data.String), &d.Event.Data); err != nil {
			return Delivery{}, fmt.Errorf("event %d data: %w", eventID.Int64, err)
		}
	}
	if t.Valid && t.String != "" {
		if err := json.Unmarshal([]byte(t.String), &d.Tags); err != nil {
			return Delivery{}, fmt.Errorf("monitor %d tags: %w", monitorID.Int64, err)
		}
	}
	return d, nil
}

// ListDeliveries returns deliveries newest first, each with its event and
// its monitor's tags, and the next cursor (0 at the end). A delivery whose
// event is gone keeps a zero Event.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, int64, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a any) {
		where = append(where, cond)
		args = append(args, a)
	}
	if f.TeamID != 0 {
		add(`d.team_id = ?`, f.TeamID)
	}
	if f.Status != "" {
		add(`d.status = ?`, f.Status)
	}
	if f.Before > 0 {
		add(`d.id < ?`, f.Before)
	}
	limit := pageLimit(f.Limit)
	q := deliveryFrom
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	// One extra row tells whether there is a next page.
	q += ` ORDER BY d.id DESC LIMIT ?`
	return queryPage(ctx, s, "list deliveries", scanDelivery, func(d Delivery) int64 { return d.ID }, limit, q, args...)
}

// GetDelivery returns one delivery of a team with its event; ErrNotFound
// if none.
func (s *Store) GetDelivery(ctx context.Context, teamID, id int64) (Delivery, error) {
	return queryOne(ctx, s, fmt.Sprintf("delivery %d", id), scanDelivery, deliveryFrom+` WHERE d.id = ? AND d.team_id = ?`, id, teamID)
}

// RetryDelivery puts a dead (or skipped) delivery back in the outbox, due
// at now with a fresh attempt count. ErrNotFound if the team has no such
// delivery, ErrConflict if it is pending or sent already (retrying those
// would send twice). The last error stays until the next attempt.
func (s *Store) RetryDelivery(ctx context.Context, teamID, id int64, now time.Time) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE deliveries SET status = ?, attempts = 0, next_at = ?,
		lease_owner = NULL, lease_until = NULL
		WHERE id = ? AND team_id = ? AND status IN (?, ?)`),
		DeliveryPending, ms(now), id, teamID, DeliveryDead, DeliverySkipped)
	if err != nil {
		return fmt.Errorf("store: retry delivery %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: retry delivery %d: %w", id, err)
	}
	if n > 0 {
		return nil
	}
	var status string
	err = s.db.QueryRowContext(ctx, s.rebind(`SELECT status FROM deliveries WHERE id = ? AND team_id = ?`), id, teamID).Scan(&status)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: delivery %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("store: retry delivery %d: %w", id, err)
	}
	return fmt.Errorf("store: retry delivery %d: it is %s: %w", id, status, ErrConflict)
}
