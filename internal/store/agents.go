package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Errors of agent authentication, besides ErrNotFound (unknown agent or
// wrong key). Callers answer all of them alike (401); they are told apart
// for the log and for the agent's "revoked" message.
var (
	ErrAgentRevoked    = errors.New("agent revoked")
	ErrAgentKeyExpired = errors.New("agent key expired")
)

// Agent is a self-hosted agent: its credentials (hashes only) and the
// status its hub last wrote. All times are UTC.
type Agent struct {
	ID     string // public, "agt_..."
	TeamID int64
	Name   string
	Pool   string
	// KeyHash is the SHA-256 of the current key, valid until KeyExpires.
	KeyHash    []byte
	KeyExpires time.Time
	// PrevKeyHash is the key replaced by the last rotation, still valid
	// until PrevKeyExpires (the overlap); nil when there is none.
	PrevKeyHash    []byte
	PrevKeyExpires time.Time
	RevokedAt      time.Time // zero while not revoked
	CreatedAt      time.Time
	Status         AgentStatus
	// OfflineSince is when the agent was reported offline (an
	// agent_offline event was written); zero while it is not.
	OfflineSince time.Time
}

// AgentStatus is what the hub reports of a connected agent.
type AgentStatus struct {
	Version    string
	Hostname   string
	Address    string
	LastSeen   time.Time
	JobsDone   int64
	Errors     int64
	QueueDepth int
	Connected  bool
	// Replica names the server process holding the connection.
	Replica string
}

// CheckKey tells whether keyHash opens the agent at now: nil, ErrNotFound
// for a wrong key, ErrAgentRevoked or ErrAgentKeyExpired. The key is
// matched first, so only its holder learns the agent is revoked or expired.
func (a Agent) CheckKey(keyHash []byte, now time.Time) error {
	cur := len(a.KeyHash) > 0 && subtle.ConstantTimeCompare(keyHash, a.KeyHash) == 1
	prev := len(a.PrevKeyHash) > 0 && subtle.ConstantTimeCompare(keyHash, a.PrevKeyHash) == 1
	switch {
	case !cur && !prev:
		return fmt.Errorf("store: agent %s: wrong key: %w", a.ID, ErrNotFound)
	case !a.RevokedAt.IsZero():
		return fmt.Errorf("store: agent %s: %w", a.ID, ErrAgentRevoked)
	case cur && now.Before(a.KeyExpires):
		return nil
	case prev && now.Before(a.PrevKeyExpires):
		return nil
	}
	return fmt.Errorf("store: agent %s: %w", a.ID, ErrAgentKeyExpired)
}

// KeyExpiresFor is the expiry of the key with keyHash (current or
// previous); zero for neither.
func (a Agent) KeyExpiresFor(keyHash []byte) time.Time {
	switch {
	case len(a.KeyHash) > 0 && subtle.ConstantTimeCompare(keyHash, a.KeyHash) == 1:
		return a.KeyExpires
	case len(a.PrevKeyHash) > 0 && subtle.ConstantTimeCompare(keyHash, a.PrevKeyHash) == 1:
		return a.PrevKeyExpires
	}
	return time.Time{}
}

const agentCols = `id, team_id, name, pool, key_hash, key_expires, prev_key_hash, prev_key_expires,
	revoked_at, created_at, version, hostname, address, last_seen, jobs_done, errors, queue_depth,
	connected, connected_replica, offline_since`

func scanAgent(r rowScanner) (Agent, error) {
	var (
		a                          Agent
		keyExp, created            int64
		prevExp, revoked, lastSeen sql.NullInt64
		offline                    sql.NullInt64
		keyHash, prevHash          []byte
	)
	err := r.Scan(&a.ID, &a.TeamID, &a.Name, &a.Pool, &keyHash, &keyExp, &prevHash, &prevExp,
		&revoked, &created, &a.Status.Version, &a.Status.Hostname, &a.Status.Address, &lastSeen,
		&a.Status.JobsDone, &a.Status.Errors, &a.Status.QueueDepth, &a.Status.Connected, &a.Status.Replica, &offline)
	if err != nil {
		return Agent{}, err
	}
	a.KeyHash = keyHash
	if len(prevHash) > 0 {
		a.PrevKeyHash = prevHash
	}
	a.KeyExpires = fromMS(keyExp)
	a.PrevKeyExpires = fromNullMS(prevExp)
	a.RevokedAt = fromNullMS(revoked)
	a.CreatedAt = fromMS(created)
	a.Status.LastSeen = fromNullMS(lastSeen)
	a.OfflineSince = fromNullMS(offline)
	return a, nil
}

// CreateAgent stores a new agent with its key hash; ID, TeamID, Name,
// Pool, KeyHash and KeyExpires must be set. A name already used in the
// team is ErrConflict.
func (s *Store) CreateAgent(ctx context.Context, a Agent) (Agent, error) {
	if a.ID == "" || len(a.KeyHash) == 0 || a.KeyExpires.IsZero() {
		return Agent{}, errors.New("store: agent without id, key hash or expiry")
	}
	a.CreatedAt = s.now().UTC().Truncate(time.Millisecond)
	a.KeyExpires = a.KeyExpires.UTC().Truncate(time.Millisecond)
	a.PrevKeyHash, a.PrevKeyExpires, a.RevokedAt, a.Status = nil, time.Time{}, time.Time{}, AgentStatus{}
	_, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO agents (id, team_id, name, pool, key_hash, key_expires, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), a.ID, a.TeamID, a.Name, a.Pool, a.KeyHash, ms(a.KeyExpires), ms(a.CreatedAt))
	if err != nil {
		return Agent{}, fmt.Errorf("store: create agent %q: %w", a.Name, mapErr(err))
	}
	return a, nil
}

