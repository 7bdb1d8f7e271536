package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

func claimedIDs(claims []Claim) []int64 {
	var ids []int64
	for _, c := range claims {
		ids = append(ids, c.Monitor.ID)
	}
	return ids
}

func TestClaimDue(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		// Due times: a at t0-2m, b at t0-1m, c at t0 (all due), d in the
		// future, e paused, f in pool dc1.
		mk := func(due time.Duration, mut func(*Monitor)) int64 {
			m := Monitor{Target: "x.example", Schedule: "1h"}
			if mut != nil {
				mut(&m)
			}
			got, err := s.CreateMonitor(ctx, m, t0.Add(due))
			if err != nil {
				t.Fatal(err)
			}
			return got.ID
		}
		c := mk(0, nil)
		b := mk(-time.Minute, nil)
		a := mk(-2*time.Minute, nil)
		d := mk(time.Minute, nil)
		e := mk(-time.Hour, func(m *Monitor) { m.Paused = true })
		f := mk(-time.Hour, func(m *Monitor) { m.AgentPool = "dc1" })

		claims, err := s.ClaimDue(ctx, "r1", []string{"cloud"}, t0, time.Minute, 2)
		if err != nil {
			t.Fatal(err)
		}
		if got := claimedIDs(claims); !slices.Equal(got, []int64{a, b}) {
			t.Fatalf("claimed %v, want oldest first %v", got, []int64{a, b})
		}
		cl := claims[0]
		if !cl.Slot.Equal(t0.Add(-2*time.Minute)) || cl.Owner != "r1" || !cl.Lease.Equal(t0.Add(time.Minute)) ||
			cl.Monitor.Target != "x.example" || !cl.State.NextCheckAt.Equal(cl.Slot) {
			t.Errorf("claim %+v", cl)
		}
		// Leased work is not handed out twice while the lease lives.
		claims, _ = s.ClaimDue(ctx, "r2", []string{"cloud"}, t0.Add(30*time.Second), time.Minute, 10)
		if got := claimedIDs(claims); !slices.Equal(got, []int64{c}) {
			t.Errorf("second claim %v, want %v", got, []int64{c})
		}
		if err := s.ExtendLease(ctx, cl, t0.Add(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		// At t0+2m the leases of b and c ran out and d fell due; a's lease
		// was extended.
		claims, _ = s.ClaimDue(ctx, "r2", []string{"cloud"}, t0.Add(2*time.Minute), time.Minute, 10)
		if got := claimedIDs(claims); !slices.Equal(got, []int64{b, c, d}) {
			t.Errorf("after expiry %v, want %v", got, []int64{b, c, d})
		}
		stale := cl
		stale.Owner = "r9"
		if err := s.ExtendLease(ctx, stale, t0.Add(time.Hour)); !errors.Is(err, ErrLeaseLost) {
			t.Errorf("extend someone else's lease: %v", err)
		}
		claims, _ = s.ClaimDue(ctx, "r3", []string{"dc1", "other"}, t0, time.Minute, 10)
		if got := claimedIDs(claims); !slices.Equal(got, []int64{f}) {
			t.Errorf("pool dc1 %v, want %v", got, []int64{f})
		}
		// Releasing hands r1's work back at once.
		if err := s.ReleaseClaims(ctx, "r1"); err != nil {
			t.Fatal(err)
		}
		claims, _ = s.ClaimDue(ctx, "r4", []string{"cloud"}, t0.Add(time.Second), time.Minute, 10)
		if got := claimedIDs(claims); !slices.Equal(got, []int64{a}) {
			t.Errorf("after release %v, want %v", got, []int64{a})
		}
		if claims, err := s.ClaimDue(ctx, "r4", nil, t0, time.Minute, 10); err != nil || len(claims) != 0 {
			t.Errorf("no pools: %v %v", claims, err)
		}
		// The paused monitor becomes claimable when resumed.
		if err := s.SetPaused(ctx, DefaultTeamID, e, false, t0); err != nil {
			t.Fatal(err)
		}
		claims, _ = s.ClaimDue(ctx, "r5", []string{"cloud"}, t0.Add(time.Second), time.Minute, 10)
		if got := claimedIDs(claims); !slices.Equal(got, []int64{e}) {
			t.Errorf("resumed %v, want %v", got, []int64{e})
		}
	})
}

