package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const ruleCols = `id, team_id, name, tags, monitors, severities, events, channels, created_at, updated_at`

func scanRule(r rowScanner) (Rule, error) {
	var (
		rule                                   Rule
		tags, monitors, sevs, events, channels string
		created, updated                       int64
	)
	if err := r.Scan(&rule.ID, &rule.TeamID, &rule.Name, &tags, &monitors, &sevs, &events, &channels, &created, &updated); err != nil {
		return Rule{}, err
	}
	for _, f := range []struct {
		name string
		raw  string
		dst  any
	}{
		{"tags", tags, &rule.Tags},
		{"monitors", monitors, &rule.Monitors},
		{"severities", sevs, &rule.Severities},
		{"events", events, &rule.Events},
		{"channels", channels, &rule.Channels},
	} {
		if err := json.Unmarshal([]byte(f.raw), f.dst); err != nil {
			return Rule{}, fmt.Errorf("rule %d %s: %w", rule.ID, f.name, err)
		}
	}
	rule.CreatedAt, rule.UpdatedAt = fromMS(created), fromMS(updated)
	return rule, nil
}

// ruleLists are the JSON columns of r in ruleCols order; a nil list is
// stored as [] like an empty one.
func ruleLists(r Rule) ([]any, error) {
	out := make([]any, 0, 5)
	for _, v := range []any{r.Tags, r.Monitors, r.Severities, r.Events, r.Channels} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if string(b) == "null" {
			b = []byte("[]")
		}
		out = append(out, string(b))
	}
	return out, nil
}

// CreateRule stores r (TeamID and Name set); a name already used in the
// team is ErrConflict. Channel IDs are not checked here.
func (s *Store) CreateRule(ctx context.Context, r Rule) (Rule, error) {
	if r.TeamID == 0 || r.Name == "" {
		return Rule{}, errors.New("store: rule without team or name")
	}
	lists, err := ruleLists(r)
	if err != nil {
		return Rule{}, fmt.Errorf("store: create rule %q: %w", r.Name, err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	args := append([]any{r.TeamID, r.Name}, lists...)
	args = append(args, ms(now), ms(now))
	got, err := scanRule(s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO rules (team_id, name, tags, monitors, severities, events, channels, created_at, updated_at)
		VALUES (`+placeholders(len(args))+`) RETURNING `+ruleCols), args...))
	if err != nil {
		return Rule{}, fmt.Errorf("store: create rule %q: %w", r.Name, mapErr(err))
	}
	return got, nil
}

// GetRule returns one rule of a team; ErrNotFound if none.
func (s *Store) GetRule(ctx context.Context, teamID, id int64) (Rule, error) {
	return queryOne(ctx, s, fmt.Sprintf("rule %d", id), scanRule, `SELECT `+ruleCols+` FROM rules WHERE id = ? AND team_id = ?`, id, teamID)
}

// ListRules returns a team's rules by name (at most 1000).
func (s *Store) ListRules(ctx context.Context, teamID int64) ([]Rule, error) {
	return queryAll(ctx, s, "list rules", scanRule, `SELECT `+ruleCols+` FROM rules WHERE team_id = ? ORDER BY name, id LIMIT ?`, teamID, listCap)
}

// UpdateRule replaces rule r.ID of team r.TeamID and returns it;
// ErrNotFound if absent, ErrConflict if the name is taken.
func (s *Store) UpdateRule(ctx context.Context, r Rule) (Rule, error) {
	lists, err := ruleLists(r)
	if err != nil {
		return Rule{}, fmt.Errorf("store: update rule %d: %w", r.ID, err)
	}
	args := append([]any{r.Name}, lists...)
	args = append(args, ms(s.now()), r.ID, r.TeamID)
	got, err := scanRule(s.db.QueryRowContext(ctx, s.rebind(`UPDATE rules SET name = ?, tags = ?, monitors = ?, severities = ?,
		events = ?, channels = ?, updated_at = ? WHERE id = ? AND team_id = ? RETURNING `+ruleCols), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Rule{}, fmt.Errorf("store: rule %d: %w", r.ID, ErrNotFound)
	}
	if err != nil {
		return Rule{}, fmt.Errorf("store: update rule %d: %w", r.ID, mapErr(err))
	}
	return got, nil
}

// DeleteRule removes a rule; deliveries it already created stay.
func (s *Store) DeleteRule(ctx context.Context, teamID, id int64) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM rules WHERE id = ? AND team_id = ?`), id, teamID)
	return oneRow(res, err, fmt.Sprintf("delete rule %d", id))
}