// GetAgent returns one agent of a team; ErrNotFound if none.
func (s *Store) GetAgent(ctx context.Context, teamID int64, id string) (Agent, error) {
	a, err := scanAgent(s.rdb.QueryRowContext(ctx, s.rebind(`SELECT `+agentCols+` FROM agents WHERE id = ? AND team_id = ?`), id, teamID))
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, fmt.Errorf("store: agent %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("store: agent %s: %w", id, err)
	}
	return a, nil
}

// ListAgents returns a team's agents by name (agents are few: at most
// 1000 are returned).
func (s *Store) ListAgents(ctx context.Context, teamID int64) ([]Agent, error) {
	return s.queryAgents(ctx, `SELECT `+agentCols+` FROM agents WHERE team_id = ? ORDER BY name, id LIMIT 1000`, teamID)
}

// AgentsByID returns the agents of any team among ids (the hub re-checks
// the credentials of its connections with it); unknown IDs are left out.
func (s *Store) AgentsByID(ctx context.Context, ids []string) ([]Agent, error) {
	var out []Agent
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		as, err := s.queryAgents(ctx, `SELECT `+agentCols+` FROM agents WHERE id IN (`+placeholders(n)+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, as...)
		ids = ids[n:]
	}
	return out, nil
}

func (s *Store) queryAgents(ctx context.Context, q string, args ...any) ([]Agent, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: list agents: %w", err)
	}
	defer rows.Close()
	out := []Agent{}
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list agents: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list agents: %w", err)
	}
	return out, nil
}

