package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func newAgent(id, name, pool string, hash []byte, expires time.Time) Agent {
	return Agent{ID: id, TeamID: DefaultTeamID, Name: name, Pool: pool, KeyHash: hash, KeyExpires: expires}
}

func TestAgentCRUD(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		exp := t0.Add(180 * 24 * time.Hour)
		a, err := s.CreateAgent(ctx, newAgent("agt_1", "dc1-a", "dc1", []byte{1}, exp))
		if err != nil {
			t.Fatal(err)
		}
		if a.CreatedAt.IsZero() || !a.KeyExpires.Equal(exp) {
			t.Errorf("created %+v", a)
		}
		if _, err := s.CreateAgent(ctx, newAgent("agt_2", "dc1-a", "dc1", []byte{2}, exp)); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate name: %v, want ErrConflict", err)
		}
		if _, err := s.CreateAgent(ctx, newAgent("agt_1", "other", "dc1", []byte{3}, exp)); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate id: %v, want ErrConflict", err)
		}
		if _, err := s.CreateAgent(ctx, newAgent("agt_3", "dc2-a", "dc2", []byte{4}, exp)); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAgent(ctx, DefaultTeamID, "agt_1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "dc1-a" || got.Pool != "dc1" || string(got.KeyHash) != "\x01" || got.PrevKeyHash != nil ||
			!got.RevokedAt.IsZero() || !got.KeyExpires.Equal(exp) || got.Status.Connected {
			t.Errorf("got %+v", got)
		}
		// Another team sees nothing.
		addTeam(t, s, 2)
		if _, err := s.GetAgent(ctx, 2, "agt_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team get: %v", err)
		}
		if err := s.RevokeAgent(ctx, 2, "agt_1", t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team revoke: %v", err)
		}
		if err := s.DeleteAgent(ctx, 2, "agt_1"); !errors.Is(err, ErrNotFound) {
			t.Errorf("other team delete: %v", err)
		}
		if list, err := s.ListAgents(ctx, 2); err != nil || len(list) != 0 {
			t.Errorf("other team list %v %v", list, err)
		}
		list, err := s.ListAgents(ctx, DefaultTeamID)
		if err != nil || len(list) != 2 || list[0].ID != "agt_1" || list[1].ID != "agt_3" {
			t.Fatalf("list %+v %v", list, err)
		}
		byID, err := s.AgentsByID(ctx, []string{"agt_3", "agt_nope", "agt_1"})
		if err != nil || len(byID) != 2 {
			t.Errorf("by id %+v %v", byID, err)
		}
		if err := s.DeleteAgent(ctx, DefaultTeamID, "agt_3"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetAgent(ctx, DefaultTeamID, "agt_3"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted get: %v", err)
		}
	})
}