func TestRecordChecksLostClaims(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m := mustMonitor(t, s, nil)
		gone := mustMonitor(t, s, nil)
		moved := mustMonitor(t, s, nil)
		first := claimAll(t, s, "r1", t0)
		if len(first) != 3 {
			t.Fatalf("claimed %d", len(first))
		}
		// r1 stalls past its lease; r2 takes m over and finishes first.
		second := claimAll(t, s, "r2", t0.Add(2*time.Minute))
		if got := claimedIDs(second); len(got) != 3 {
			t.Fatalf("takeover claimed %v", got)
		}
		if err := s.DeleteMonitor(ctx, DefaultTeamID, gone.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckNow(ctx, DefaultTeamID, moved.ID, t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		byID := func(claims []Claim, id int64) Claim {
			for _, c := range claims {
				if c.Monitor.ID == id {
					return c
				}
			}
			t.Fatalf("no claim for %d", id)
			return Claim{}
		}
		win := checked(byID(second, m.ID), t0.Add(2*time.Minute), assess.OK, "aa", t0.AddDate(1, 0, 0))
		win.History = &HistoryEntry{Status: assess.OK, LeafSHA256: "aa", Change: []string{"first_check"}}
		if lost := record(t, s, win); len(lost) != 0 {
			t.Fatalf("winner lost: %v", lost)
		}
		var recs []CheckRecord
		for _, c := range first {
			r := checked(c, t0.Add(3*time.Minute), assess.Critical, "bb", t0.AddDate(0, 0, 1))
			r.Certificates = []Certificate{cert("bb", t0.AddDate(0, 0, 1), "CN=Evil", "RSA")}
			r.History = &HistoryEntry{Status: assess.Critical, LeafSHA256: "bb", Change: []string{"status"}}
			r.Events = []Event{{Kind: "status_changed"}}
			recs = append(recs, r)
		}
		lost := record(t, s, recs...)
		if len(lost) != 3 {
			t.Fatalf("lost %v, want all three stale records", lost)
		}
		got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID)
		if got.State.Status != assess.OK || got.State.LeafSHA256 != "aa" {
			t.Errorf("stale record overwrote state: %+v", got.State)
		}
		for table, want := range map[string]int{"certificates": 0, "history": 1, "events": 0, "monitor_certificates": 1} {
			if n := count(t, s, table); n != want {
				t.Errorf("%s has %d rows, want %d", table, n, want)
			}
		}
		// The winner's record cleared the lease: r2 cannot record twice.
		if lost := record(t, s, win); len(lost) != 1 {
			t.Errorf("second record of one claim: lost %v", lost)
		}
		// A stale and a live record of one monitor in one batch: the live
		// one wins wherever it stands.
		at := t0.Add(2 * time.Hour)
		old := claimAll(t, s, "r3", at)
		live := claimAll(t, s, "r4", at.Add(2*time.Minute))
		if len(old) != 2 || len(live) != 2 {
			t.Fatalf("claims %v %v", claimedIDs(old), claimedIDs(live))
		}
		batch := []CheckRecord{
			checked(live[0], at, assess.OK, "cc", t0.AddDate(1, 0, 0)),
			checked(old[0], at, assess.Critical, "dd", t0.AddDate(1, 0, 0)),
			checked(old[1], at, assess.Critical, "dd", t0.AddDate(1, 0, 0)),
			checked(live[1], at, assess.OK, "cc", t0.AddDate(1, 0, 0)),
		}
		if lost := record(t, s, batch...); !slices.Equal(lost, []int{1, 2}) {
			t.Errorf("mixed batch lost %v, want [1 2]", lost)
		}
		if got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID); got.State.LeafSHA256 != "cc" {
			t.Errorf("mixed batch left leaf %q", got.State.LeafSHA256)
		}
	})
}

