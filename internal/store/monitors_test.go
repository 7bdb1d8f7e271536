package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

func TestMonitorCRUD(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		s.now = func() time.Time { return t0 }
		m := mustMonitor(t, s, func(m *Monitor) {
			m.Target, m.Protocol, m.SNI = "smtp://mail.example.com:587", "smtp", "mail.example.com"
			m.Tags, m.Owner, m.Recipients = []string{"prod", "mail", "prod"}, "ops", []string{"ops@example.com"}
			m.CAPEM = "-----BEGIN CERTIFICATE-----"
		})
		if m.ID == 0 || m.TeamID != DefaultTeamID || m.AgentPool != "cloud" || !m.CreatedAt.Equal(t0) {
			t.Fatalf("created %+v", m)
		}
		if !slices.Equal(m.Tags, []string{"prod", "mail"}) {
			t.Errorf("tags %v, want duplicates dropped", m.Tags)
		}
		got, err := s.GetMonitor(ctx, DefaultTeamID, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Monitor) != fmt.Sprint(m) {
			t.Errorf("get\n%+v\nwant\n%+v", got.Monitor, m)
		}
		if got.State.Status != "" || got.State.Result != nil || !got.State.NextCheckAt.Equal(t0) || !got.State.LastCheckAt.IsZero() {
			t.Errorf("new state %+v", got.State)
		}

		m.Target, m.Tags, m.WarnDays = "example.org", []string{"staging"}, 14
		upd, err := s.UpdateMonitor(ctx, m, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if upd.Target != "example.org" || upd.WarnDays != 14 || !slices.Equal(upd.Tags, []string{"staging"}) {
			t.Errorf("updated %+v", upd)
		}
		if page, _, err := s.ListMonitors(ctx, ListFilter{Tag: "prod"}); err != nil || len(page) != 0 {
			t.Errorf("old tag still matches: %d, %v", len(page), err)
		}
		if page, _, err := s.ListMonitors(ctx, ListFilter{Tag: "staging"}); err != nil || len(page) != 1 {
			t.Errorf("new tag: %d, %v", len(page), err)
		}
		later := t0.Add(3 * time.Hour)
		if _, err := s.UpdateMonitor(ctx, m, later); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID); !got.State.NextCheckAt.Equal(later) {
			t.Errorf("rescheduled to %v", got.State.NextCheckAt)
		}
		if err := s.CheckNow(ctx, DefaultTeamID, m.ID, t0); err != nil {
			t.Fatal(err)
		}
		if err := s.SetPaused(ctx, DefaultTeamID, m.ID, true, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID); !got.Paused || !got.State.NextCheckAt.Equal(t0) {
			t.Errorf("paused %+v", got)
		}
		if err := s.SetPaused(ctx, DefaultTeamID, m.ID, false, later); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID); got.Paused || !got.State.NextCheckAt.Equal(later) {
			t.Errorf("resumed %+v", got)
		}

		if err := s.DeleteMonitor(ctx, DefaultTeamID, m.ID); err != nil {
			t.Fatal(err)
		}
		if n := count(t, s, "monitor_tags"); n != 0 {
			t.Errorf("%d tag rows left", n)
		}
		missing := m
		missing.ID = m.ID
		for name, err := range map[string]error{
			"get":      second(s.GetMonitor(ctx, DefaultTeamID, m.ID)),
			"update":   second(s.UpdateMonitor(ctx, missing, time.Time{})),
			"delete":   s.DeleteMonitor(ctx, DefaultTeamID, m.ID),
			"pause":    s.SetPaused(ctx, DefaultTeamID, m.ID, true, time.Time{}),
			"checknow": s.CheckNow(ctx, DefaultTeamID, m.ID, t0),
			"history":  second(s.History(ctx, DefaultTeamID, m.ID, 10)),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a deleted monitor: %v, want ErrNotFound", name, err)
			}
		}
		if _, err := s.CreateMonitor(ctx, Monitor{TeamID: 42, Target: "x"}, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("monitor in a missing team: %v, want ErrNotFound", err)
		}
		if _, err := s.CreateMonitor(ctx, Monitor{}, t0); err == nil {
			t.Error("monitor without target accepted")
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestTeamIsolation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		addTeam(t, s, 2)
		mine := mustMonitor(t, s, nil)
		theirs := mustMonitor(t, s, func(m *Monitor) { m.TeamID = 2; m.Target = "other.example" })
		if _, err := s.GetMonitor(ctx, DefaultTeamID, theirs.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("get across teams: %v", err)
		}
		moved := theirs
		moved.TeamID = DefaultTeamID
		if _, err := s.UpdateMonitor(ctx, moved, time.Time{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("update across teams: %v", err)
		}
		if err := s.DeleteMonitor(ctx, DefaultTeamID, theirs.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("delete across teams: %v", err)
		}
		if err := s.CheckNow(ctx, 2, mine.ID, t0); !errors.Is(err, ErrNotFound) {
			t.Errorf("check now across teams: %v", err)
		}
		page, _, err := s.ListMonitors(ctx, ListFilter{TeamID: 2})
		if err != nil || len(page) != 1 || page[0].ID != theirs.ID {
			t.Errorf("team 2 lists %v, %v", page, err)
		}
		if page, _, _ := s.ListMonitors(ctx, ListFilter{}); len(page) != 2 {
			t.Errorf("all teams list %d", len(page))
		}

		// A check of team 2 stores its certificate for team 2 only.
		claims := claimAll(t, s, "w", t0)
		var recs []CheckRecord
		for _, c := range claims {
			sha := fmt.Sprintf("%064d", c.Monitor.ID)
			r := checked(c, t0, assess.OK, sha, t0.AddDate(0, 3, 0))
			r.Certificates = []Certificate{cert(sha, t0.AddDate(0, 3, 0), "CN=Test CA", "ECDSA")}
			r.Events = []Event{{Kind: "first_check", Message: c.Monitor.Target}}
			recs = append(recs, r)
		}
		record(t, s, recs...)
		theirSHA := fmt.Sprintf("%064d", theirs.ID)
		if _, _, err := s.GetCertificate(ctx, DefaultTeamID, theirSHA); !errors.Is(err, ErrNotFound) {
			t.Errorf("certificate across teams: %v", err)
		}
		if _, uses, err := s.GetCertificate(ctx, 2, theirSHA); err != nil || len(uses) != 1 {
			t.Errorf("own certificate: %v %v", uses, err)
		}
		if certs, _, _ := s.ListCertificates(ctx, CertificateFilter{TeamID: DefaultTeamID}); len(certs) != 1 || certs[0].SHA256 == theirSHA {
			t.Errorf("team 1 certificates %v", certs)
		}
		if evs, _, _ := s.ListEvents(ctx, EventFilter{TeamID: 2}); len(evs) != 1 || evs[0].MonitorID != theirs.ID || evs[0].TeamID != 2 {
			t.Errorf("team 2 events %+v", evs)
		}
		if _, err := s.History(ctx, DefaultTeamID, theirs.ID, 10); !errors.Is(err, ErrNotFound) {
			t.Errorf("history across teams: %v", err)
		}
	})
}

