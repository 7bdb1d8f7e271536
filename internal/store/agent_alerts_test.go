package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// forEachEngineTwice runs fn with two stores on one fresh database of
// each engine, as two replicas would have.
func forEachEngineTwice(t *testing.T, fn func(t *testing.T, s, s2 *Store)) {
	t.Helper()
	for _, e := range []Engine{SQLite, Postgres} {
		t.Run(string(e), func(t *testing.T) {
			t.Parallel()
			dsn := testDSN(t, e)
			s := openTest(t, dsn)
			fn(t, s, openTest(t, dsn))
		})
	}
}

func TestAgentOfflineAndOnline(t *testing.T) {
	forEachEngineTwice(t, func(t *testing.T, s, s2 *Store) {
		ctx := context.Background()
		exp := t0.Add(180 * 24 * time.Hour)
		addTeam(t, s, 2)
		for _, a := range []Agent{
			newAgent("agt_a", "a", "dc1", []byte{1}, exp),
			newAgent("agt_b", "b", "dc1", []byte{2}, exp),
			newAgent("agt_c", "c", "dc2", []byte{3}, exp),
			{ID: "agt_d", TeamID: 2, Name: "d", Pool: "dc1", KeyHash: []byte{4}, KeyExpires: exp},
			newAgent("agt_r", "r", "dc3", []byte{5}, exp),
		} {
			if _, err := s.CreateAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		seen := func(id string, at time.Time) {
			t.Helper()
			if err := s.UpdateAgentStatus(ctx, id, AgentStatus{LastSeen: at, Connected: true, Replica: "r1"}); err != nil {
				t.Fatal(err)
			}
		}
		old, fresh := t0.Add(-time.Hour), t0
		seen("agt_a", old)
		seen("agt_b", fresh) // keeps team 1's dc1 online
		seen("agt_c", old)
		seen("agt_d", old) // team 2's dc1 is offline
		seen("agt_r", fresh)
		if err := s.RevokeAgent(ctx, DefaultTeamID, "agt_r", t0); err != nil {
			t.Fatal(err)
		}

		pools, err := s.OfflinePools(ctx, t0.Add(-5*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		want := []OfflinePool{{1, "dc2", old}, {1, "dc3", fresh}, {2, "dc1", old}}
		if len(pools) != len(want) {
			t.Fatalf("offline pools %+v, want %+v", pools, want)
		}
		for i := range want {
			if pools[i].TeamID != want[i].TeamID || pools[i].Pool != want[i].Pool || !pools[i].LastSeen.Equal(want[i].LastSeen) {
				t.Errorf("offline pool %d: %+v, want %+v", i, pools[i], want[i])
			}
		}

		// Two replicas sweep at once: each offline agent is claimed once,
		// and its event is written once, with the claim.
		got := sweepConcurrently(t, s, "agent_offline", []*Store{s, s2, s, s2}, func(st *Store, ev AgentEvent) ([]Agent, error) {
			return st.MarkAgentsOffline(ctx, t0.Add(-5*time.Minute), t0, ev)
		}, func(a Agent) {
			if !a.OfflineSince.Equal(t0) {
				t.Errorf("%s offline since %s", a.ID, a.OfflineSince)
			}
		})
		if len(got) != 3 || got["agt_a"] != 1 || got["agt_c"] != 1 || got["agt_d"] != 1 {
			t.Errorf("marked offline %v, want agt_a, agt_c, agt_d once each", got)
		}
		// Later agt_b is stale too; the others are marked already and
		// the revoked agt_r is left alone.
		if as, err := s.MarkAgentsOffline(ctx, t0.Add(time.Hour), t0.Add(time.Hour), nil); err != nil || len(as) != 1 || as[0].ID != "agt_b" {
			t.Errorf("second sweep %+v, %v", as, err)
		}

		// Back online: the mark is cleared once.
		since, err := s.MarkAgentOnline(ctx, "agt_a", nil)
		if err != nil || !since.Equal(t0) {
			t.Errorf("online: %s %v", since, err)
		}
		if since, err := s.MarkAgentOnline(ctx, "agt_a", nil); err != nil || !since.IsZero() {
			t.Errorf("online again: %s %v", since, err)
		}
		if a, err := s.GetAgent(ctx, DefaultTeamID, "agt_a"); err != nil || !a.OfflineSince.IsZero() {
			t.Errorf("after online %+v %v", a, err)
		}
		if _, err := s.MarkAgentOnline(ctx, "agt_nope", nil); err == nil {
			t.Error("unknown agent online: no error")
		}
	})
}

func TestMarkKeysExpiring(t *testing.T) {
	forEachEngineTwice(t, func(t *testing.T, s, s2 *Store) {
		ctx := context.Background()
		soon, later := t0.Add(10*24*time.Hour), t0.Add(100*24*time.Hour)
		for _, a := range []Agent{
			newAgent("agt_a", "a", "dc1", []byte{1}, soon),
			newAgent("agt_b", "b", "dc1", []byte{2}, later),
			newAgent("agt_r", "r", "dc1", []byte{3}, soon),
		} {
			if _, err := s.CreateAgent(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RevokeAgent(ctx, DefaultTeamID, "agt_r", t0); err != nil {
			t.Fatal(err)
		}
		before := t0.Add(14 * 24 * time.Hour)
		n := sweepConcurrently(t, s, "agent_key_expiring", []*Store{s, s2}, func(st *Store, ev AgentEvent) ([]Agent, error) {
			return st.MarkKeysExpiring(ctx, before, ev)
		}, func(a Agent) {
			if !a.KeyExpires.Equal(soon) {
				t.Errorf("%s expires %s", a.ID, a.KeyExpires)
			}
		})
		if len(n) != 1 || n["agt_a"] != 1 {
			t.Errorf("warned %v, want agt_a once", n)
		}
		if as, err := s.MarkKeysExpiring(ctx, before, nil); err != nil || len(as) != 0 {
			t.Errorf("second sweep %+v %v", as, err)
		}
		// A rotated key that also expires soon gets its own warning.
		if _, err := s.RotateAgentKey(ctx, DefaultTeamID, "agt_a", []byte{9}, soon.Add(24*time.Hour), t0); err != nil {
			t.Fatal(err)
		}
		as, err := s.MarkKeysExpiring(ctx, before, nil)
		if err != nil || len(as) != 1 || as[0].ID != "agt_a" || !as[0].KeyExpires.Equal(soon.Add(24*time.Hour)) {
			t.Errorf("after rotation %+v %v", as, err)
		}
	})
}

// sweepConcurrently runs one agent sweep on every store at once, each
// writing an event of kind per agent it claims, checks each claimed agent
// with check, and returns how often each agent was claimed. Every claimed
// agent must have exactly one event: written with its claim, never twice.
func sweepConcurrently(t *testing.T, s *Store, kind string, stores []*Store, sweep func(*Store, AgentEvent) ([]Agent, error), check func(Agent)) map[string]int {
	t.Helper()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	event := func(a Agent) *Event {
		return &Event{TeamID: a.TeamID, At: t0, Kind: kind, Severity: "warning", Message: a.ID}
	}
	for _, st := range stores {
		wg.Go(func() {
			as, err := sweep(st, event)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, a := range as {
				got[a.ID]++
				check(a)
			}
		})
	}
	wg.Wait()
	evs, _, err := s.ListEvents(context.Background(), EventFilter{Kind: kind, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]int{}
	for _, e := range evs {
		written[e.Message]++
	}
	if len(written) != len(got) {
		t.Errorf("%s events for %v, claims %v", kind, written, got)
	}
	for id := range got {
		if written[id] != 1 {
			t.Errorf("%s: %d events for %s, want 1", kind, written[id], id)
		}
	}
	return got
}

func TestAppendEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if err := s.AppendEvents(ctx, nil); err != nil {
			t.Fatal(err)
		}
		err := s.AppendEvents(ctx, []Event{
			{TeamID: DefaultTeamID, At: t0, Kind: "agent_offline", Severity: "critical", Message: "m1", Data: map[string]any{"agent_id": "agt_a"}},
			{TeamID: DefaultTeamID, At: t0, Kind: "agent_online", Severity: "info", Message: "m2"},
		})
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := s.ListEvents(ctx, EventFilter{TeamID: DefaultTeamID})
		if err != nil || len(evs) != 2 || evs[1].Kind != "agent_offline" || evs[1].MonitorID != 0 ||
			evs[1].Data["agent_id"] != "agt_a" || !evs[1].At.Equal(t0) {
			t.Errorf("events %+v %v", evs, err)
		}
	})
}