func TestRecordChecksWritesOnlyWhatChanged(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m := mustMonitor(t, s, nil)
		expires := t0.AddDate(0, 2, 0)
		c := claimAll(t, s, "w", t0)[0]
		r := checked(c, t0, assess.OK, "aa", expires)
		r.Certificates = []Certificate{cert("aa", expires, "CN=Test CA", "ECDSA"), cert("ca", t0.AddDate(5, 0, 0), "CN=Root", "RSA")}
		r.History = &HistoryEntry{Status: assess.OK, LeafSHA256: "aa", Change: []string{"first_check", "certificate"}}
		r.Events = []Event{{Kind: "first_check", Status: assess.OK, Message: "first", Data: map[string]any{"sha256": "aa"}}}
		record(t, s, r)

		before := map[string]int{}
		tables := []string{"certificates", "team_certificates", "monitor_certificates", "history", "events"}
		for _, tb := range tables {
			before[tb] = count(t, s, tb)
		}
		// Same certificate, same status: only the state row changes.
		at := t0.Add(time.Hour)
		c = claimAll(t, s, "w", at)[0]
		if c.State.LeafSHA256 != "aa" || c.State.Result == nil || c.State.Result.Chain[0].SHA256 != "aa" {
			t.Fatalf("claim state %+v", c.State)
		}
		record(t, s, checked(c, at, assess.OK, "aa", expires))
		for _, tb := range tables {
			if n := count(t, s, tb); n != before[tb] {
				t.Errorf("unchanged check: %s went from %d to %d rows", tb, before[tb], n)
			}
		}
		got, _ := s.GetMonitor(ctx, DefaultTeamID, m.ID)
		if !got.State.LastCheckAt.Equal(at) || !got.State.NextCheckAt.Equal(at.Add(time.Hour)) ||
			!got.State.LeafExpires.Equal(expires) || got.State.Failures != 0 {
			t.Errorf("state after unchanged check %+v", got.State)
		}
		h, err := s.History(ctx, DefaultTeamID, m.ID, 0)
		if err != nil || len(h) != 1 {
			t.Fatalf("history %v, %v", h, err)
		}
		if !slices.Equal(h[0].Change, []string{"first_check", "certificate"}) || !h[0].At.Equal(t0) || h[0].LeafSHA256 != "aa" {
			t.Errorf("history entry %+v", h[0])
		}
	})
}

