package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A claim is fenced by (lease_owner, next_check_at): ClaimDue sets the
// owner and leaves next_check_at as the slot, and a result is accepted only
// while both still match. Another replica taking over an expired lease
// changes the owner; a reschedule or "check now" changes the slot. A record
// with an empty Claim.Owner is fenced by the slot alone: an agent's result
// adopted after the claim that sent its job was lost with its replica
// (agentlink/adopt.go); whichever record of a slot lands first wins.

// ClaimDue leases up to limit unpaused monitors of the given agent pools
// whose next check is due at now and that no live lease holds, oldest
// first. Safe with many replicas (FOR UPDATE SKIP LOCKED on PostgreSQL).
func (s *Store) ClaimDue(ctx context.Context, owner string, pools []string, now time.Time, lease time.Duration, limit int) ([]Claim, error) {
	if limit <= 0 || len(pools) == 0 {
		return nil, nil
	}
	until := now.Add(lease)
	// The CTE runs once; on PostgreSQL its rows stay locked until commit
	// and other replicas skip them instead of waiting.
	q := `WITH due AS (
		SELECT id FROM monitors
		WHERE NOT paused AND agent_pool IN (` + placeholders(len(pools)) + `)
			AND next_check_at <= ? AND (lease_owner IS NULL OR lease_until < ?)
		ORDER BY next_check_at LIMIT ?` + s.skipLocked() + `)
	UPDATE monitors SET lease_owner = ?, lease_until = ?
	WHERE id IN (SELECT id FROM due)
	RETURNING ` + monitorCols
	args := make([]any, 0, len(pools)+5)
	for _, p := range pools {
		args = append(args, p)
	}
	args = append(args, ms(now), ms(now), limit, owner, ms(until))
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: claim due checks: %w", err)
	}
	defer rows.Close()
	var claims []Claim
	for rows.Next() {
		m, err := scanMonitor(rows)
		if err != nil {
			return nil, fmt.Errorf("store: claim due checks: %w", err)
		}
		claims = append(claims, Claim{Monitor: m.Monitor, State: m.State, Slot: m.State.NextCheckAt,
			Owner: owner, Lease: fromMS(ms(until))})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claim due checks: %w", err)
	}
	rows.Close()
	// RETURNING has no order.
	slices.SortFunc(claims, func(a, b Claim) int {
		return cmp.Or(a.Slot.Compare(b.Slot), cmp.Compare(a.Monitor.ID, b.Monitor.ID))
	})
	return claims, nil
}

// LoadPrevious fills the claims' previous results (State.Result), which the
// state machine compares a new result with. It is separate from ClaimDue so
// finding and claiming work stays a single cheap statement, and it runs
// after the claim commits, which is safe: only a lease holder writes a
// result, and the leases are now ours.
func (s *Store) LoadPrevious(ctx context.Context, claims []Claim) error {
	if len(claims) == 0 {
		return nil
	}
	byID := make(map[int64]*Claim, len(claims))
	ids := make([]any, len(claims))
	for i := range claims {
		byID[claims[i].Monitor.ID] = &claims[i]
		ids[i] = claims[i].Monitor.ID
	}
	for len(ids) > 0 {
		n := min(len(ids), chunkRows(1))
		rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT monitor_id, result FROM monitor_results
			WHERE monitor_id IN (`+placeholders(n)+`)`), ids[:n]...)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				id     int64
				result sql.NullString
			)
			if err := rows.Scan(&id, &result); err != nil {
				rows.Close()
				return err
			}
			if c := byID[id]; c != nil {
				m := MonitorWithState{Monitor: c.Monitor, State: c.State}
				if err := setResult(&m, result); err != nil {
					rows.Close()
					return err
				}
				c.State.Result = m.State.Result
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// ExtendLease pushes a claim's lease out (long checks).
func (s *Store) ExtendLease(ctx context.Context, c Claim, until time.Time) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE monitors SET lease_until = ?
		WHERE id = ? AND lease_owner = ? AND next_check_at = ?`),
		ms(until), c.Monitor.ID, c.Owner, ms(c.Slot))
	if err != nil {
		return fmt.Errorf("store: extend lease of monitor %d: %w", c.Monitor.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: extend lease of monitor %d: %w", c.Monitor.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: extend lease of monitor %d: %w", c.Monitor.ID, ErrLeaseLost)
	}
	return nil
}

