package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// defaultPool is the server's built-in agent, used when a monitor names none.
const defaultPool = "cloud"

// monitorCols are read by scanMonitor, in its order.
const monitorCols = `id, team_id, target, protocol, sni, schedule, warn_days, crit_days, tags, owner,
	recipients, agent_pool, ca_pem, revocation_from, reminder_days, snoozed_until, acked_sha256,
	paused, created_at, updated_at,
	status, leaf_sha256, leaf_expires, last_check_at, next_check_at, failures, reminded_ms, alerted`

// monitorFrom selects monitorCols and the last result (see scanFull).
const monitorFrom = `SELECT ` + monitorCols + `, result
	FROM monitors LEFT JOIN monitor_results ON monitor_results.monitor_id = monitors.id`

// scanFull reads a row of monitorFrom.
func scanFull(r rowScanner) (MonitorWithState, error) {
	var result sql.NullString
	m, err := scanMonitor(r, &result)
	if err != nil {
		return m, err
	}
	return m, setResult(&m, result)
}

// setResult decodes a stored result; NULL is "never checked".
func setResult(m *MonitorWithState, result sql.NullString) error {
	if !result.Valid {
		return nil
	}
	m.State.Result = new(assess.Result)
	if err := json.Unmarshal([]byte(result.String), m.State.Result); err != nil {
		return fmt.Errorf("monitor %d result: %w", m.ID, err)
	}
	return nil
}

// scanMonitor reads monitorCols, then extra destinations.
func scanMonitor(r rowScanner, extra ...any) (MonitorWithState, error) {
	var (
		m                  MonitorWithState
		tags, recipients   string
		status             string
		created, updated   int64
		next               int64
		leafExp, lastCheck sql.NullInt64
		reminderDays       string
		snoozed            sql.NullInt64
		reminded           int64
		alerted            string
	)
	dest := []any{&m.ID, &m.TeamID, &m.Target, &m.Protocol, &m.SNI, &m.Schedule, &m.WarnDays, &m.CritDays,
		&tags, &m.Owner, &recipients, &m.AgentPool, &m.CAPEM, &m.RevocationFrom, &reminderDays, &snoozed, &m.AckedSHA256,
		&m.Paused, &created, &updated,
		&status, &m.State.LeafSHA256, &leafExp, &lastCheck, &next, &m.State.Failures, &reminded, &alerted}
	if err := r.Scan(append(dest, extra...)...); err != nil {
		return m, err
	}
	if err := json.Unmarshal([]byte(tags), &m.Tags); err != nil {
		return m, fmt.Errorf("monitor %d tags: %w", m.ID, err)
	}
	if err := json.Unmarshal([]byte(recipients), &m.Recipients); err != nil {
		return m, fmt.Errorf("monitor %d recipients: %w", m.ID, err)
	}
	if err := json.Unmarshal([]byte(reminderDays), &m.ReminderDays); err != nil {
		return m, fmt.Errorf("monitor %d reminder days: %w", m.ID, err)
	}
	if len(m.ReminderDays) == 0 {
		m.ReminderDays = nil
	}
	m.SnoozedUntil = fromNullMS(snoozed)
	m.State.Reminded = time.Duration(reminded) * time.Millisecond
	m.State.Alerted = splitCodes(alerted)
	m.CreatedAt, m.UpdatedAt = fromMS(created), fromMS(updated)
	m.State.MonitorID = m.ID
	m.State.Status = assess.Status(status)
	m.State.LeafExpires = fromNullMS(leafExp)
	m.State.LastCheckAt = fromNullMS(lastCheck)
	m.State.NextCheckAt = fromMS(next)
	return m, nil
}