func TestCertificatesAndWhereUsed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m1 := mustMonitor(t, s, func(m *Monitor) { m.Target = "a.example" })
		m2 := mustMonitor(t, s, func(m *Monitor) { m.Target = "b.example" })
		old, renewed := t0.AddDate(0, 0, 5), t0.AddDate(0, 3, 0)
		inter := cert("ii", t0.AddDate(3, 0, 0), "CN=Root", "RSA")
		// Both serve leaf "aa" (one certificate for two names).
		var recs []CheckRecord
		for _, c := range claimAll(t, s, "w", t0) {
			r := checked(c, t0, assess.Warning, "aa", old)
			r.Certificates = []Certificate{cert("aa", old, "CN=Test CA R3", "ECDSA"), inter}
			recs = append(recs, r)
		}
		record(t, s, recs...)
		if n := count(t, s, "certificates"); n != 2 {
			t.Errorf("%d certificates, want 2 (deduplicated)", n)
		}
		// m1 is renewed at t0+1h.
		at := t0.Add(time.Hour)
		for _, c := range claimAll(t, s, "w", at) {
			if c.Monitor.ID != m1.ID {
				record(t, s, checked(c, at, assess.Warning, "aa", old))
				continue
			}
			r := checked(c, at, assess.OK, "bb", renewed)
			r.Certificates = []Certificate{cert("bb", renewed, "CN=Test CA R3", "ECDSA"), inter}
			record(t, s, r)
		}
		c, uses, err := s.GetCertificate(ctx, DefaultTeamID, "aa")
		if err != nil {
			t.Fatal(err)
		}
		if string(c.DER) != "der-aa" || !c.NotAfter.Equal(old) || c.Info.Issuer != "CN=Test CA R3" || !c.FirstSeen.Equal(t0) {
			t.Errorf("certificate %+v", c)
		}
		if want := daysLeft(old, time.Now()); c.Info.DaysLeft != want {
			t.Errorf("days left %d, want %d", c.Info.DaysLeft, want)
		}
		wantUses := []CertificateUse{
			{MonitorID: m1.ID, Target: "a.example", FirstSeen: t0, LastSeen: at},
			{MonitorID: m2.ID, Target: "b.example", FirstSeen: t0},
		}
		if fmt.Sprint(uses) != fmt.Sprint(wantUses) {
			t.Errorf("uses of aa\n%v\nwant\n%v", uses, wantUses)
		}
		if _, uses, _ := s.GetCertificate(ctx, DefaultTeamID, "bb"); len(uses) != 1 || !uses[0].LastSeen.IsZero() {
			t.Errorf("uses of bb %v", uses)
		}
		if _, _, err := s.GetCertificate(ctx, DefaultTeamID, "zz"); !errors.Is(err, ErrNotFound) {
			t.Errorf("missing certificate: %v", err)
		}

		list := func(f CertificateFilter) []string {
			t.Helper()
			var out []string
			f.Now = t0
			for {
				page, next, err := s.ListCertificates(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range page {
					out = append(out, c.SHA256)
					if c.Info.DaysLeft != daysLeft(c.NotAfter, t0) {
						t.Errorf("%s: days left %d", c.SHA256, c.Info.DaysLeft)
					}
				}
				if next == "" {
					return out
				}
				f.After = next
			}
		}
		for _, tc := range []struct {
			name string
			f    CertificateFilter
			want []string
		}{
			{"all, paged", CertificateFilter{Limit: 1}, []string{"aa", "bb", "ii"}},
			{"team", CertificateFilter{TeamID: DefaultTeamID}, []string{"aa", "bb", "ii"}},
			{"other team", CertificateFilter{TeamID: 2}, nil},
			{"expiring", CertificateFilter{ExpiringWithin: 30 * 24 * time.Hour}, []string{"aa"}},
			{"issuer", CertificateFilter{Issuer: "test ca"}, []string{"aa", "bb"}},
			{"issuer wildcard", CertificateFilter{Issuer: "_"}, nil},
			{"key type", CertificateFilter{KeyType: "RSA"}, []string{"ii"}},
			{"served by OK", CertificateFilter{Status: assess.OK}, []string{"bb"}},
			{"served by WARNING", CertificateFilter{Status: assess.Warning, TeamID: DefaultTeamID}, []string{"aa"}},
		} {
			if got := list(tc.f); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}

		// Back on the old certificate: its use reopens, first seen kept.
		at2 := t0.Add(2 * time.Hour)
		for _, c := range claimAll(t, s, "w", at2) {
			if c.Monitor.ID == m1.ID {
				record(t, s, checked(c, at2, assess.Warning, "aa", old))
			}
		}
		_, uses, _ = s.GetCertificate(ctx, DefaultTeamID, "aa")
		if len(uses) != 2 || !uses[0].LastSeen.IsZero() || !uses[0].FirstSeen.Equal(t0) {
			t.Errorf("reopened uses %v", uses)
		}
		if _, uses, _ := s.GetCertificate(ctx, DefaultTeamID, "bb"); len(uses) != 1 || !uses[0].LastSeen.Equal(at2) {
			t.Errorf("uses of bb after switching back %v", uses)
		}
		// Deleting a monitor drops its uses, not the certificate.
		if err := s.DeleteMonitor(ctx, DefaultTeamID, m2.ID); err != nil {
			t.Fatal(err)
		}
		if _, uses, err := s.GetCertificate(ctx, DefaultTeamID, "aa"); err != nil || len(uses) != 1 {
			t.Errorf("after delete: %v %v", uses, err)
		}
	})
}

func TestHistoryAndEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m := mustMonitor(t, s, nil)
		other := mustMonitor(t, s, nil)
		statuses := []assess.Status{assess.OK, assess.Warning, assess.Critical, assess.OK}
		for i, st := range statuses {
			at := t0.Add(time.Duration(i) * time.Hour)
			for _, c := range claimAll(t, s, "w", at) {
				r := checked(c, at, st, "aa", t0.AddDate(0, 1, 0))
				r.History = &HistoryEntry{At: at, Status: st, Problems: r.State.Result.Problems, LeafSHA256: "aa", Change: []string{"status"}}
				r.Events = []Event{
					{Kind: "status_changed", Status: st, Severity: "warning", Message: fmt.Sprint(i), Data: map[string]any{"i": i}},
					{Kind: "reminder", Message: fmt.Sprint(i)},
				}
				record(t, s, r)
			}
		}
		h, err := s.History(ctx, DefaultTeamID, m.ID, 3)
		if err != nil || len(h) != 3 {
			t.Fatalf("history %v %v", h, err)
		}
		for i, e := range h {
			if want := statuses[3-i]; e.Status != want || !e.At.Equal(t0.Add(time.Duration(3-i)*time.Hour)) || e.MonitorID != m.ID {
				t.Errorf("history[%d] = %+v, want status %s newest first", i, e, want)
			}
		}
		if len(h[1].Problems) != 1 || h[1].Problems[0].Code != assess.CodeExpiring {
			t.Errorf("problems %+v", h[1].Problems)
		}

		var all []Event
		f := EventFilter{Limit: 3}
		for {
			page, next, err := s.ListEvents(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page...)
			if next == 0 {
				break
			}
			f.Before = next
		}
		if len(all) != 16 {
			t.Fatalf("%d events, want 16", len(all))
		}
		for i := 1; i < len(all); i++ {
			if all[i].ID >= all[i-1].ID {
				t.Fatalf("events not newest first: %d after %d", all[i].ID, all[i-1].ID)
			}
		}
		e := all[1]
		if e.Kind != "status_changed" || e.TeamID != DefaultTeamID || e.Status != assess.OK || e.Severity != "warning" ||
			e.Message != "3" || e.Data["i"] != float64(3) || !e.At.Equal(t0.Add(3*time.Hour)) {
			t.Errorf("event %+v", e)
		}
		if all[0].Data == nil || all[0].At.IsZero() || all[0].MonitorID == 0 {
			t.Errorf("defaults not filled: %+v", all[0])
		}
		evs, _, _ := s.ListEvents(ctx, EventFilter{MonitorID: other.ID, Kind: "reminder", TeamID: DefaultTeamID})
		if len(evs) != 4 || evs[0].MonitorID != other.ID || evs[0].Message != "3" {
			t.Errorf("filtered events %+v", evs)
		}
		// Events outlive their monitor; history does not.
		if err := s.DeleteMonitor(ctx, DefaultTeamID, m.ID); err != nil {
			t.Fatal(err)
		}
		if evs, _, _ := s.ListEvents(ctx, EventFilter{MonitorID: m.ID}); len(evs) != 8 {
			t.Errorf("%d events after delete", len(evs))
		}
		if n := count(t, s, "history"); n != 4 {
			t.Errorf("%d history rows after delete, want the other monitor's 4", n)
		}
	})
}

func TestTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if n, err := s.CountTokens(ctx); err != nil || n != 0 {
			t.Fatalf("count %d %v", n, err)
		}
		hash := []byte{0, 1, 2, 0xff}
		tok, err := s.CreateToken(ctx, DefaultTeamID, "bootstrap", "admin", hash)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.TokenByHash(ctx, hash)
		if err != nil || got != tok || got.Role != "admin" || got.CreatedAt.IsZero() {
			t.Errorf("by hash %+v %v, want %+v", got, err, tok)
		}
		if _, err := s.CreateToken(ctx, DefaultTeamID, "again", "admin", hash); !errors.Is(err, ErrConflict) {
			t.Errorf("duplicate hash: %v, want ErrConflict", err)
		}
		if _, err := s.TokenByHash(ctx, []byte{9}); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown hash: %v", err)
		}
		if n, _ := s.CountTokens(ctx); n != 1 {
			t.Errorf("count %d", n)
		}
	})
}