// ReleaseClaims drops every lease owner holds, making the work due again
// (graceful shutdown).
func (s *Store) ReleaseClaims(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE monitors SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner = ?`), owner); err != nil {
		return fmt.Errorf("store: release claims of %s: %w", owner, err)
	}
	return nil
}

// CountDue counts unpaused monitors whose check is due at now, claimed or
// not: the scheduler's backlog.
func (s *Store) CountDue(ctx context.Context, now time.Time) (int, error) {
	var n int
	err := s.rdb.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM monitors WHERE NOT paused AND next_check_at <= ?`), ms(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count due: %w", err)
	}
	return n, nil
}

// ReleaseStaleClaims drops every lease when this process is the only one
// that can hold any: a SQLite file has one server, so leases found at start
// belong to a process that died, and its work need not wait out the lease.
// On PostgreSQL other replicas may be alive; their leases expire instead.
func (s *Store) ReleaseStaleClaims(ctx context.Context) (int64, error) {
	if s.engine != SQLite {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, `UPDATE monitors SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("store: release stale claims: %w", err)
	}
	// Deliveries being sent when the process died go out again (with the
	// same dedupe key) instead of waiting out their lease.
	if _, err := s.db.ExecContext(ctx, `UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner IS NOT NULL`); err != nil {
		return 0, fmt.Errorf("store: release stale claims: %w", err)
	}
	return res.RowsAffected()
}

// stateArgs are one record's values for the state update's VALUES rows.
func stateArgs(r CheckRecord) []any {
	return []any{r.Claim.Monitor.ID, r.Claim.Owner, ms(r.Claim.Slot), string(r.State.Status),
		r.State.LeafSHA256, msOrNull(r.State.LeafExpires), msOrNull(r.State.LastCheckAt),
		ms(r.State.NextCheckAt), r.State.Failures, r.State.Reminded.Milliseconds(), strings.Join(r.State.Alerted, ",")}
}

// encodeResult is a record's result as stored, nil for none. It runs
// before the transaction starts so the single SQLite writer is held for
// less time.
func encodeResult(r CheckRecord) (any, error) {
	if r.State.Result == nil {
		return nil, nil
	}
	b, err := json.Marshal(r.State.Result)
	if err != nil {
		return nil, fmt.Errorf("monitor %d result: %w", r.Claim.Monitor.ID, err)
	}
	return string(b), nil
}

// RecordChecks writes check outcomes in one transaction. A record whose
// claim was lost (lease taken over, monitor deleted or rescheduled) is
// skipped and reported by index in lost.
func (s *Store) RecordChecks(ctx context.Context, recs []CheckRecord) (lost []int, err error) {
	if len(recs) == 0 {
		return nil, nil
	}
	args := make([][]any, len(recs))
	results := make([]any, len(recs))
	for i, r := range recs {
		args[i] = stateArgs(r)
		if results[i], err = encodeResult(r); err != nil {
			return nil, fmt.Errorf("store: record checks: %w", err)
		}
	}
	// Rows are written in monitor order, so that two PostgreSQL replicas
	// whose batches overlap (a stale claim) lock them in the same order
	// instead of deadlocking.
	order := make([]int, len(recs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(recs[a].Claim.Monitor.ID, recs[b].Claim.Monitor.ID)
	})
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: record checks: %w", err)
	}
	defer tx.Rollback()

	accepted := make([]bool, len(recs))
	if err := s.updateStates(ctx, tx, recs, order, args, accepted); err != nil {
		return nil, fmt.Errorf("store: record checks: %w", err)
	}
	var (
		won         []CheckRecord
		resultRows  [][]any
		resultsGone []any
	)
	for i, ok := range accepted {
		if !ok {
			lost = append(lost, i)
		}
	}
	for _, i := range order {
		switch {
		case !accepted[i]:
			continue
		case results[i] != nil:
			resultRows = append(resultRows, []any{recs[i].Claim.Monitor.ID, results[i]})
		default:
			resultsGone = append(resultsGone, recs[i].Claim.Monitor.ID)
		}
		won = append(won, recs[i])
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO monitor_results (monitor_id, result)`,
		` ON CONFLICT (monitor_id) DO UPDATE SET result = excluded.result`, 2, resultRows); err != nil {
		return nil, fmt.Errorf("store: record checks: results: %w", err)
	}
	for len(resultsGone) > 0 {
		n := min(len(resultsGone), chunkRows(1))
		if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM monitor_results WHERE monitor_id IN (`+placeholders(n)+`)`),
			resultsGone[:n]...); err != nil {
			return nil, fmt.Errorf("store: record checks: results: %w", err)
		}
		resultsGone = resultsGone[n:]
	}
	if err := s.writeChanges(ctx, tx, won); err != nil {
		return nil, fmt.Errorf("store: record checks: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: record checks: %w", err)
	}
	return lost, nil
}

// updateStates writes the state rows whose claims still hold, in few
// multi-row statements (one round trip per chunk on PostgreSQL), and marks
// those in accepted. With the results upsert, this is all an unchanged
// check writes.
func (s *Store) updateStates(ctx context.Context, tx querier, recs []CheckRecord, order []int, args [][]any, accepted []bool) error {
	// Types of the VALUES columns, which the first row casts to.
	types := []string{"BIGINT", "TEXT", "BIGINT", "TEXT", "TEXT", "BIGINT", "BIGINT", "BIGINT", "INTEGER", "BIGINT", "TEXT"}
	per := chunkRows(len(types))
	for start := 0; start < len(order); {
		// A chunk holds each monitor once: a joined UPDATE applies one
		// source row per target row. A repeat (sorted next to the first)
		// waits for the next chunk, where the first write has already
		// cleared the lease.
		end := start + 1
		for end < len(order) && end-start < per &&
			recs[order[end]].Claim.Monitor.ID != recs[order[end-1]].Claim.Monitor.ID {
			end++
		}
		q := `WITH v (mid, owner, slot, status, leaf_sha256, leaf_expires, last_check_at, next_check_at, failures, reminded_ms, alerted)
			AS (VALUES ` + valuesRows(end-start, types) + `)
		UPDATE monitors SET status = v.status, leaf_sha256 = v.leaf_sha256,
			leaf_expires = v.leaf_expires, last_check_at = v.last_check_at, next_check_at = v.next_check_at,
			failures = v.failures, reminded_ms = v.reminded_ms, alerted = v.alerted, lease_owner = NULL, lease_until = NULL
		FROM v
		WHERE monitors.id = v.mid AND monitors.next_check_at = v.slot
			AND (v.owner = '' OR monitors.lease_owner = v.owner)
		RETURNING id`
		flat := make([]any, 0, (end-start)*len(types))
		for _, i := range order[start:end] {
			flat = append(flat, args[i]...)
		}
		rows, err := tx.QueryContext(ctx, s.rebind(q), flat...)
		if err != nil {
			return err
		}
		updated := map[int64]bool{}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			updated[id] = true
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, i := range order[start:end] {
			accepted[i] = updated[recs[i].Claim.Monitor.ID]
		}
		start = end
	}
	return nil
}

type teamCert struct {
	team   int64
	sha256 string
}

// writeChanges appends what accepted records bring besides their state:
// certificates, where-used rows, history and events, each kind as
// multi-row statements. Unchanged checks bring nothing and cost nothing.
func (s *Store) writeChanges(ctx context.Context, tx querier, recs []CheckRecord) error {
	var (
		certs     [][]any
		teamCerts [][]any
		closeUses [][]any
		openUses  [][]any
		history   [][]any
		events    [][]any
		routed    []routable
		seenCert  = map[string]bool{}
		seenTeam  = map[teamCert]bool{}
	)
	now := ms(s.now())
	for _, r := range recs {
		at := now
		if !r.State.LastCheckAt.IsZero() {
			at = ms(r.State.LastCheckAt)
		}
		team := r.Claim.Monitor.TeamID
		for _, c := range r.Certificates {
			first := at
			if !c.FirstSeen.IsZero() {
				first = ms(c.FirstSeen)
			}
			if !seenCert[c.SHA256] {
				seenCert[c.SHA256] = true
				info, err := json.Marshal(c.Info)
				if err != nil {
					return fmt.Errorf("certificate %s: %w", c.SHA256, err)
				}
				der := c.DER
				if der == nil {
					der = []byte{} // NOT NULL
				}
				certs = append(certs, []any{c.SHA256, der, string(info), ms(c.NotAfter), c.Info.Issuer, c.Info.KeyType, first})
			}
			if k := (teamCert{team, c.SHA256}); !seenTeam[k] {
				seenTeam[k] = true
				teamCerts = append(teamCerts, []any{team, c.SHA256, first})
			}
		}
		if prev, cur := r.Claim.State.LeafSHA256, r.State.LeafSHA256; cur != prev {
			if prev != "" {
				closeUses = append(closeUses, []any{r.Claim.Monitor.ID, prev, at})
			}
			if cur != "" {
				openUses = append(openUses, []any{r.Claim.Monitor.ID, team, cur, at})
			}
		}
		if h := r.History; h != nil {
			row, err := historyArgs(r, *h, at)
			if err != nil {
				return err
			}
			history = append(history, row)
		}
		for _, e := range r.Events {
			if e.TeamID == 0 {
				e.TeamID = team
			}
			if e.MonitorID == 0 {
				e.MonitorID = r.Claim.Monitor.ID
			}
			if e.At.IsZero() {
				e.At = fromMS(at)
			}
			e.Key = newEventKey()
			row, err := eventArgs(e)
			if err != nil {
				return err
			}
			events = append(events, row)
			routed = append(routed, routable{event: e, monitor: &r.Claim.Monitor})
		}
	}
	// Shared keys in a fixed order, as above.
	slices.SortFunc(certs, func(a, b []any) int { return cmp.Compare(a[0].(string), b[0].(string)) })
	slices.SortFunc(teamCerts, func(a, b []any) int {
		return cmp.Or(cmp.Compare(a[0].(int64), b[0].(int64)), cmp.Compare(a[1].(string), b[1].(string)))
	})
	if err := s.insertRows(ctx, tx, `INSERT INTO certificates (sha256, der, info, not_after, issuer, key_type, first_seen)`,
		` ON CONFLICT (sha256) DO NOTHING`, 7, certs); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO team_certificates (team_id, sha256, first_seen)`,
		` ON CONFLICT (team_id, sha256) DO NOTHING`, 3, teamCerts); err != nil {
		return fmt.Errorf("team certificates: %w", err)
	}
	if err := s.closeUses(ctx, tx, closeUses); err != nil {
		return fmt.Errorf("certificate uses: %w", err)
	}
	// A monitor back on an older certificate reopens that use; its
	// first_seen stays.
	if err := s.insertRows(ctx, tx, `INSERT INTO monitor_certificates (monitor_id, team_id, sha256, first_seen)`,
		` ON CONFLICT (monitor_id, sha256) DO UPDATE SET last_seen = NULL`, 4, openUses); err != nil {
		return fmt.Errorf("certificate uses: %w", err)
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO history (`+historyInsertCols+`)`, "", 7, history); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO events (`+eventInsertCols+`)`, "", eventCols, events); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return s.enqueue(ctx, tx, routed)
}

// closeUses stamps last_seen on the use of the leaf a monitor no longer
// serves; rows are (monitor_id, previous leaf, at). The open use is always
// the state's leaf, so this is a primary key lookup.
func (s *Store) closeUses(ctx context.Context, tx querier, rows [][]any) error {
	types := []string{"BIGINT", "TEXT", "BIGINT"}
	for len(rows) > 0 {
		n := min(chunkRows(len(types)), len(rows))
		q := `WITH v (mid, sha256, at) AS (VALUES ` + valuesRows(n, types) + `)
			UPDATE monitor_certificates SET last_seen = v.at
			FROM v
			WHERE monitor_certificates.monitor_id = v.mid AND monitor_certificates.sha256 = v.sha256
				AND monitor_certificates.last_seen IS NULL`
		var flat []any
		for _, r := range rows[:n] {
			flat = append(flat, r...)
		}
		if _, err := tx.ExecContext(ctx, s.rebind(q), flat...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}