// AuthenticateAgent finds agent id and checks keyHash at now (see
// CheckKey): ErrNotFound for an unknown agent or a wrong key,
// ErrAgentRevoked, ErrAgentKeyExpired.
func (s *Store) AuthenticateAgent(ctx context.Context, id string, keyHash []byte, now time.Time) (Agent, error) {
	a, err := scanAgent(s.rdb.QueryRowContext(ctx, s.rebind(`SELECT `+agentCols+` FROM agents WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return Agent{}, fmt.Errorf("store: agent %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Agent{}, fmt.Errorf("store: agent %s: %w", id, err)
	}
	if err := a.CheckKey(keyHash, now); err != nil {
		return Agent{}, err
	}
	return a, nil
}

// RotateAgentKey makes keyHash the agent's key until expires. The key it
// replaces stays valid until the earlier of its own expiry and
// overlapUntil, which is returned. A revoked agent cannot be rotated
// (ErrAgentRevoked).
func (s *Store) RotateAgentKey(ctx context.Context, teamID int64, id string, keyHash []byte, expires, overlapUntil time.Time) (time.Time, error) {
	if len(keyHash) == 0 || expires.IsZero() {
		return time.Time{}, errors.New("store: rotate agent key without hash or expiry")
	}
	var prev int64
	// SET reads the row as it was, on both engines: prev_key_* get the old
	// key, not the new one.
	err := s.db.QueryRowContext(ctx, s.rebind(`UPDATE agents SET
			prev_key_hash = key_hash,
			prev_key_expires = CASE WHEN key_expires < ? THEN key_expires ELSE ? END,
			key_hash = ?, key_expires = ?
		WHERE id = ? AND team_id = ? AND revoked_at IS NULL
		RETURNING prev_key_expires`),
		ms(overlapUntil), ms(overlapUntil), keyHash, ms(expires), id, teamID).Scan(&prev)
	if errors.Is(err, sql.ErrNoRows) {
		if _, gerr := s.GetAgent(ctx, teamID, id); gerr != nil {
			return time.Time{}, gerr
		}
		return time.Time{}, fmt.Errorf("store: rotate agent %s: %w", id, ErrAgentRevoked)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: rotate agent %s: %w", id, mapErr(err))
	}
	return fromMS(prev), nil
}

// RevokeAgent revokes an agent at once (both keys); revoking a revoked
// agent keeps the first revocation time.
func (s *Store) RevokeAgent(ctx context.Context, teamID int64, id string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE agents SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND team_id = ?`),
		ms(now), id, teamID)
	return oneRow(res, err, "revoke agent "+id)
}

// DeleteAgent removes an agent; its connections fail their next
// credential check.
func (s *Store) DeleteAgent(ctx context.Context, teamID int64, id string) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM agents WHERE id = ? AND team_id = ?`), id, teamID)
	return oneRow(res, err, "delete agent "+id)
}

// UpdateAgentStatus writes what the hub knows of a connection. With
// st.Connected it records everything and st.Replica as the holder; without
// it only last_seen is written, and connected is cleared only if st.Replica
// still holds the agent (a reconnect to another replica wins).
func (s *Store) UpdateAgentStatus(ctx context.Context, id string, st AgentStatus) error {
	var (
		res sql.Result
		err error
	)
	if st.Connected {
		res, err = s.db.ExecContext(ctx, s.rebind(`UPDATE agents SET version = ?, hostname = ?, address = ?, last_seen = ?,
			jobs_done = ?, errors = ?, queue_depth = ?, connected = ?, connected_replica = ? WHERE id = ?`),
			clipReported(st.Version), clipReported(st.Hostname), clipReported(st.Address), msOrNull(st.LastSeen),
			st.JobsDone, st.Errors, st.QueueDepth, true, st.Replica, id)
	} else {
		res, err = s.db.ExecContext(ctx, s.rebind(`UPDATE agents SET last_seen = COALESCE(?, last_seen),
			connected = CASE WHEN connected_replica = ? THEN ? ELSE connected END WHERE id = ?`),
			msOrNull(st.LastSeen), st.Replica, false, id)
	}
	return oneRow(res, err, "agent status "+id)
}

// OfflinePool is an agent pool of a team none of whose agents has been
// seen lately.
type OfflinePool struct {
	TeamID int64
	Pool   string
	// LastSeen is the latest time any agent of the pool was seen; zero
	// if none ever was.
	LastSeen time.Time
}

// OfflinePools returns the pools of every team that have agents but no
// non-revoked agent seen at or after since (an agent never seen counts
// from its creation, so a pool whose agent was never installed goes
// offline too), ordered by team and pool.
func (s *Store) OfflinePools(ctx context.Context, since time.Time) ([]OfflinePool, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT team_id, pool, MAX(last_seen) FROM agents
		GROUP BY team_id, pool
		HAVING COALESCE(MAX(CASE WHEN revoked_at IS NULL THEN COALESCE(last_seen, created_at) END), 0) < ?
		ORDER BY team_id, pool`), ms(since))
	if err != nil {
		return nil, fmt.Errorf("store: offline pools: %w", err)
	}
	defer rows.Close()
	var out []OfflinePool
	for rows.Next() {
		var (
			p    OfflinePool
			last sql.NullInt64
		)
		if err := rows.Scan(&p.TeamID, &p.Pool, &last); err != nil {
			return nil, fmt.Errorf("store: offline pools: %w", err)
		}
		p.LastSeen = fromNullMS(last)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: offline pools: %w", err)
	}
	return out, nil
}

