package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/certmon/certmon/internal/assess"
)

const historyInsertCols = `team_id, monitor_id, checked_at, status, problems, leaf_sha256, changes`

// historyArgs are the historyInsertCols values of a record's entry; at
// stands in for a missing time.
func historyArgs(r CheckRecord, h HistoryEntry, at int64) ([]any, error) {
	if !h.At.IsZero() {
		at = ms(h.At)
	}
	problems := h.Problems
	if problems == nil {
		problems = []assess.Problem{}
	}
	p, err := json.Marshal(problems)
	if err != nil {
		return nil, fmt.Errorf("history of monitor %d: %w", r.Claim.Monitor.ID, err)
	}
	changes, err := encodeStrings(h.Change)
	if err != nil {
		return nil, fmt.Errorf("history of monitor %d: %w", r.Claim.Monitor.ID, err)
	}
	return []any{r.Claim.Monitor.TeamID, r.Claim.Monitor.ID, at, string(h.Status), string(p), h.LeafSHA256, changes}, nil
}

// History returns a monitor's history, newest first.
func (s *Store) History(ctx context.Context, teamID, monitorID int64, limit int) ([]HistoryEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT id, monitor_id, checked_at, status, problems, leaf_sha256, changes
		FROM history WHERE monitor_id = ? AND team_id = ? ORDER BY id DESC LIMIT ?`), monitorID, teamID, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: history of monitor %d: %w", monitorID, err)
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		var (
			h                 HistoryEntry
			at                int64
			status            string
			problems, changes string
		)
		if err := rows.Scan(&h.ID, &h.MonitorID, &at, &status, &problems, &h.LeafSHA256, &changes); err != nil {
			return nil, fmt.Errorf("store: history of monitor %d: %w", monitorID, err)
		}
		h.At, h.Status = fromMS(at), assess.Status(status)
		if err := errors.Join(json.Unmarshal([]byte(problems), &h.Problems), json.Unmarshal([]byte(changes), &h.Change)); err != nil {
			return nil, fmt.Errorf("store: history %d: %w", h.ID, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: history of monitor %d: %w", monitorID, err)
	}
	if len(out) == 0 {
		// Tell "no history yet" from "no such monitor" (or another team's).
		if _, err := s.GetMonitor(ctx, teamID, monitorID); err != nil {
			return nil, err
		}
	}
	return out, nil
}
