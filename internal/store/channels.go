package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// listCap bounds the lists of a team's channels, rules and users: they are
// settings people type in, so a team has few of them.
const listCap = 1000

const channelCols = `id, team_id, name, type, config, created_at, updated_at`

func scanChannel(r rowScanner) (Channel, error) {
	var (
		c                Channel
		created, updated int64
	)
	if err := r.Scan(&c.ID, &c.TeamID, &c.Name, &c.Type, &c.Config, &created, &updated); err != nil {
		return Channel{}, err
	}
	c.CreatedAt, c.UpdatedAt = fromMS(created), fromMS(updated)
	return c, nil
}

// CreateChannel stores c (TeamID, Name, Type and the sealed Config set);
// a name already used in the team is ErrConflict.
func (s *Store) CreateChannel(ctx context.Context, c Channel) (Channel, error) {
	if c.TeamID == 0 || c.Name == "" || c.Type == "" {
		return Channel{}, errors.New("store: channel without team, name or type")
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	c.CreatedAt, c.UpdatedAt = now, now
	err := s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO channels (team_id, name, type, config, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING id`), c.TeamID, c.Name, c.Type, c.Config, ms(now), ms(now)).Scan(&c.ID)
	if err != nil {
		return Channel{}, fmt.Errorf("store: create channel %q: %w", c.Name, mapErr(err))
	}
	return c, nil
}

// GetChannel returns one channel of a team; ErrNotFound if none.
func (s *Store) GetChannel(ctx context.Context, teamID, id int64) (Channel, error) {
	return queryOne(ctx, s, fmt.Sprintf("channel %d", id), scanChannel, `SELECT `+channelCols+` FROM channels WHERE id = ? AND team_id = ?`, id, teamID)
}

// ListChannels returns a team's channels by name (at most 1000).
func (s *Store) ListChannels(ctx context.Context, teamID int64) ([]Channel, error) {
	return queryAll(ctx, s, "list channels", scanChannel, `SELECT `+channelCols+` FROM channels WHERE team_id = ? ORDER BY name, id LIMIT ?`, teamID, listCap)
}

// UpdateChannel replaces the name, type and config of channel c.ID of
// team c.TeamID and returns it; ErrNotFound if absent, ErrConflict if the
// name is taken.
func (s *Store) UpdateChannel(ctx context.Context, c Channel) (Channel, error) {
	got, err := scanChannel(s.db.QueryRowContext(ctx, s.rebind(`UPDATE channels SET name = ?, type = ?, config = ?, updated_at = ?
		WHERE id = ? AND team_id = ? RETURNING `+channelCols), c.Name, c.Type, c.Config, ms(s.now()), c.ID, c.TeamID))
	if errors.Is(err, sql.ErrNoRows) {
		return Channel{}, fmt.Errorf("store: channel %d: %w", c.ID, ErrNotFound)
	}
	if err != nil {
		return Channel{}, fmt.Errorf("store: update channel %d: %w", c.ID, mapErr(err))
	}
	return got, nil
}

// DeleteChannel removes a channel. In the same transaction its pending
// deliveries become skipped ("channel deleted"), so no worker keeps
// retrying a destination that is gone, and rules stop naming it.
func (s *Store) DeleteChannel(ctx context.Context, teamID, id int64) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: delete channel %d: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM channels WHERE id = ? AND team_id = ?`), id, teamID)
	if err := oneRow(res, err, fmt.Sprintf("delete channel %d", id)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE deliveries SET status = ?, last_error = ?, lease_owner = NULL, lease_until = NULL
		WHERE team_id = ? AND channel_id = ? AND status = ?`),
		DeliverySkipped, "channel deleted", teamID, id, DeliveryPending); err != nil {
		return fmt.Errorf("store: delete channel %d: skip deliveries: %w", id, err)
	}
	if err := s.dropRuleChannel(ctx, tx, teamID, id); err != nil {
		return fmt.Errorf("store: delete channel %d: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: delete channel %d: %w", id, err)
	}
	return nil
}

// dropRuleChannel removes channel id from the team's rules. The list is
// JSON, so the rules are read and rewritten here rather than in SQL that
// would differ per engine; a team has few rules.
func (s *Store) dropRuleChannel(ctx context.Context, tx *sql.Tx, teamID, id int64) error {
	rows, err := tx.QueryContext(ctx, s.rebind(`SELECT id, channels FROM rules WHERE team_id = ?`), teamID)
	if err != nil {
		return err
	}
	type change struct {
		id       int64
		channels string
	}
	var changes []change
	for rows.Next() {
		var (
			ruleID int64
			raw    string
			chans  []int64
		)
		if err := rows.Scan(&ruleID, &raw); err != nil {
			rows.Close()
			return err
		}
		if err := json.Unmarshal([]byte(raw), &chans); err != nil {
			rows.Close()
			return fmt.Errorf("rule %d channels: %w", ruleID, err)
		}
		if !slices.Contains(chans, id) {
			continue
		}
		b, err := json.Marshal(slices.DeleteFunc(chans, func(c int64) bool { return c == id }))
		if err != nil {
			rows.Close()
			return err
		}
		changes = append(changes, change{ruleID, string(b)})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range changes {
		if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE rules SET channels = ?, updated_at = ? WHERE id = ?`),
			c.channels, ms(s.now()), c.id); err != nil {
			return err
		}
	}
	return nil
}