// TestConcurrentClaimsExactlyOnce has three replicas, each with its own
// Store and pool, drain 2,000 due monitors at once.
func TestConcurrentClaimsExactlyOnce(t *testing.T) {
	for _, e := range []Engine{Postgres, SQLite} {
		t.Run(string(e), func(t *testing.T) {
			t.Parallel()
			dsn := testDSN(t, e)
			seedMonitors(t, openTest(t, dsn), 2000, nil)
			var (
				wg     sync.WaitGroup
				mu     sync.Mutex
				counts = map[int64]int{}
				errs   = make([]error, 3)
			)
			for r := range 3 {
				s := openTest(t, dsn)
				wg.Go(func() {
					for {
						claims, err := s.ClaimDue(context.Background(), fmt.Sprint("replica", r), []string{"cloud"}, t0, time.Hour, 37)
						if err != nil {
							errs[r] = err
							return
						}
						if len(claims) == 0 {
							return
						}
						mu.Lock()
						for _, c := range claims {
							counts[c.Monitor.ID]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if len(counts) != 2000 {
				t.Errorf("%d monitors claimed, want 2000", len(counts))
			}
			for id, n := range counts {
				if n != 1 {
					t.Errorf("monitor %d claimed %d times", id, n)
				}
			}
		})
	}
}

// TestClosedDatabase is a database that went away mid-way: every method
// fails with an error, none panics.
func TestClosedDatabase(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		m := mustMonitor(t, s, nil)
		claims := claimAll(t, s, "w", t0)
		s.db.Close()
		s.rdb.Close()
		calls := map[string]error{
			"ping":     s.Ping(ctx),
			"create":   second(s.CreateMonitor(ctx, Monitor{Target: "x"}, t0)),
			"get":      second(s.GetMonitor(ctx, DefaultTeamID, m.ID)),
			"update":   second(s.UpdateMonitor(ctx, m, t0)),
			"delete":   s.DeleteMonitor(ctx, DefaultTeamID, m.ID),
			"pause":    s.SetPaused(ctx, DefaultTeamID, m.ID, true, t0),
			"checknow": s.CheckNow(ctx, DefaultTeamID, m.ID, t0),
			"list":     third(s.ListMonitors(ctx, ListFilter{})),
			"count":    second(s.CountByStatus(ctx)),
			"claim":    second(s.ClaimDue(ctx, "w", []string{"cloud"}, t0, time.Minute, 10)),
			"extend":   s.ExtendLease(ctx, claims[0], t0),
			"release":  s.ReleaseClaims(ctx, "w"),
			"record":   second(s.RecordChecks(ctx, []CheckRecord{checked(claims[0], t0, assess.OK, "aa", t0)})),
			"cert":     third(s.GetCertificate(ctx, DefaultTeamID, "aa")),
			"certs":    third(s.ListCertificates(ctx, CertificateFilter{})),
			"history":  second(s.History(ctx, DefaultTeamID, m.ID, 1)),
			"events":   third(s.ListEvents(ctx, EventFilter{})),
			"token":    second(s.CreateToken(ctx, 1, "n", "admin", []byte{1})),
			"bytoken":  second(s.TokenByHash(ctx, []byte{1})),
			"tokens":   second(s.CountTokens(ctx)),
		}
		for name, err := range calls {
			if err == nil {
				t.Errorf("%s on a closed database succeeded", name)
			}
		}
		s.Close() // a second close must not panic either
	})
}

func third[A, B any](_ A, _ B, err error) error { return err }

// TestPostgresConnectionsKilled is a database restart as a client sees
// it: the server ends every connection; the pool reconnects.
func TestPostgresConnectionsKilled(t *testing.T) {
	dsn := testDSN(t, Postgres)
	app := fmt.Sprintf("certmon_test_%d", time.Now().UnixNano())
	s := openTest(t, dsn+"&application_name="+app)
	ctx := context.Background()
	m := mustMonitor(t, s, nil)
	admin := openTest(t, dsn)
	var killed int
	if err := admin.db.QueryRow(`SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no connection to kill")
	}
	var err error
	for range 3 {
		if _, err = s.GetMonitor(ctx, DefaultTeamID, m.ID); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("no recovery after the connections were killed: %v", err)
	}
	if _, err := s.ClaimDue(ctx, "w", []string{"cloud"}, t0, time.Minute, 10); err != nil {
		t.Errorf("claim after reconnect: %v", err)
	}
}

func TestReleaseStaleClaims(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for range 3 {
			if _, err := s.CreateMonitor(ctx, Monitor{Target: "x.example", Schedule: "1h"}, t0); err != nil {
				t.Fatal(err)
			}
		}
		if claims, err := s.ClaimDue(ctx, "dead", []string{"cloud"}, t0, time.Hour, 10); err != nil || len(claims) != 3 {
			t.Fatalf("claims %d, %v", len(claims), err)
		}
		n, err := s.ReleaseStaleClaims(ctx)
		if err != nil {
			t.Fatal(err)
		}
		claims, err := s.ClaimDue(ctx, "next", []string{"cloud"}, t0, time.Hour, 10)
		if err != nil {
			t.Fatal(err)
		}
		// SQLite has one server, so a restart frees the dead process's
		// leases at once; PostgreSQL replicas may still be alive.
		want := map[Engine]int{SQLite: 3, Postgres: 0}[s.Engine()]
		if int(n) != want || len(claims) != want {
			t.Errorf("%s: released %d, reclaimed %d, want %d", s.Engine(), n, len(claims), want)
		}
	})
}
