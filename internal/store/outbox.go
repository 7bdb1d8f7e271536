package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// The outbox: an event that should be told (Event.Notify) gets its
// deliveries, one per destination, in the transaction that writes it, so a
// state change and what it tells commit or vanish together. Workers
// (package notify) claim due deliveries as leases, like checks, and settle
// each one: sent, failed (retried later, or dead), deferred or skipped.

// routable is an event being written and, for events of a check, its
// monitor (tags for rules, recipients for email).
type routable struct {
	event   Event
	monitor *Monitor
}

func newEventKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "ev_" + hex.EncodeToString(b[:])
}

// enqueue writes the deliveries of evs inside tx: one per channel of every
// matching rule, and one per recipient address of the event's monitor.
func (s *Store) enqueue(ctx context.Context, tx querier, evs []routable) error {
	var teams []any
	seenTeam := map[int64]bool{}
	var told []routable
	for _, r := range evs {
		if !r.event.Notify || r.event.Silenced {
			continue
		}
		told = append(told, r)
		if !seenTeam[r.event.TeamID] {
			seenTeam[r.event.TeamID] = true
			teams = append(teams, r.event.TeamID)
		}
	}
	if len(told) == 0 {
		return nil
	}
	rules, err := s.routingRules(ctx, tx, teams)
	if err != nil {
		return fmt.Errorf("deliveries: %w", err)
	}
	now := ms(s.now())
	type dest struct {
		key     string
		channel int64
		address string
	}
	seen := map[dest]bool{}
	var rows [][]any
	add := func(team int64, d dest) {
		if !seen[d] {
			seen[d] = true
			rows = append(rows, []any{team, d.key, d.channel, d.address, DeliveryPending, now, now})
		}
	}
	for _, r := range told {
		e := r.event
		var tags []string
		if r.monitor != nil {
			tags = r.monitor.Tags
		}
		for _, rule := range rules[e.TeamID] {
			if rule.Matches(e, tags) {
				for _, ch := range rule.Channels {
					add(e.TeamID, dest{e.Key, ch, ""})
				}
			}
		}
		if r.monitor != nil {
			for _, addr := range recipientAddresses(*r.monitor) {
				add(e.TeamID, dest{e.Key, 0, addr})
			}
		}
	}
	return s.insertRows(ctx, tx, `INSERT INTO deliveries (team_id, event_key, channel_id, address, status, next_at, created_at)`,
		` ON CONFLICT (event_key, channel_id, address) DO NOTHING`, 7, rows)
}

// routingRules are the rules of teams whose channels still exist.
func (s *Store) routingRules(ctx context.Context, tx querier, teams []any) (map[int64][]Rule, error) {
	exists := map[int64]bool{}
	rows, err := tx.QueryContext(ctx, s.rebind(`SELECT id FROM channels WHERE team_id IN (`+placeholders(len(teams))+`)`), teams...)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		exists[id] = true
	}
	if err := closeRows(rows); err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, s.rebind(`SELECT team_id, tags, monitors, severities, events, channels
		FROM rules WHERE team_id IN (`+placeholders(len(teams))+`) ORDER BY id`), teams...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int64][]Rule{}
	for rows.Next() {
		var (
			r                                   Rule
			tags, mons, sevs, kinds, channelIDs string
		)
		if err := rows.Scan(&r.TeamID, &tags, &mons, &sevs, &kinds, &channelIDs); err != nil {
			return nil, err
		}
		for _, f := range []struct {
			raw string
			v   any
		}{{tags, &r.Tags}, {mons, &r.Monitors}, {sevs, &r.Severities}, {kinds, &r.Events}, {channelIDs, &r.Channels}} {
			if err := json.Unmarshal([]byte(f.raw), f.v); err != nil {
				return nil, fmt.Errorf("rule of team %d: %w", r.TeamID, err)
			}
		}
		live := r.Channels[:0]
		for _, id := range r.Channels {
			if exists[id] {
				live = append(live, id)
			}
		}
		r.Channels = live
		out[r.TeamID] = append(out[r.TeamID], r)
	}
	return out, rows.Err()
}

func closeRows(rows interface {
	Close() error
	Err() error
}) error {
	if err := rows.Close(); err != nil {
		return err
	}
	return rows.Err()
}

