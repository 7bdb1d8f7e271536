package agentlink

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// events returns the stored events of kind, oldest first.
func (e *env) events(kind string) []store.Event {
	e.t.Helper()
	evs, _, err := e.st.ListEvents(context.Background(), store.EventFilter{Kind: kind, Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	slices.Reverse(evs)
	return evs
}

func fastSweep(c *HubConfig) { c.SweepInterval = 30 * time.Millisecond }

func TestAgentOffline(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, fastSweep)
		ctx := context.Background()
		id, key := e.agent("a", "dc1", nil)
		e.agent("never", "dc9", nil) // created, never connected
		a, _ := e.connect(id, key)
		a.ws.Close(websocket.StatusNormalClosure, "")
		eventually(t, 3*time.Second, "agent gone", func() bool { return len(e.hub.PoolsFunc()) == 0 })

		// Within the grace period nothing is offline.
		time.Sleep(150 * time.Millisecond)
		if p := e.hub.PoolsFunc(); len(p) != 0 {
			t.Fatalf("pools within the grace period: %v", p)
		}
		wantUnknown(t, e.hub.Check(ctx, e.claim("dc1", time.Minute)), "no agent of pool dc1 connected")

		e.clock.Advance(6 * time.Minute)
		eventually(t, 3*time.Second, "offline pools claimed", func() bool {
			return slices.Equal(e.hub.PoolsFunc(), []string{"dc1", "dc9"})
		})
		wantUnknown(t, e.hub.Check(ctx, e.claim("dc1", time.Minute)), "agent offline: no agent of pool dc1 has been seen since ")
		wantUnknown(t, e.hub.Check(ctx, e.claim("dc9", time.Minute)), "agent offline: no agent of pool dc9 has ever been seen")
		// Another team's pool of the same name is not this one.
		c := e.claim("dc1", time.Minute)
		c.Monitor.TeamID = 2
		wantUnknown(t, e.hub.Check(ctx, c), "no agent of pool dc1 connected")

		eventually(t, 3*time.Second, "agent_offline event", func() bool { return len(e.events(monitor.EventAgentOffline)) > 0 })
		time.Sleep(150 * time.Millisecond) // more sweeps
		evs := e.events(monitor.EventAgentOffline)
		if len(evs) != 1 {
			t.Fatalf("%d agent_offline events, want 1 (the never-seen agent was never online)", len(evs))
		}
		ev := evs[0]
		if ev.TeamID != store.DefaultTeamID || ev.MonitorID != 0 || ev.Severity != "critical" ||
			!strings.HasPrefix(ev.Message, "agent a (pool dc1) offline since ") ||
			ev.Data["agent_id"] != id || ev.Data["pool"] != "dc1" || ev.Data["last_seen"] == "" {
			t.Errorf("event %+v", ev)
		}
		if ag, err := e.st.GetAgent(ctx, store.DefaultTeamID, id); err != nil || ag.OfflineSince.IsZero() {
			t.Errorf("agent %+v %v, want offline_since set", ag, err)
		}

		// Back: one agent_online event, the mark cleared, the pool online.
		b, _ := e.connect(id, key)
		defer b.ws.Close(websocket.StatusNormalClosure, "")
		eventually(t, 3*time.Second, "agent_online event", func() bool { return len(e.events(monitor.EventAgentOnline)) == 1 })
		if ag, err := e.st.GetAgent(ctx, store.DefaultTeamID, id); err != nil || !ag.OfflineSince.IsZero() {
			t.Errorf("agent %+v %v, want offline_since cleared", ag, err)
		}
		eventually(t, 3*time.Second, "dc1 online again", func() bool {
			e.hub.mu.Lock()
			defer e.hub.mu.Unlock()
			_, off := e.hub.offlineLocked(store.DefaultTeamID, "dc1")
			return !off
		})
		if ev := e.events(monitor.EventAgentOnline)[0]; ev.Data["agent_id"] != id || !strings.Contains(ev.Message, "online again") {
			t.Errorf("online event %+v", ev)
		}
		if n := len(e.events(monitor.EventAgentOffline)); n != 1 {
			t.Errorf("%d agent_offline events after reconnect", n)
		}
	})
}

func TestAgentKeyExpiring(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, fastSweep)
		ctx := context.Background()
		now := e.clock.Now()
		id, _ := e.agent("soon", "dc1", func(a *store.Agent) { a.KeyExpires = now.Add(10 * 24 * time.Hour) })
		e.agent("later", "dc1", func(a *store.Agent) { a.KeyExpires = now.Add(100 * 24 * time.Hour) })

		eventually(t, 3*time.Second, "key warning", func() bool { return len(e.events(monitor.EventAgentKeyExpiring)) > 0 })
		time.Sleep(150 * time.Millisecond) // more sweeps
		evs := e.events(monitor.EventAgentKeyExpiring)
		if len(evs) != 1 {
			t.Fatalf("%d key warnings, want 1", len(evs))
		}
		want := now.Add(10 * 24 * time.Hour).UTC().Truncate(time.Millisecond).Format(time.RFC3339)
		if ev := evs[0]; ev.Data["agent_id"] != id || ev.Data["key_expires_at"] != want || ev.Severity != "warning" ||
			!strings.Contains(ev.Message, "key of agent soon (pool dc1) expires on ") {
			t.Errorf("event %+v", ev)
		}

		// A rotated key expiring soon again gets a warning of its own.
		_, hash := NewKey()
		if _, err := e.st.RotateAgentKey(ctx, store.DefaultTeamID, id, hash, now.Add(13*24*time.Hour), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 3*time.Second, "second key warning", func() bool { return len(e.events(monitor.EventAgentKeyExpiring)) == 2 })
		time.Sleep(100 * time.Millisecond)
		if n := len(e.events(monitor.EventAgentKeyExpiring)); n != 2 {
			t.Errorf("%d key warnings, want 2", n)
		}
	})
}
