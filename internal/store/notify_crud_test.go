package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestChannelCRUD(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c, err := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Name: "ops", Type: "webhook", Config: "v1:sealed"})
		if err != nil {
			t.Fatal(err)
		}
		if c.ID == 0 || c.CreatedAt.IsZero() || !c.CreatedAt.Equal(c.UpdatedAt) {
			t.Errorf("created %+v", c)
		}
		if _, err := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Name: "ops", Type: "slack", Config: "x"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate name: %v, want ErrConflict", err)
		}
		if _, err := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Type: "slack"}); err == nil {
			t.Error("channel without name accepted")
		}
		b, err := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Name: "alpha", Type: "email", Config: "v1:other"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetChannel(ctx, DefaultTeamID, c.ID)
		if err != nil || got != c {
			t.Errorf("get %+v %v, want %+v", got, err, c)
		}
		list, err := s.ListChannels(ctx, DefaultTeamID)
		if err != nil || len(list) != 2 || list[0].ID != b.ID || list[1].ID != c.ID {
			t.Errorf("list %+v %v, want by name", list, err)
		}

		// Teams are isolated, and the same name may be used in another.
		addTeam(t, s, 2)
		if _, err := s.GetChannel(ctx, 2, c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team get: %v", err)
		}
		if _, err := s.UpdateChannel(ctx, Channel{ID: c.ID, TeamID: 2, Name: "x", Type: "slack"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team update: %v", err)
		}
		if err := s.DeleteChannel(ctx, 2, c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team delete: %v", err)
		}
		if l, err := s.ListChannels(ctx, 2); err != nil || len(l) != 0 {
			t.Errorf("other team list %v %v", l, err)
		}
		if _, err := s.CreateChannel(ctx, Channel{TeamID: 2, Name: "ops", Type: "slack", Config: "x"}); err != nil {
			t.Errorf("same name in another team: %v", err)
		}

		s.now = func() time.Time { return t0.Add(time.Hour) }
		up, err := s.UpdateChannel(ctx, Channel{ID: c.ID, TeamID: DefaultTeamID, Name: "ops2", Type: "slack", Config: "v1:new"})
		if err != nil {
			t.Fatal(err)
		}
		if up.Name != "ops2" || up.Type != "slack" || up.Config != "v1:new" || !up.CreatedAt.Equal(c.CreatedAt) || !up.UpdatedAt.Equal(t0.Add(time.Hour)) {
			t.Errorf("updated %+v", up)
		}
		if _, err := s.UpdateChannel(ctx, Channel{ID: c.ID, TeamID: DefaultTeamID, Name: "alpha", Type: "slack"}); !errors.Is(err, ErrConflict) {
			t.Errorf("rename onto another: %v, want ErrConflict", err)
		}
		if _, err := s.UpdateChannel(ctx, Channel{ID: 999, TeamID: DefaultTeamID, Name: "n", Type: "slack"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("update unknown: %v", err)
		}
	})
}

// Deleting a channel skips its pending deliveries and drops it from rules,
// in one transaction; what was sent or is dead stays as it was.
func TestDeleteChannelSkipsDeliveries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		c, _ := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Name: "gone", Type: "slack", Config: "x"})
		keep, _ := s.CreateChannel(ctx, Channel{TeamID: DefaultTeamID, Name: "kept", Type: "slack", Config: "x"})
		r, err := s.CreateRule(ctx, Rule{TeamID: DefaultTeamID, Name: "r", Channels: []int64{c.ID, keep.ID}})
		if err != nil {
			t.Fatal(err)
		}
		only, _ := s.CreateRule(ctx, Rule{TeamID: DefaultTeamID, Name: "only", Channels: []int64{c.ID}})
		insertEvent(t, s, DefaultTeamID, "ev_1", 0)
		pending := insertDelivery(t, s, DefaultTeamID, "ev_1", c.ID, "", DeliveryPending)
		sent := insertDelivery(t, s, DefaultTeamID, "ev_2", c.ID, "", DeliverySent)
		other := insertDelivery(t, s, DefaultTeamID, "ev_1", keep.ID, "", DeliveryPending)
		if _, err := s.db.Exec(s.rebind(`UPDATE deliveries SET lease_owner = 'w', lease_until = ? WHERE id = ?`), ms(t0), pending); err != nil {
			t.Fatal(err)
		}

		if err := s.DeleteChannel(ctx, DefaultTeamID, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetChannel(ctx, DefaultTeamID, c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted channel: %v", err)
		}
		if err := s.DeleteChannel(ctx, DefaultTeamID, c.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		for id, want := range map[int64][2]string{
			pending: {DeliverySkipped, "channel deleted"},
			sent:    {DeliverySent, ""},
			other:   {DeliveryPending, ""},
		} {
			d, err := s.GetDelivery(ctx, DefaultTeamID, id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != want[0] || d.LastError != want[1] {
				t.Errorf("delivery %d: %s %q, want %s %q", id, d.Status, d.LastError, want[0], want[1])
			}
		}
		var lease any
		if err := s.db.QueryRow(s.rebind(`SELECT lease_owner FROM deliveries WHERE id = ?`), pending).Scan(&lease); err != nil || lease != nil {
			t.Errorf("skipped delivery keeps its lease %v %v", lease, err)
		}
		if got, _ := s.GetRule(ctx, DefaultTeamID, r.ID); !slices.Equal(got.Channels, []int64{keep.ID}) {
			t.Errorf("rule channels %v, want [%d]", got.Channels, keep.ID)
		}
		if got, _ := s.GetRule(ctx, DefaultTeamID, only.ID); got.Channels == nil || len(got.Channels) != 0 {
			t.Errorf("rule channels %#v, want []", got.Channels)
		}
	})
}