func TestAuthenticateAgent(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		exp := t0.Add(30 * 24 * time.Hour)
		if _, err := s.CreateAgent(ctx, newAgent("agt_a", "a", "dc1", []byte("old"), exp)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateAgent(ctx, newAgent("agt_b", "b", "dc1", []byte("bkey"), exp)); err != nil {
			t.Fatal(err)
		}
		check := func(id, key string, now time.Time, want error) {
			t.Helper()
			a, err := s.AuthenticateAgent(ctx, id, []byte(key), now)
			if want == nil {
				if err != nil || a.ID != id {
					t.Errorf("%s/%s at %s: %+v %v, want success", id, key, now, a, err)
				}
				return
			}
			if !errors.Is(err, want) {
				t.Errorf("%s/%s at %s: %v, want %v", id, key, now, err, want)
			}
		}
		check("agt_a", "old", t0, nil)
		check("agt_a", "bkey", t0, ErrNotFound) // another agent's key
		check("agt_nope", "old", t0, ErrNotFound)
		check("agt_a", "old", exp, ErrAgentKeyExpired)

		// Rotation: the old key lives until now+overlap, the new one
		// until its own expiry.
		newExp := t0.Add(180 * 24 * time.Hour)
		prevUntil, err := s.RotateAgentKey(ctx, DefaultTeamID, "agt_a", []byte("new"), newExp, t0.Add(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if !prevUntil.Equal(t0.Add(24 * time.Hour)) {
			t.Errorf("previous key valid until %s", prevUntil)
		}
		check("agt_a", "old", t0.Add(23*time.Hour), nil)
		check("agt_a", "old", t0.Add(24*time.Hour), ErrAgentKeyExpired)
		check("agt_a", "new", t0.Add(100*24*time.Hour), nil)
		check("agt_a", "new", newExp, ErrAgentKeyExpired)
		a, _ := s.GetAgent(ctx, DefaultTeamID, "agt_a")
		if !a.KeyExpiresFor([]byte("old")).Equal(prevUntil) || !a.KeyExpiresFor([]byte("new")).Equal(newExp) {
			t.Errorf("key expiries %+v", a)
		}

		// An overlap past the old key's own expiry ends at that expiry;
		// a second rotation drops the first key.
		prevUntil, err = s.RotateAgentKey(ctx, DefaultTeamID, "agt_a", []byte("newer"), newExp, newExp.Add(time.Hour))
		if err != nil || !prevUntil.Equal(newExp) {
			t.Errorf("second rotation: %s %v, want %s", prevUntil, err, newExp)
		}
		check("agt_a", "old", t0, ErrNotFound)
		check("agt_a", "new", t0, nil)
		check("agt_a", "newer", t0, nil)

		if _, err := s.RotateAgentKey(ctx, DefaultTeamID, "agt_nope", []byte("x"), newExp, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("rotate unknown: %v", err)
		}

		// Revocation is immediate, for both keys, and sticks.
		if err := s.RevokeAgent(ctx, DefaultTeamID, "agt_a", t0); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAgent(ctx, DefaultTeamID, "agt_a", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		check("agt_a", "new", t0, ErrAgentRevoked)
		check("agt_a", "newer", t0, ErrAgentRevoked)
		check("agt_a", "wrong", t0, ErrNotFound)
		if a, _ := s.GetAgent(ctx, DefaultTeamID, "agt_a"); !a.RevokedAt.Equal(t0) {
			t.Errorf("revoked at %s, want the first revocation", a.RevokedAt)
		}
		if _, err := s.RotateAgentKey(ctx, DefaultTeamID, "agt_a", []byte("x"), newExp, t0); !errors.Is(err, ErrAgentRevoked) {
			t.Errorf("rotate revoked: %v", err)
		}
		check("agt_b", "bkey", t0, nil)
	})
}

func TestUpdateAgentStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.CreateAgent(ctx, newAgent("agt_s", "s", "dc1", []byte{1}, t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		long := "\x00\x1b[31m" + strings.Repeat("h", 1000)
		st := AgentStatus{Version: "1.2.3", Hostname: long, Address: "10.0.0.1:5555", LastSeen: t0,
			JobsDone: 7, Errors: 2, QueueDepth: 3, Connected: true, Replica: "r1"}
		if err := s.UpdateAgentStatus(ctx, "agt_s", st); err != nil {
			t.Fatal(err)
		}
		a, _ := s.GetAgent(ctx, DefaultTeamID, "agt_s")
		got := a.Status
		if got.Version != "1.2.3" || got.Hostname != "[31m"+strings.Repeat("h", 252) || got.Address != "10.0.0.1:5555" || !got.LastSeen.Equal(t0) ||
			got.JobsDone != 7 || got.Errors != 2 || got.QueueDepth != 3 || !got.Connected || got.Replica != "r1" {
			t.Errorf("status %+v", got)
		}
		// The agent moved to replica r2; r1's late disconnect must not
		// mark it offline.
		st.Replica = "r2"
		if err := s.UpdateAgentStatus(ctx, "agt_s", st); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateAgentStatus(ctx, "agt_s", AgentStatus{Replica: "r1", LastSeen: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.GetAgent(ctx, DefaultTeamID, "agt_s"); !a.Status.Connected || !a.Status.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("after another replica's disconnect: %+v", a.Status)
		}
		if err := s.UpdateAgentStatus(ctx, "agt_s", AgentStatus{Replica: "r2"}); err != nil {
			t.Fatal(err)
		}
		if a, _ := s.GetAgent(ctx, DefaultTeamID, "agt_s"); a.Status.Connected || !a.Status.LastSeen.Equal(t0.Add(time.Minute)) {
			t.Errorf("after disconnect: %+v", a.Status)
		}
		if err := s.UpdateAgentStatus(ctx, "agt_nope", st); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown agent: %v", err)
		}
	})
}
