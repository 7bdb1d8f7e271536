package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// addChannelAndRule inserts a channel and a rule routing to it with SQL,
// so the outbox tests do not depend on the CRUD methods.
func addChannelAndRule(t *testing.T, s *Store, name, ruleJSON string) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	if err := s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO channels (team_id, name, type, config, created_at, updated_at)
		VALUES (1, ?, 'webhook', 'sealed', 0, 0) RETURNING id`), name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	rule := fmt.Sprintf(ruleJSON, id)
	var tags, sevs, kinds string
	if _, err := fmt.Sscanf(rule, "%s %s %s", &tags, &sevs, &kinds); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO rules (team_id, name, tags, severities, events, channels, created_at, updated_at)
		VALUES (1, ?, ?, ?, ?, ?, 0, 0)`), name, tags, sevs, kinds, fmt.Sprintf("[%d]", id)); err != nil {
		t.Fatal(err)
	}
	return id
}

func deliveriesOf(t *testing.T, s *Store) []Delivery {
	t.Helper()
	rows, err := s.db.QueryContext(context.Background(), deliveryFrom+` ORDER BY d.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func alertRecord(c Claim, kind string, silenced bool) CheckRecord {
	st := c.State
	st.Status, st.LastCheckAt, st.NextCheckAt = "WARNING", c.Slot, c.Slot.Add(time.Hour)
	return CheckRecord{Claim: c, State: st, Events: []Event{{Kind: kind, Severity: "warning", Status: "WARNING",
		Message: c.Monitor.Target + " " + kind, Notify: true, Silenced: silenced,
		Data: map[string]any{"tags": c.Monitor.Tags}}}}
}

func TestOutboxWrittenWithTheCheck(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		prod := addChannelAndRule(t, s, "prod", `["prod"] [] [] %d`)
		all := addChannelAndRule(t, s, "critical-only", `[] ["critical"] [] %d`)
		_ = all
		tagged := mustMonitor(t, s, func(m *Monitor) {
			m.Tags = []string{"prod"}
			m.Owner = "Owner@Example.com"
			m.Recipients = []string{"ops@example.com", "not an address", "owner@example.com"}
		})
		quiet := mustMonitor(t, s, func(m *Monitor) { m.Target = "quiet.example" })
		snoozed := mustMonitor(t, s, func(m *Monitor) { m.Tags = []string{"prod"} })
		claims, err := s.ClaimDue(ctx, "r1", []string{"cloud"}, t0, time.Minute, 10)
		if err != nil || len(claims) != 3 {
			t.Fatalf("claims %v %v", len(claims), err)
		}
		byID := map[int64]Claim{}
		for _, c := range claims {
			byID[c.Monitor.ID] = c
		}
		stale := byID[quiet.ID]
		stale.Owner = "someone-else" // a lost claim writes nothing, deliveries included
		lost, err := s.RecordChecks(ctx, []CheckRecord{
			alertRecord(byID[tagged.ID], "expiry_reminder", false),
			alertRecord(stale, "expiry_reminder", false),
			alertRecord(byID[snoozed.ID], "expiry_reminder", true),
		})
		if err != nil || !slices.Equal(lost, []int{1}) {
			t.Fatalf("lost %v err %v", lost, err)
		}
		ds := deliveriesOf(t, s)
		var dests []string
		for _, d := range ds {
			dests = append(dests, fmt.Sprintf("%d/%s", d.ChannelID, d.Address))
			if d.Status != DeliveryPending || d.EventKey == "" {
				t.Errorf("delivery %+v", d)
			}
		}
		want := []string{fmt.Sprintf("%d/", prod), "0/owner@example.com", "0/ops@example.com"}
		if !slices.Equal(dests, want) {
			t.Errorf("deliveries %v, want %v (warning event: not the critical-only rule; silenced: none)", dests, want)
		}
		evs, _, err := s.ListEvents(ctx, EventFilter{TeamID: 1})
		if err != nil || len(evs) != 2 || evs[0].Key == "" || evs[0].Key == evs[1].Key {
			t.Fatalf("events %+v %v: the silenced event is stored, the lost one is not", evs, err)
		}
	})
}

func TestAgentEventsRouteByRulesWithoutMonitorSelectors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		every := addChannelAndRule(t, s, "every", `[] [] [] %d`)
		addChannelAndRule(t, s, "prod", `["prod"] [] [] %d`)
		kinds := addChannelAndRule(t, s, "agents", `[] [] ["agent_offline"] %d`)
		if err := s.AppendEvents(ctx, []Event{
			{TeamID: 1, Kind: "agent_offline", Severity: "critical", At: t0, Notify: true},
			{TeamID: 1, Kind: "agent_online", Severity: "info", At: t0, Notify: true},
		}); err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, d := range deliveriesOf(t, s) {
			got = append(got, d.ChannelID)
		}
		if !slices.Equal(got, []int64{every, kinds, every}) {
			t.Errorf("deliveries to %v, want offline→%d,%d and online→%d", got, every, kinds, every)
		}
	})
}

func TestClaimAndSettleDeliveries(t *testing.T) {
	forEachEngineTwice(t, func(t *testing.T, s, s2 *Store) {
		ctx := context.Background()
		s.now = func() time.Time { return t0 }
		ch := addChannelAndRule(t, s, "every", `[] [] [] %d`)
		dest := Destination{TeamID: 1, ChannelID: ch}
		if ds, err := s.DueDestinations(ctx, t0, 10); err != nil || len(ds) != 0 {
			t.Fatalf("due destinations before any event: %v %v", ds, err)
		}
		var evs []Event
		for i := range 200 {
			evs = append(evs, Event{TeamID: 1, Kind: "agent_offline", Severity: "critical", At: t0, Notify: true,
				Message: fmt.Sprint(i)})
		}
		if err := s.AppendEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
		if ds, err := s.DueDestinations(ctx, t0, 10); err != nil || len(ds) != 1 || ds[0] != dest {
			t.Fatalf("due destinations %v %v, want %v", ds, err, dest)
		}
		// Two replicas claim concurrently: every delivery exactly once.
		var (
			mu  sync.Mutex
			got = map[int64]string{}
			wg  sync.WaitGroup
		)
		for i, st := range []*Store{s, s2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				owner := fmt.Sprint("r", i)
				for {
					ds, err := st.ClaimDeliveries(ctx, owner, dest, t0, time.Minute, 7)
					if err != nil {
						t.Error(err)
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						if prev, dup := got[d.ID]; dup {
							t.Errorf("delivery %d claimed by %s and %s", d.ID, prev, owner)
						}
						got[d.ID] = owner
						if d.Event.Kind != "agent_offline" || d.Event.Key != d.EventKey {
							t.Errorf("event not joined: %+v", d)
						}
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(got) != 200 {
			t.Fatalf("claimed %d of 200", len(got))
		}
		var r0, r1 []int64
		for id, o := range got {
			if o == "r0" {
				r0 = append(r0, id)
			} else {
				r1 = append(r1, id)
			}
		}
		if n, err := s2.SettleDeliveries(ctx, "r1", r1, Settlement{Status: DeliverySent, At: t0}); err != nil || n != int64(len(r1)) {
			t.Fatalf("r1 settled %d of %d (%v)", n, len(r1), err)
		}
		// Only the lease holder settles.
		if n, err := s.SettleDeliveries(ctx, "r1", r0, Settlement{Status: DeliverySent, At: t0}); err != nil || n != 0 {
			t.Fatalf("foreign settle changed %d (%v)", n, err)
		}
		if n, err := s.SettleDeliveries(ctx, "r0", r0, Settlement{Status: DeliveryPending, Failed: true, NextAt: t0.Add(time.Minute), Error: "500"}); err != nil || n != int64(len(r0)) {
			t.Fatalf("settle changed %d of %d (%v)", n, len(r0), err)
		}
		// Failed ones come back when due, with the attempt counted.
		if ds, _ := s.ClaimDeliveries(ctx, "r2", dest, t0.Add(30*time.Second), time.Minute, 500); len(ds) != 0 {
			t.Errorf("claimed %d before their retry time", len(ds))
		}
		ds, err := s.ClaimDeliveries(ctx, "r2", dest, t0.Add(2*time.Minute), time.Minute, 500)
		if err != nil || len(ds) != len(r0) || ds[0].Attempts != 1 || ds[0].LastError != "500" {
			t.Fatalf("retry claim %d of %d err %v (first attempts %d)", len(ds), len(r0), err, ds[0].Attempts)
		}
		// An expired lease (a dead replica) is claimable by another.
		ds2, err := s2.ClaimDeliveries(ctx, "r3", dest, t0.Add(4*time.Minute), time.Minute, 500)
		if err != nil || len(ds2) != len(r0) {
			t.Errorf("after lease expiry claimed %d, want %d", len(ds2), len(r0))
		}
	})
}

func TestAgentAlertWrittenWithItsClaim(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		every := addChannelAndRule(t, s, "every", `[] [] [] %d`)
		exp := t0.Add(180 * 24 * time.Hour)
		if _, err := s.CreateAgent(ctx, newAgent("agt_a", "a", "dc1", []byte{1}, exp)); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateAgentStatus(ctx, "agt_a", AgentStatus{LastSeen: t0.Add(-time.Hour), Connected: true, Replica: "r1"}); err != nil {
			t.Fatal(err)
		}
		ev := func(a Agent) *Event {
			return &Event{TeamID: a.TeamID, Kind: "agent_offline", Severity: "critical", At: t0, Notify: true, Message: a.ID}
		}
		if as, err := s.MarkAgentsOffline(ctx, t0.Add(-5*time.Minute), t0, ev); err != nil || len(as) != 1 {
			t.Fatalf("offline %d %v", len(as), err)
		}
		// The claim is taken: a second sweep writes nothing more.
		if as, err := s.MarkAgentsOffline(ctx, t0.Add(-5*time.Minute), t0, ev); err != nil || len(as) != 0 {
			t.Fatalf("second sweep %d %v", len(as), err)
		}
		ds := deliveriesOf(t, s)
		if len(ds) != 1 || ds[0].ChannelID != every || ds[0].Event.Kind != "agent_offline" || ds[0].Event.Message != "agt_a" {
			t.Errorf("deliveries %d", len(ds))
		}
	})
}