// recipientAddresses are the email addresses among a monitor's owner and
// recipients, lowercased and once each.
func recipientAddresses(m Monitor) []string {
	var out []string
	for _, a := range append([]string{m.Owner}, m.Recipients...) {
		a = strings.ToLower(strings.TrimSpace(a))
		if strings.Count(a, "@") == 1 && !strings.ContainsAny(a, " \t<>,;") && !contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Destination is where deliveries go: a channel, or an email address of
// a team (ChannelID 0).
type Destination struct {
	TeamID    int64
	ChannelID int64
	Address   string
}

// DueDestinations lists up to limit destinations with deliveries due at
// now that no live lease holds, the longest waiting first.
func (s *Store) DueDestinations(ctx context.Context, now time.Time, limit int) ([]Destination, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT team_id, channel_id, address FROM deliveries
		WHERE status = 'pending' AND next_at <= ? AND (lease_owner IS NULL OR lease_until < ?)
		GROUP BY team_id, channel_id, address ORDER BY MIN(next_at) LIMIT ?`), ms(now), ms(now), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due destinations: %w", err)
	}
	defer rows.Close()
	var out []Destination
	for rows.Next() {
		var d Destination
		if err := rows.Scan(&d.TeamID, &d.ChannelID, &d.Address); err != nil {
			return nil, fmt.Errorf("store: due destinations: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries leases up to limit deliveries for one destination that
// are due at now and that no live lease holds, oldest first, with their
// events: what one message will carry. Safe with many replicas (FOR
// UPDATE SKIP LOCKED on PostgreSQL).
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, dest Destination, now time.Time, lease time.Duration, limit int) ([]Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	q := `WITH due AS (
		SELECT id FROM deliveries
		WHERE status = 'pending' AND channel_id = ? AND address = ? AND team_id = ?
			AND next_at <= ? AND (lease_owner IS NULL OR lease_until < ?)
		ORDER BY next_at, id LIMIT ?` + s.skipLocked() + `)
	UPDATE deliveries SET lease_owner = ?, lease_until = ?
	WHERE id IN (SELECT id FROM due)
	RETURNING id`
	rows, err := s.db.QueryContext(ctx, s.rebind(q), dest.ChannelID, dest.Address, dest.TeamID, ms(now), ms(now), limit,
		owner, ms(now.Add(lease)))
	if err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	var ids []any
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: claim deliveries: %w", err)
		}
		ids = append(ids, id)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", err)
	}
	// The claim is committed: read the claimed rows with their events.
	out := make([]Delivery, 0, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), chunkRows(1))
		rows, err := s.db.QueryContext(ctx, s.rebind(deliveryFrom+` WHERE d.id IN (`+placeholders(n)+`) ORDER BY d.next_at, d.id`), ids[:n]...)
		if err != nil {
			return nil, fmt.Errorf("store: claim deliveries: %w", err)
		}
		for rows.Next() {
			d, err := scanDelivery(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: claim deliveries: %w", err)
			}
			d.Owner = owner
			out = append(out, d)
		}
		if err := closeRows(rows); err != nil {
			return nil, fmt.Errorf("store: claim deliveries: %w", err)
		}
		ids = ids[n:]
	}
	return out, nil
}

// Settlement is how a claimed delivery ended.
type Settlement struct {
	// Status: DeliverySent, DeliveryPending (retry or defer at NextAt),
	// DeliveryDead or DeliverySkipped.
	Status string
	NextAt time.Time
	// Failed counts an attempt (a send that failed); a deferral (quiet
	// hours, digest, rate limit) does not.
	Failed bool
	Error  string
	Code   int
	At     time.Time
}

// SettleDeliveries records the outcome of claimed deliveries. Only rows
// still leased by owner change (a lease taken over by another replica
// wins); the number changed is returned.
func (s *Store) SettleDeliveries(ctx context.Context, owner string, ids []int64, st Settlement) (int64, error) {
	set := `status = ?, next_at = ?, last_error = ?, last_code = ?, lease_owner = NULL, lease_until = NULL`
	args := []any{st.Status, ms(st.NextAt), truncate(st.Error, 1000), st.Code}
	if st.Failed {
		set += `, attempts = attempts + 1`
	}
	if st.Status == DeliverySent {
		set += `, sent_at = ?`
		args = append(args, ms(st.At))
	}
	var changed int64
	for len(ids) > 0 {
		n := min(len(ids), chunkRows(1))
		a := append(append([]any{}, args...), owner)
		for _, id := range ids[:n] {
			a = append(a, id)
		}
		res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE deliveries SET `+set+`
			WHERE lease_owner = ? AND id IN (`+placeholders(n)+`)`), a...)
		if err != nil {
			return changed, fmt.Errorf("store: settle deliveries: %w", err)
		}
		k, err := res.RowsAffected()
		if err != nil {
			return changed, fmt.Errorf("store: settle deliveries: %w", err)
		}
		changed += k
		ids = ids[n:]
	}
	return changed, nil
}

// ReleaseDeliveries drops every delivery lease owner holds (shutdown).
func (s *Store) ReleaseDeliveries(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner = ?`), owner); err != nil {
		return fmt.Errorf("store: release deliveries of %s: %w", owner, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// scanEvent reads `id, ` + eventInsertCols.
func scanEvent(r rowScanner) (Event, error) {
	var (
		e            Event
		at           int64
		status, data string
	)
	if err := r.Scan(&e.ID, &e.TeamID, &e.MonitorID, &at, &e.Kind, &status, &e.Severity, &e.Message, &data, &e.Key); err != nil {
		return e, err
	}
	e.At, e.Status = fromMS(at), assess.Status(status)
	if err := json.Unmarshal([]byte(data), &e.Data); err != nil {
		return e, fmt.Errorf("event %d data: %w", e.ID, err)
	}
	return e, nil
}

// NotifySettingsFor returns the settings of the user with that email
// address in the team, zero when there is none (immediate, everything).
func (s *Store) NotifySettingsFor(ctx context.Context, teamID int64, email string) (NotifySettings, error) {
	var raw string
	err := s.rdb.QueryRowContext(ctx, s.rebind(`SELECT settings FROM users WHERE team_id = ? AND lower(email) = ?`),
		teamID, strings.ToLower(email)).Scan(&raw)
	if errors.Is(err, sql.ErrNoRows) {
		return NotifySettings{}, nil
	}
	if err != nil {
		return NotifySettings{}, fmt.Errorf("store: settings of %s: %w", email, err)
	}
	var ns NotifySettings
	if err := json.Unmarshal([]byte(raw), &ns); err != nil {
		return NotifySettings{}, fmt.Errorf("store: settings of %s: %w", email, err)
	}
	return ns, nil
}