// normalize fills defaults so what CreateMonitor returns equals what
// GetMonitor reads back.
func normalize(m *Monitor) {
	if m.TeamID == 0 {
		m.TeamID = DefaultTeamID
	}
	if m.AgentPool == "" {
		m.AgentPool = defaultPool
	}
	// Deduplicated: the tag rows' key is (tag, monitor).
	tags := make([]string, 0, len(m.Tags))
	for _, t := range m.Tags {
		if t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	m.Tags = tags
	if m.Recipients == nil {
		m.Recipients = []string{}
	}
}

func encodeStrings(v []string) (string, error) {
	if v == nil {
		return "[]", nil
	}
	b, err := json.Marshal(v)
	return string(b), err
}

// editable returns the values of the user-editable columns in
// monitorEditCols order.
func editable(m Monitor) ([]any, error) {
	tags, err := encodeStrings(m.Tags)
	if err != nil {
		return nil, err
	}
	recipients, err := encodeStrings(m.Recipients)
	if err != nil {
		return nil, err
	}
	days := "[]"
	if len(m.ReminderDays) > 0 {
		b, err := json.Marshal(m.ReminderDays)
		if err != nil {
			return nil, err
		}
		days = string(b)
	}
	return []any{m.Target, m.Protocol, m.SNI, m.Schedule, m.WarnDays, m.CritDays, tags, m.Owner,
		recipients, m.AgentPool, m.CAPEM, m.RevocationFrom, days, searchText(m)}, nil
}

const monitorEditCols = `target, protocol, sni, schedule, warn_days, crit_days, tags, owner, recipients, agent_pool, ca_pem, revocation_from, reminder_days, search`

// splitCodes reads the alerted column: codes joined by commas.
func splitCodes(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// searchText is what the text filter matches: target, owner and tags,
// lowercased once here (and the pattern in ListMonitors) rather than with
// lower() on every row of every search, which both engines would do
// slightly differently.
func searchText(m Monitor) string {
	return strings.ToLower(strings.Join(append([]string{m.Target, m.Owner}, m.Tags...), "\n"))
}

// CreateMonitor inserts m (ID, times filled) with its state row due at
// firstCheck, and returns it.
func (s *Store) CreateMonitor(ctx context.Context, m Monitor, firstCheck time.Time) (Monitor, error) {
	if m.Target == "" {
		return Monitor{}, errors.New("store: monitor without target")
	}
	normalize(&m)
	now := s.now().UTC().Truncate(time.Millisecond)
	m.CreatedAt, m.UpdatedAt = now, now
	if firstCheck.IsZero() {
		firstCheck = now
	}
	args, err := editable(m)
	if err != nil {
		return Monitor{}, err
	}
	args = append(args, m.TeamID, m.Paused, ms(now), ms(now), ms(firstCheck))
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Monitor{}, fmt.Errorf("store: monitor: %w", err)
	}
	defer tx.Rollback()
	q := `INSERT INTO monitors (` + monitorEditCols + `, team_id, paused, created_at, updated_at, next_check_at)
		VALUES (` + placeholders(len(args)) + `) RETURNING id`
	if err := tx.QueryRowContext(ctx, s.rebind(q), args...).Scan(&m.ID); err != nil {
		return Monitor{}, fmt.Errorf("store: create monitor: %w", mapErr(err))
	}
	if err := s.insertTags(ctx, tx, m.ID, m.Tags); err != nil {
		return Monitor{}, fmt.Errorf("store: create monitor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return Monitor{}, fmt.Errorf("store: create monitor: %w", err)
	}
	return m, nil
}

func (s *Store) insertTags(ctx context.Context, q querier, id int64, tags []string) error {
	rows := make([][]any, len(tags))
	for i, t := range tags {
		rows[i] = []any{id, t}
	}
	return s.insertRows(ctx, q, `INSERT INTO monitor_tags (monitor_id, tag)`, "", 2, rows)
}

// GetMonitor returns a monitor with its state; ErrNotFound if absent or
// in another team.
func (s *Store) GetMonitor(ctx context.Context, teamID, id int64) (MonitorWithState, error) {
	m, err := scanFull(s.rdb.QueryRowContext(ctx, s.rebind(monitorFrom+` WHERE id = ? AND team_id = ?`), id, teamID))
	if errors.Is(err, sql.ErrNoRows) {
		return m, fmt.Errorf("store: monitor %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("store: get monitor %d: %w", id, err)
	}
	return m, nil
}

// UpdateMonitor replaces the editable fields of m; when reschedule is not
// zero the next check moves there.
func (s *Store) UpdateMonitor(ctx context.Context, m Monitor, reschedule time.Time) (Monitor, error) {
	if m.Target == "" {
		return Monitor{}, errors.New("store: monitor without target")
	}
	normalize(&m)
	args, err := editable(m)
	if err != nil {
		return Monitor{}, err
	}
	set := strings.ReplaceAll(monitorEditCols, ",", " = ?,") + ` = ?, updated_at = ?`
	args = append(args, ms(s.now()))
	if !reschedule.IsZero() {
		// A moved check voids any claim on the old slot, so the lease goes
		// too and the new slot can be claimed at once.
		set += `, next_check_at = ?, lease_owner = NULL, lease_until = NULL`
		args = append(args, ms(reschedule))
	}
	args = append(args, m.ID, m.TeamID)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return Monitor{}, fmt.Errorf("store: monitor: %w", err)
	}
	defer tx.Rollback()
	q := `UPDATE monitors SET ` + set + ` WHERE id = ? AND team_id = ? RETURNING ` + monitorCols
	got, err := scanMonitor(tx.QueryRowContext(ctx, s.rebind(q), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Monitor{}, fmt.Errorf("store: monitor %d: %w", m.ID, ErrNotFound)
	}
	if err != nil {
		return Monitor{}, fmt.Errorf("store: update monitor %d: %w", m.ID, mapErr(err))
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM monitor_tags WHERE monitor_id = ?`), m.ID); err != nil {
		return Monitor{}, fmt.Errorf("store: update monitor %d: %w", m.ID, err)
	}
	if err := s.insertTags(ctx, tx, m.ID, got.Tags); err != nil {
		return Monitor{}, fmt.Errorf("store: update monitor %d: %w", m.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return Monitor{}, fmt.Errorf("store: update monitor %d: %w", m.ID, err)
	}
	return got.Monitor, nil
}

// DeleteMonitor removes a monitor, its state and history (events stay).
func (s *Store) DeleteMonitor(ctx context.Context, teamID, id int64) error {
	// Result, tags, history and where-used rows go by ON DELETE CASCADE.
	return s.updateOne(ctx, "delete monitor", id, `DELETE FROM monitors WHERE id = ? AND team_id = ?`, id, teamID)
}

// SetPaused pauses or resumes; resuming makes it due at next.
func (s *Store) SetPaused(ctx context.Context, teamID, id int64, paused bool, next time.Time) error {
	if paused || next.IsZero() {
		return s.updateOne(ctx, "pause monitor", id,
			`UPDATE monitors SET paused = ?, updated_at = ? WHERE id = ? AND team_id = ?`,
			paused, ms(s.now()), id, teamID)
	}
	return s.updateOne(ctx, "resume monitor", id,
		`UPDATE monitors SET paused = ?, updated_at = ?, next_check_at = ?, lease_owner = NULL, lease_until = NULL
		WHERE id = ? AND team_id = ?`,
		paused, ms(s.now()), ms(next), id, teamID)
}

// CheckNow makes a monitor due at once.
func (s *Store) CheckNow(ctx context.Context, teamID, id int64, now time.Time) error {
	// Dropping the lease voids a check in flight: the user asked for a
	// fresh one.
	return s.updateOne(ctx, "check monitor now", id,
		`UPDATE monitors SET next_check_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ? AND team_id = ?`,
		ms(now), id, teamID)
}

// updateOne runs a write that must touch exactly one monitor row.
func (s *Store) updateOne(ctx context.Context, what string, id int64, q string, args ...any) error {
	res, err := s.db.ExecContext(ctx, s.rebind(q), args...)
	if err != nil {
		return fmt.Errorf("store: %s %d: %w", what, id, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s %d: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("store: monitor %d: %w", id, ErrNotFound)
	}
	return nil
}

// ListMonitors returns one page in ID order and the cursor of the next page
// (0 at the end).
func (s *Store) ListMonitors(ctx context.Context, f ListFilter) ([]MonitorWithState, int64, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if f.TeamID != 0 {
		add(`team_id = ?`, f.TeamID)
	}
	if f.Status != "" {
		add(`status = ?`, string(f.Status))
	}
	if f.Tag != "" {
		add(`id IN (SELECT monitor_id FROM monitor_tags WHERE tag = ?)`, f.Tag)
	}
	if f.Text != "" {
		add(`search LIKE ? ESCAPE '\'`, containsPattern(strings.ToLower(f.Text)))
	}
	if f.ExpiringWithin > 0 {
		now := f.Now
		if now.IsZero() {
			now = s.now()
		}
		add(`leaf_expires IS NOT NULL AND leaf_expires <= ?`, ms(now.Add(f.ExpiringWithin)))
	}
	if f.AgentPool != "" {
		add(`agent_pool = ?`, f.AgentPool)
	}
	if f.After > 0 {
		add(`id > ?`, f.After)
	}
	limit := pageLimit(f.Limit)
	q := monitorFrom
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	// One extra row tells whether there is a next page.
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.rdb.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("store: list monitors: %w", err)
	}
	defer rows.Close()
	out := make([]MonitorWithState, 0, limit)
	for rows.Next() {
		m, err := scanFull(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("store: list monitors: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("store: list monitors: %w", err)
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// CountByStatus counts monitors per status ("" = never checked), for metrics.
func (s *Store) CountByStatus(ctx context.Context) (map[string]int, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT status, COUNT(*) FROM monitors GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("store: count monitors: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			status string
			n      int
		)
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("store: count monitors: %w", err)
		}
		out[status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count monitors: %w", err)
	}
	return out, nil
}

// Silence snoozes a monitor's alerts until until (zero: no snooze) and
// acknowledges them while it serves leaf ackSHA256 ("": none). The
// silence is not an edit of the monitor: updates leave it alone.
func (s *Store) Silence(ctx context.Context, teamID, id int64, until time.Time, ackSHA256 string) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE monitors SET snoozed_until = ?, acked_sha256 = ?, updated_at = ?
		WHERE id = ? AND team_id = ?`), msOrNull(until), ackSHA256, ms(s.now()), id, teamID)
	if err != nil {
		return fmt.Errorf("store: silence monitor %d: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: silence monitor %d: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("store: monitor %d: %w", id, ErrNotFound)
	}
	return nil
}