// AgentEvent makes the event an agent alert writes (nil: none).
type AgentEvent func(Agent) *Event

// MarkAgentsOffline claims the non-revoked agents last seen before
// lastSeenBefore that are not marked offline yet, marking them offline
// since now, and returns them: each offline period is returned once,
// whichever replica asks (the UPDATE is atomic on both engines). Agents
// never seen are left alone: they were never online. The event of each
// is written (and routed) in the same transaction.
func (s *Store) MarkAgentsOffline(ctx context.Context, lastSeenBefore, now time.Time, event AgentEvent) ([]Agent, error) {
	return s.updateAgents(ctx, "mark agents offline", event, `UPDATE agents SET offline_since = ?
		WHERE offline_since IS NULL AND revoked_at IS NULL AND last_seen < ?
		RETURNING `+agentCols, ms(now), ms(lastSeenBefore))
}

// MarkAgentOnline clears the agent's offline mark and returns when it was
// set; zero if the agent was not marked offline (or another replica
// cleared the mark first, so exactly one caller sees each return). The
// event for the return, if any, is written in the same transaction.
func (s *Store) MarkAgentOnline(ctx context.Context, id string, event func(offlineSince time.Time) *Event) (time.Time, error) {
	var since sql.NullInt64
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT offline_since FROM agents WHERE id = ?`), id).Scan(&since)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, fmt.Errorf("store: agent %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
	}
	if !since.Valid {
		return time.Time{}, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
	}
	defer tx.Rollback()
	// Compare and set: only the caller that clears this very mark wins.
	res, err := tx.ExecContext(ctx, s.rebind(`UPDATE agents SET offline_since = NULL WHERE id = ? AND offline_since = ?`),
		id, since.Int64)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	if event != nil {
		if e := event(fromMS(since.Int64)); e != nil {
			if err := s.writeEvents(ctx, tx, []Event{*e}); err != nil {
				return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return time.Time{}, fmt.Errorf("store: agent %s online: %w", id, err)
	}
	return fromMS(since.Int64), nil
}

// MarkKeysExpiring claims the non-revoked agents whose current key
// expires before before and that were not warned about that expiry yet,
// and returns them: each key's expiry is returned once, whichever replica
// asks; a rotated key gets its own turn.
func (s *Store) MarkKeysExpiring(ctx context.Context, before time.Time, event AgentEvent) ([]Agent, error) {
	return s.updateAgents(ctx, "mark agent keys expiring", event, `UPDATE agents SET key_warned_for = key_expires
		WHERE revoked_at IS NULL AND key_expires < ? AND (key_warned_for IS NULL OR key_warned_for <> key_expires)
		RETURNING `+agentCols, ms(before))
}

// updateAgents runs an UPDATE ... RETURNING agentCols and writes the
// agents' events in the same transaction.
func (s *Store) updateAgents(ctx context.Context, what string, event AgentEvent, q string, args ...any) ([]Agent, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, mapErr(err))
	}
	var (
		out    []Agent
		events []Event
	)
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, a)
		if event != nil {
			if e := event(a); e != nil {
				events = append(events, *e)
			}
		}
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	if err := s.writeEvents(ctx, tx, events); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// clipReported bounds the strings an agent reports about itself and keeps
// them printable: PostgreSQL refuses NUL in TEXT, and nobody wants escape
// sequences in a status page.
func clipReported(s string) string {
	const max = 256
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "")
}

// oneRow maps an UPDATE or DELETE that matched no row to ErrNotFound.
func oneRow(res sql.Result, err error, what string) error {
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, mapErr(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	return nil
}