func TestListMonitors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const n = 250
		statuses := []assess.Status{assess.OK, assess.Warning, assess.Critical, assess.Unknown, ""}
		ids := make([]int64, n)
		for i := range n {
			ids[i] = mustMonitor(t, s, func(m *Monitor) {
				m.Target = fmt.Sprintf("host%03d.Example.com", i)
				if i%10 == 0 {
					m.Target = fmt.Sprintf("50%%_off-%03d.example", i) // LIKE wildcards, literally
				}
				m.Tags = []string{"prod-eu", "web"}
				if i%3 == 0 {
					m.Tags = []string{"prod"}
				}
				if i%7 == 0 {
					m.Owner = "Alice"
				}
				if i%25 == 0 {
					m.AgentPool = "dc1"
				}
			}).ID
		}
		claims, err := s.ClaimDue(ctx, "w", []string{"cloud", "dc1"}, t0, time.Minute, 1000)
		if err != nil || len(claims) != n {
			t.Fatalf("claimed %d, %v", len(claims), err)
		}
		var recs []CheckRecord
		for _, c := range claims {
			i := slices.Index(ids, c.Monitor.ID)
			if statuses[i%5] == "" {
				continue // never checked
			}
			expires := t0.AddDate(0, 6, 0)
			if i%2 == 0 {
				expires = t0.AddDate(0, 0, 10)
			}
			recs = append(recs, checked(c, t0, statuses[i%5], fmt.Sprintf("%064d", i), expires))
		}
		if lost := record(t, s, recs...); len(lost) != 0 {
			t.Fatalf("lost %v", lost)
		}

		for _, tc := range []struct {
			name string
			f    ListFilter
			keep func(i int) bool
		}{
			{"all", ListFilter{}, func(int) bool { return true }},
			{"team", ListFilter{TeamID: DefaultTeamID}, func(int) bool { return true }},
			{"other team", ListFilter{TeamID: 2}, func(int) bool { return false }},
			{"status", ListFilter{Status: assess.Warning}, func(i int) bool { return i%5 == 1 }},
			{"tag exact", ListFilter{Tag: "prod"}, func(i int) bool { return i%3 == 0 }},
			{"tag and status", ListFilter{Tag: "web", Status: assess.Critical}, func(i int) bool { return i%3 != 0 && i%5 == 2 }},
			{"text target", ListFilter{Text: "50%_OFF"}, func(i int) bool { return i%10 == 0 }},
			{"text wildcard is literal", ListFilter{Text: "%"}, func(i int) bool { return i%10 == 0 }},
			{"text owner", ListFilter{Text: "aLiCe"}, func(i int) bool { return i%7 == 0 }},
			{"text tag", ListFilter{Text: "PROD-"}, func(i int) bool { return i%3 != 0 }},
			{"pool", ListFilter{AgentPool: "dc1"}, func(i int) bool { return i%25 == 0 }},
			{"expiring", ListFilter{ExpiringWithin: 30 * 24 * time.Hour, Now: t0}, func(i int) bool { return i%5 != 4 && i%2 == 0 }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var want, got []int64
				for i, id := range ids {
					if tc.keep(i) {
						want = append(want, id)
					}
				}
				f := tc.f
				f.Limit = 100
				for pages := 0; ; pages++ {
					page, next, err := s.ListMonitors(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > 100 || pages > 3 {
						t.Fatalf("page of %d, page %d", len(page), pages)
					}
					for _, m := range page {
						got = append(got, m.ID)
					}
					if next == 0 {
						break
					}
					f.After = next
				}
				if !slices.Equal(got, want) {
					t.Errorf("got %d IDs %v\nwant %d %v", len(got), got, len(want), want)
				}
			})
		}

		page, next, err := s.ListMonitors(ctx, ListFilter{Limit: 100})
		if err != nil || len(page) != 100 || next != page[99].ID {
			t.Fatalf("first page: %d, next %d, %v", len(page), next, err)
		}
		if page[0].State.Status != assess.OK || page[0].State.Result == nil || page[0].State.LeafExpires.IsZero() {
			t.Errorf("state not listed: %+v", page[0].State)
		}
		if page, _, _ := s.ListMonitors(ctx, ListFilter{Limit: 5000}); len(page) != n {
			t.Errorf("limit is capped at 1000, got %d of %d", len(page), n)
		}
		if page, _, _ := s.ListMonitors(ctx, ListFilter{}); len(page) != 100 {
			t.Errorf("default limit gave %d", len(page))
		}
		counts, err := s.CountByStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if counts["OK"] != 50 || counts["WARNING"] != 50 || counts[""] != 50 {
			t.Errorf("counts %v", counts)
		}
	})
}
