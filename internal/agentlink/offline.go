package agentlink

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// sweep is the hub's share of the work every replica does alike: it reads
// the offline pools (so this replica claims and reports their checks),
// and claims offline agents and expiring keys from the store, writing an
// event for each; the store's claims make each event happen once across
// replicas. It recovers from panics so the Run loop survives.
func (h *Hub) sweep(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("agent hub sweep panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	now := h.now()
	since := now.Add(-h.cfg.OfflineGrace)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	pools, err := h.store.OfflinePools(sctx, since)
	cancel()
	if err != nil {
		// Keep the last answer: a store outage changes no agent.
		h.log.Warn("reading offline agent pools", "err", err)
	} else {
		byKey := make(map[poolKey]store.OfflinePool, len(pools))
		names := make([]string, 0, len(pools))
		for _, p := range pools {
			byKey[poolKey{p.TeamID, p.Pool}] = p
			names = append(names, p.Pool)
		}
		slices.Sort(names)
		h.mu.Lock()
		h.offline, h.offlineNames = byKey, slices.Compact(names)
		h.mu.Unlock()
	}

	sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	agents, err := h.store.MarkAgentsOffline(sctx, since, now, func(a store.Agent) *store.Event {
		return &store.Event{
			TeamID: a.TeamID, At: now, Kind: monitor.EventAgentOffline, Status: assess.Unknown, Severity: "critical", Notify: true,
			Message: fmt.Sprintf("agent %s (pool %s) offline since %s", a.Name, a.Pool, fmtTime(a.Status.LastSeen)),
			Data:    map[string]any{"agent_id": a.ID, "pool": a.Pool, "last_seen": fmtTime(a.Status.LastSeen)},
		}
	})
	cancel()
	if err != nil {
		h.log.Warn("marking offline agents", "err", err)
	}
	for _, a := range agents {
		h.log.Warn("agent offline", "agent", a.ID, "pool", a.Pool, "last_seen", a.Status.LastSeen)
	}

	sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	_, err = h.store.MarkKeysExpiring(sctx, now.Add(h.cfg.KeyWarning), func(a store.Agent) *store.Event {
		verb := "expires"
		if !a.KeyExpires.After(now) {
			verb = "expired"
		}
		return &store.Event{
			TeamID: a.TeamID, At: now, Kind: monitor.EventAgentKeyExpiring, Status: assess.Warning, Severity: "warning", Notify: true,
			Message: fmt.Sprintf("key of agent %s (pool %s) %s on %s; rotate it", a.Name, a.Pool, verb, a.KeyExpires.Format("2006-01-02 15:04 MST")),
			Data:    map[string]any{"agent_id": a.ID, "key_expires_at": fmtTime(a.KeyExpires)},
		}
	})
	cancel()
	if err != nil {
		h.log.Warn("looking for expiring agent keys", "err", err)
	}
}

// markOnline clears the agent's offline mark after it said hello here; if
// this connection ended an offline period, an agent_online event is
// written with the cleared mark.
func (c *conn) markOnline(now time.Time) {
	h := c.hub
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	since, err := h.store.MarkAgentOnline(ctx, c.agent.ID, func(since time.Time) *store.Event {
		return &store.Event{
			TeamID: c.agent.TeamID, At: now, Kind: monitor.EventAgentOnline, Status: assess.OK, Severity: "info", Notify: true,
			Message: fmt.Sprintf("agent %s (pool %s) online again (reported offline at %s)", c.agent.Name, c.agent.Pool, fmtTime(since)),
			Data:    map[string]any{"agent_id": c.agent.ID, "pool": c.agent.Pool, "offline_since": fmtTime(since)},
		}
	})
	cancel()
	if err != nil {
		c.log.Warn("clearing the agent's offline mark", "err", err)
		return
	}
	if !since.IsZero() {
		c.log.Info("agent online again", "offline_since", since)
	}
}

// offlineLocked tells whether the team's pool was offline at the last
// sweep; h.mu is held.
func (h *Hub) offlineLocked(team int64, pool string) (store.OfflinePool, bool) {
	p, ok := h.offline[poolKey{team, pool}]
	return p, ok
}

// offlineMessage is the UNKNOWN error of a check of an offline pool.
func offlineMessage(p store.OfflinePool) string {
	if p.LastSeen.IsZero() {
		return fmt.Sprintf("agent offline: no agent of pool %s has ever been seen", p.Pool)
	}
	return fmt.Sprintf("agent offline: no agent of pool %s has been seen since %s", p.Pool, fmtTime(p.LastSeen))
}

// fmtTime is RFC 3339 UTC, or "never" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