func TestRuleCRUD(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		in := Rule{TeamID: DefaultTeamID, Name: "prod critical", Tags: []string{"prod", "db"}, Monitors: []int64{3, 4},
			Severities: []string{"critical"}, Events: []string{"expired", "invalid"}, Channels: []int64{1, 2}}
		r, err := s.CreateRule(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 || r.CreatedAt.IsZero() || !slices.Equal(r.Tags, in.Tags) || !slices.Equal(r.Monitors, in.Monitors) ||
			!slices.Equal(r.Severities, in.Severities) || !slices.Equal(r.Events, in.Events) || !slices.Equal(r.Channels, in.Channels) {
			t.Errorf("created %+v", r)
		}
		if _, err := s.CreateRule(ctx, Rule{TeamID: DefaultTeamID, Name: "prod critical"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate: %v", err)
		}
		// Nil selectors are stored and read back as empty lists.
		all, err := s.CreateRule(ctx, Rule{TeamID: DefaultTeamID, Name: "all"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRule(ctx, DefaultTeamID, all.ID)
		if err != nil {
			t.Fatal(err)
		}
		for name, l := range map[string]int{"tags": len(got.Tags), "monitors": len(got.Monitors), "severities": len(got.Severities),
			"events": len(got.Events), "channels": len(got.Channels)} {
			if l != 0 {
				t.Errorf("%s has %d entries", name, l)
			}
		}
		if got.Tags == nil || got.Channels == nil {
			t.Errorf("nil lists read back: %#v", got)
		}
		list, err := s.ListRules(ctx, DefaultTeamID)
		if err != nil || len(list) != 2 || list[0].Name != "all" || list[1].Name != "prod critical" {
			t.Errorf("list %+v %v", list, err)
		}
		addTeam(t, s, 2)
		if _, err := s.GetRule(ctx, 2, r.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team: %v", err)
		}
		r.Name, r.Tags, r.Channels = "renamed", nil, []int64{9}
		up, err := s.UpdateRule(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if up.Name != "renamed" || len(up.Tags) != 0 || !slices.Equal(up.Channels, []int64{9}) || !slices.Equal(up.Events, in.Events) {
			t.Errorf("updated %+v", up)
		}
		r.Name = "all"
		if _, err := s.UpdateRule(ctx, r); !errors.Is(err, ErrConflict) {
			t.Errorf("rename onto another: %v", err)
		}
		r.TeamID = 2
		if _, err := s.UpdateRule(ctx, r); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team update: %v", err)
		}
		if err := s.DeleteRule(ctx, 2, all.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team delete: %v", err)
		}
		if err := s.DeleteRule(ctx, DefaultTeamID, all.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRule(ctx, DefaultTeamID, all.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted: %v", err)
		}
	})
}

func TestUserCRUD(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		set := NotifySettings{Mode: "digest", DigestAt: "08:00", Events: []string{"expired"}, QuietStart: "22:00",
			QuietEnd: "07:00", TimeZone: "Europe/Berlin"}
		u, err := s.CreateUser(ctx, User{TeamID: DefaultTeamID, Email: "ops@example.com", Name: "Ops", Settings: set})
		if err != nil {
			t.Fatal(err)
		}
		if u.ID == 0 || u.CreatedAt.IsZero() || fmt.Sprint(u.Settings) != fmt.Sprint(set) {
			t.Errorf("created %+v", u)
		}
		if _, err := s.CreateUser(ctx, User{TeamID: DefaultTeamID, Email: "ops@example.com"}); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate: %v", err)
		}
		a, err := s.CreateUser(ctx, User{TeamID: DefaultTeamID, Email: "a@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		if a.Settings.Mode != "" || a.Settings.Events != nil {
			t.Errorf("default settings %+v", a.Settings)
		}
		got, err := s.GetUser(ctx, DefaultTeamID, u.ID)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(u) {
			t.Errorf("get %+v %v, want %+v", got, err, u)
		}
		list, err := s.ListUsers(ctx, DefaultTeamID)
		if err != nil || len(list) != 2 || list[0].ID != a.ID || list[1].ID != u.ID {
			t.Errorf("list %+v %v", list, err)
		}
		addTeam(t, s, 2)
		if _, err := s.GetUser(ctx, 2, u.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team: %v", err)
		}
		if _, err := s.CreateUser(ctx, User{TeamID: 2, Email: "ops@example.com"}); err != nil {
			t.Errorf("same address in another team: %v", err)
		}
		u.Email, u.Name, u.Settings = "ops2@example.com", "", NotifySettings{Mode: "immediate"}
		up, err := s.UpdateUser(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if up.Email != "ops2@example.com" || up.Name != "" || up.Settings.Mode != "immediate" || up.Settings.TimeZone != "" {
			t.Errorf("updated %+v", up)
		}
		u.Email = "a@example.com"
		if _, err := s.UpdateUser(ctx, u); !errors.Is(err, ErrConflict) {
			t.Errorf("address taken: %v", err)
		}
		if err := s.DeleteUser(ctx, 2, u.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team delete: %v", err)
		}
		if err := s.DeleteUser(ctx, DefaultTeamID, u.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUser(ctx, DefaultTeamID, u.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted: %v", err)
		}
	})
}

// insertEvent writes an event with key, directly.
func insertEvent(tb testing.TB, s *Store, team int64, key string, monitorID int64) int64 {
	tb.Helper()
	var id int64
	err := s.db.QueryRow(s.rebind(`INSERT INTO events (team_id, monitor_id, occurred_at, kind, status, severity, message, data, event_key)
		VALUES (?, ?, ?, 'expired', 'CRITICAL', 'critical', ?, ?, ?) RETURNING id`),
		team, monitorID, ms(t0), "expired "+key, `{"serial":"01"}`, key).Scan(&id)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// insertDelivery writes a delivery directly.
func insertDelivery(tb testing.TB, s *Store, team int64, key string, channel int64, address, status string) int64 {
	tb.Helper()
	var sent any
	if status == DeliverySent {
		sent = ms(t0.Add(time.Minute))
	}
	var id int64
	err := s.db.QueryRow(s.rebind(`INSERT INTO deliveries (team_id, event_key, channel_id, address, status, attempts, next_at,
		last_error, last_code, created_at, sent_at) VALUES (?, ?, ?, ?, ?, 3, ?, '', 0, ?, ?) RETURNING id`),
		team, key, channel, address, status, ms(t0), ms(t0), sent).Scan(&id)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func TestListAndRetryDeliveries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m, err := s.CreateMonitor(ctx, Monitor{TeamID: DefaultTeamID, Target: "example.com", Tags: []string{"prod"}}, t0)
		if err != nil {
			t.Fatal(err)
		}
		evID := insertEvent(t, s, DefaultTeamID, "ev_a", m.ID)
		addTeam(t, s, 2)
		insertEvent(t, s, 2, "ev_b", 0)
		var ids []int64
		for i := range 5 {
			ids = append(ids, insertDelivery(t, s, DefaultTeamID, "ev_a", 0, fmt.Sprintf("u%d@example.com", i), DeliveryDead))
		}
		sent := insertDelivery(t, s, DefaultTeamID, "ev_a", 7, "", DeliverySent)
		orphan := insertDelivery(t, s, DefaultTeamID, "ev_gone", 7, "", DeliveryPending)
		foreign := insertDelivery(t, s, 2, "ev_b", 1, "", DeliveryDead)

		all, next, err := s.ListDeliveries(ctx, DeliveryFilter{TeamID: DefaultTeamID})
		if err != nil || next != 0 || len(all) != 7 {
			t.Fatalf("list: %d deliveries, next %d, %v", len(all), next, err)
		}
		if all[0].ID != orphan || all[1].ID != sent || all[6].ID != ids[0] {
			t.Errorf("not newest first: %d %d %d", all[0].ID, all[1].ID, all[6].ID)
		}
		if all[0].Event.ID != 0 {
			t.Errorf("orphan has event %+v", all[0].Event)
		}
		d := all[1]
		if d.Status != DeliverySent || d.ChannelID != 7 || d.Attempts != 3 || !d.SentAt.Equal(t0.Add(time.Minute)) || !d.CreatedAt.Equal(t0) {
			t.Errorf("delivery %+v", d)
		}
		e := d.Event
		if e.ID != evID || e.Key != "ev_a" || e.Kind != "expired" || e.Severity != "critical" || e.Status != "CRITICAL" ||
			e.MonitorID != m.ID || !e.At.Equal(t0) || e.Message != "expired ev_a" || e.Data["serial"] != "01" {
			t.Errorf("event %+v", e)
		}
		if !slices.Equal(d.Tags, []string{"prod"}) {
			t.Errorf("tags %v", d.Tags)
		}
		if !all[6].SentAt.IsZero() || all[6].Address != "u0@example.com" {
			t.Errorf("dead delivery %+v", all[6])
		}

		// Pages by cursor, filtered by status.
		page, next, err := s.ListDeliveries(ctx, DeliveryFilter{TeamID: DefaultTeamID, Status: DeliveryDead, Limit: 3})
		if err != nil || len(page) != 3 || next != ids[2] || page[0].ID != ids[4] {
			t.Fatalf("page 1: %d, next %d, %v", len(page), next, err)
		}
		page, next, err = s.ListDeliveries(ctx, DeliveryFilter{TeamID: DefaultTeamID, Status: DeliveryDead, Limit: 3, Before: next})
		if err != nil || len(page) != 2 || next != 0 || page[1].ID != ids[0] {
			t.Fatalf("page 2: %d, next %d, %v", len(page), next, err)
		}
		if other, _, _ := s.ListDeliveries(ctx, DeliveryFilter{TeamID: 2}); len(other) != 1 || other[0].ID != foreign {
			t.Errorf("team 2 sees %+v", other)
		}

		// Retry: dead → pending, due now, attempts reset, lease cleared.
		if _, err := s.db.Exec(s.rebind(`UPDATE deliveries SET last_error = 'refused', lease_owner = 'w', lease_until = ? WHERE id = ?`), ms(t0), ids[0]); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Hour)
		if err := s.RetryDelivery(ctx, DefaultTeamID, ids[0], now); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetDelivery(ctx, DefaultTeamID, ids[0])
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != DeliveryPending || got.Attempts != 0 || !got.NextAt.Equal(now) || got.Event.ID != evID {
			t.Errorf("retried %+v", got)
		}
		var lease any
		if err := s.db.QueryRow(s.rebind(`SELECT lease_owner FROM deliveries WHERE id = ?`), ids[0]).Scan(&lease); err != nil || lease != nil {
			t.Errorf("lease %v %v", lease, err)
		}
		for id, want := range map[int64]error{ids[0]: ErrConflict, sent: ErrConflict, orphan: ErrConflict, foreign: ErrNotFound, 99999: ErrNotFound} {
			if err := s.RetryDelivery(ctx, DefaultTeamID, id, now); !errors.Is(err, want) {
				t.Errorf("retry %d: %v, want %v", id, err, want)
			}
		}
		if _, err := s.GetDelivery(ctx, DefaultTeamID, foreign); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team's delivery: %v", err)
		}
		// A skipped one may be retried too.
		if _, err := s.db.Exec(s.rebind(`UPDATE deliveries SET status = ? WHERE id = ?`), DeliverySkipped, ids[1]); err != nil {
			t.Fatal(err)
		}
		if err := s.RetryDelivery(ctx, DefaultTeamID, ids[1], now); err != nil {
			t.Errorf("retry skipped: %v", err)
		}
	})
}
