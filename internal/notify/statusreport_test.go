package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
)

// reportT0 is when the test monitors were checked.
var reportT0 = time.Date(2026, 3, 2, 6, 0, 0, 0, time.UTC)

// recorder is a Sender that keeps what it was given; fail, when set,
// answers each send (nil: accepted).
type recorder struct {
	mu    sync.Mutex
	msgs  []Message
	calls int
	fail  func(call int) error
}

func (r *recorder) Send(_ context.Context, m Message) (Answer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		if err := r.fail(r.calls); err != nil {
			return Answer{Code: 451}, err
		}
	}
	r.msgs = append(r.msgs, m)
	return Answer{Code: 250}, nil
}

func (r *recorder) sent() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// openReportStore opens a fresh SQLite store; open it again on the same
// path for a second replica.
func openReportStore(t *testing.T, path string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed is a monitor to create: checked with status and a leaf expiring in
// days, or never checked when status is "".
type seed struct {
	target string
	status assess.Status
	days   int
	paused bool
}

// seedMonitors creates the monitors and records their checks through the
// store's own claim and record path, as the scheduler would.
func seedMonitors(t *testing.T, s *store.Store, seeds ...seed) []store.Monitor {
	t.Helper()
	ctx := context.Background()
	var out []store.Monitor
	byID := map[int64]seed{}
	for _, sd := range seeds {
		m, err := s.CreateMonitor(ctx, store.Monitor{Target: sd.target, Schedule: "1h", WarnDays: 30, CritDays: 7}, reportT0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		byID[m.ID] = sd
	}
	claims, err := s.ClaimDue(ctx, "seed", []string{"cloud"}, reportT0, time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.CheckRecord
	for _, c := range claims {
		sd := byID[c.Monitor.ID]
		if sd.status == "" {
			continue
		}
		exp := reportT0.Add(time.Duration(sd.days)*24*time.Hour + time.Hour)
		sha := fmt.Sprintf("%064x", c.Monitor.ID)
		info := assess.Certificate{Subject: "CN=" + sd.target, Issuer: "CN=Test CA,O=Test", SHA256: sha,
			NotAfter: exp.Format(time.RFC3339), SANs: []string{sd.target}}
		res := &assess.Result{Target: sd.target, Status: sd.status, Problems: []assess.Problem{}, Chain: []assess.Certificate{info}}
		recs = append(recs, store.CheckRecord{
			Claim: c,
			State: store.State{MonitorID: c.Monitor.ID, Result: res, Status: sd.status, LeafSHA256: sha,
				LeafExpires: exp, LastCheckAt: reportT0, NextCheckAt: reportT0.Add(time.Hour)},
			Certificates: []store.Certificate{{SHA256: sha, DER: []byte(sha), NotAfter: exp, FirstSeen: reportT0, Info: info}},
		})
	}
	if lost, err := s.RecordChecks(ctx, recs); err != nil || len(lost) > 0 {
		t.Fatalf("record: lost %v, %v", lost, err)
	}
	if err := s.ReleaseClaims(ctx, "seed"); err != nil {
		t.Fatal(err)
	}
	for i, sd := range seeds {
		if sd.paused {
			if err := s.SetPaused(ctx, store.DefaultTeamID, out[i].ID, true, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func newTestReport(st ReportStore, snd Sender, owner string) *StatusReport {
	return &StatusReport{
		Store: st, Sender: snd, Schedule: "0 8 * * *", Owner: owner,
		BaseURL: "https://certmon.example",
		Now:     func() time.Time { return reportT0.Add(2 * time.Hour) },
		backoff: time.Millisecond,
	}
}

// smallPages makes the store page by two, so a few monitors exercise
// the cursor loop.
type smallPages struct{ *store.Store }

func (s smallPages) ListMonitors(ctx context.Context, f store.ListFilter) ([]store.MonitorWithState, int64, error) {
	f.Limit = 2
	return s.Store.ListMonitors(ctx, f)
}

func TestStatusReportRunOnce(t *testing.T) {
	s := openReportStore(t, storetest.DSN(t, "sqlite"))
	seedMonitors(t, s,
		seed{target: "fine.example", status: assess.OK, days: 200},
		seed{target: "soon.example", status: assess.Warning, days: 20},
		seed{target: "bad.example", status: assess.Critical, days: 2},
		seed{target: "new.example"},
		seed{target: "off.example", status: assess.OK, days: 100, paused: true},
	)
	rec := &recorder{}
	r := newTestReport(smallPages{s}, rec, "r1")
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	slot := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	sent, err := r.RunOnce(context.Background(), slot)
	if err != nil || !sent {
		t.Fatalf("RunOnce: %v %v", sent, err)
	}
	msgs := rec.sent()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if want := fmt.Sprintf("status_report/%d", slot.Unix()); m.Key != want {
		t.Errorf("key %q, want %q", m.Key, want)
	}
	if want := "[certmon] Status report: 1 critical, 1 warning, 1 OK, 1 not checked yet, 1 paused"; m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	if m.Prepared == nil {
		t.Fatal("not prepared")
	}
	// Every monitor, across pages, most urgent first.
	order := []string{"bad.example", "soon.example", "fine.example", "new.example", "off.example"}
	last := -1
	for _, target := range order {
		i := strings.Index(m.Prepared.HTML, ">"+target+"</a>")
		if i < 0 || !strings.Contains(m.Prepared.Text, target) {
			t.Errorf("%s missing from the report", target)
			continue
		}
		if i < last {
			t.Errorf("%s out of order", target)
		}
		last = i
	}
	for _, want := range []string{"Test CA", "https://certmon.example/api/v1/monitors/", "not checked yet", ">paused<"} {
		if !strings.Contains(m.Prepared.HTML, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	// The slot is spent: running it again sends nothing.
	if sent, err := r.RunOnce(context.Background(), slot); err != nil || sent {
		t.Errorf("second run of the slot: %v %v", sent, err)
	}
	if n := len(rec.sent()); n != 1 {
		t.Errorf("%d messages after rerun", n)
	}
}

func TestStatusReportOneReplicaSends(t *testing.T) {
	path := storetest.DSN(t, "sqlite")
	s1 := openReportStore(t, path)
	seedMonitors(t, s1, seed{target: "a.example", status: assess.OK, days: 90})
	s2 := openReportStore(t, path)
	rec := &recorder{}
	replicas := []*StatusReport{newTestReport(s1, rec, "r1"), newTestReport(s2, rec, "r2")}
	slot := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	for round := range 3 {
		slot := slot.Add(time.Duration(round) * 24 * time.Hour)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			sent int
		)
		for _, r := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := r.RunOnce(context.Background(), slot)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					sent++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if sent != 1 {
			t.Errorf("slot %s: %d replicas sent, want 1", slot, sent)
		}
	}
	if n := len(rec.sent()); n != 3 {
		t.Errorf("%d messages for 3 slots", n)
	}
}

func TestStatusReportOnlyWhenAttention(t *testing.T) {
	s := openReportStore(t, storetest.DSN(t, "sqlite"))
	seedMonitors(t, s,
		seed{target: "a.example", status: assess.OK, days: 90},
		seed{target: "b.example", status: assess.OK, days: 60},
		seed{target: "c.example"},
		seed{target: "d.example", status: assess.Critical, days: -3, paused: true},
	)
	rec := &recorder{}
	r := newTestReport(s, rec, "r1")
	r.OnlyWhenAttention = true
	slot := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	if sent, err := r.RunOnce(context.Background(), slot); err != nil || sent {
		t.Fatalf("all fine: sent %v, %v", sent, err)
	}
	if n := len(rec.sent()); n != 0 {
		t.Fatalf("%d messages while all fine", n)
	}
	seedMonitors(t, s, seed{target: "w.example", status: assess.Warning, days: 25})
	if sent, err := r.RunOnce(context.Background(), slot.Add(24*time.Hour)); err != nil || !sent {
		t.Fatalf("one warning: sent %v, %v", sent, err)
	}
	if msgs := rec.sent(); len(msgs) != 1 || !strings.Contains(msgs[0].Subject, "1 warning") {
		t.Errorf("messages %+v", msgs)
	}
}

func TestStatusReportRetries(t *testing.T) {
	s := openReportStore(t, storetest.DSN(t, "sqlite"))
	seedMonitors(t, s, seed{target: "a.example", status: assess.OK, days: 90})
	slot := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	transient := &SendError{Err: errors.New("451 try again later")}

	// Two failures, then accepted: one report, same key each time.
	rec := &recorder{fail: func(call int) error {
		if call <= 2 {
			return transient
		}
		return nil
	}}
	r := newTestReport(s, rec, "r1")
	if sent, err := r.RunOnce(context.Background(), slot); err != nil || !sent {
		t.Fatalf("sent %v, %v", sent, err)
	}
	if rec.calls != 3 || len(rec.sent()) != 1 {
		t.Errorf("%d calls, %d sent", rec.calls, len(rec.sent()))
	}

	// Always failing: bounded.
	rec = &recorder{fail: func(int) error { return transient }}
	r = newTestReport(s, rec, "r1")
	r.attempts = 4
	if sent, err := r.RunOnce(context.Background(), slot.Add(time.Hour)); err == nil || sent {
		t.Fatalf("sent %v, %v", sent, err)
	}
	if rec.calls != 4 {
		t.Errorf("%d calls, want 4", rec.calls)
	}

	// A permanent failure is not retried.
	rec = &recorder{fail: func(int) error { return &SendError{Permanent: true, Err: errors.New("550 no such user")} }}
	r = newTestReport(s, rec, "r1")
	if _, err := r.RunOnce(context.Background(), slot.Add(2*time.Hour)); err == nil || !Permanent(err) {
		t.Fatalf("err %v", err)
	}
	if rec.calls != 1 {
		t.Errorf("%d calls, want 1", rec.calls)
	}

	// Retrying stops when the context ends.
	rec = &recorder{fail: func(int) error { return transient }}
	r = newTestReport(s, rec, "r1")
	r.backoff = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := r.RunOnce(ctx, slot.Add(3*time.Hour)); err == nil {
		t.Fatal("no error")
	}
	if time.Since(start) > 5*time.Second || rec.calls != 1 {
		t.Errorf("took %s, %d calls", time.Since(start), rec.calls)
	}
}

func TestStatusReportValidate(t *testing.T) {
	rec := &recorder{}
	s := openReportStore(t, storetest.DSN(t, "sqlite"))
	for _, c := range []struct {
		schedule string
		ok       bool
	}{
		{"0 8 * * *", true},
		{"*/15 * * * 1-5", true},
		{"", false},
		{"0 8 * *", false},
		{"0 0 8 * * *", false}, // seconds: not accepted, as for monitors
		{"61 8 * * *", false},
		{"@daily", false},
		{"0 0 30 2 *", false}, // February 30th never comes
	} {
		r := newTestReport(s, rec, "r1")
		r.Schedule = c.schedule
		err := r.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%q: %v", c.schedule, err)
		}
		if err != nil && !strings.Contains(err.Error(), "notify.report.schedule") {
			t.Errorf("%q: error does not name the setting: %v", c.schedule, err)
		}
	}
	if err := (&StatusReport{Schedule: "0 8 * * *"}).Validate(); err == nil {
		t.Error("no store or sender: valid")
	}
	r := newTestReport(s, rec, "r1")
	r.Schedule = "nope"
	if err := r.Run(context.Background()); err == nil {
		t.Error("Run with a bad schedule: no error")
	}
}

func TestNextSlot(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expr  string
		loc   *time.Location
		after string // UTC
		want  string // UTC
	}{
		{"0 8 * * *", time.UTC, "2026-03-02 07:00:00", "2026-03-02 08:00:00"},
		{"0 8 * * *", time.UTC, "2026-03-02 08:00:00", "2026-03-03 08:00:00"}, // strictly after
		{"0 8 * * *", time.UTC, "2026-03-02 07:59:59", "2026-03-02 08:00:00"},
		{"*/15 * * * *", time.UTC, "2026-03-02 07:01:30", "2026-03-02 07:15:00"},
		{"0 9 * * 1", time.UTC, "2026-03-02 09:00:00", "2026-03-09 09:00:00"}, // Mondays
		{"0 8 * * *", berlin, "2026-01-10 06:00:00", "2026-01-10 07:00:00"},   // CET
		{"0 8 * * *", berlin, "2026-07-10 05:00:00", "2026-07-10 06:00:00"},   // CEST
		{"0 8 * * *", berlin, "2026-03-28 07:00:00", "2026-03-29 06:00:00"},   // 23-hour day
		{"0 8 * * *", berlin, "2026-10-24 06:00:00", "2026-10-25 07:00:00"},   // 25-hour day
		// 02:30 does not exist on March 29: the slot is the jump to 03:00.
		{"30 2 * * *", berlin, "2026-03-28 23:00:00", "2026-03-29 01:00:00"},
		{"30 2 * * *", berlin, "2026-03-29 01:00:00", "2026-03-30 00:30:00"},
		// 02:30 happens twice on October 25: the slot is the first.
		{"30 2 * * *", berlin, "2026-10-24 22:00:00", "2026-10-25 00:30:00"},
		{"30 2 * * *", berlin, "2026-10-25 00:30:00", "2026-10-26 01:30:00"},
	} {
		got, err := nextSlot(c.expr, c.loc, utc(c.after))
		if err != nil {
			t.Errorf("%s after %s: %v", c.expr, c.after, err)
			continue
		}
		if want := utc(c.want); !got.Equal(want) {
			t.Errorf("%q in %s after %s UTC = %s, want %s UTC", c.expr, c.loc, c.after, got.UTC().Format(time.DateTime), c.want)
		}
	}

	// Hourly across the night the clock falls back: every wall-clock hour
	// once, in order.
	var walls []string
	at := utc("2026-10-24 21:30:00")
	for range 6 {
		if at, err = nextSlot("0 * * * *", berlin, at); err != nil {
			t.Fatal(err)
		}
		walls = append(walls, at.In(berlin).Format("15:04 MST"))
	}
	if got, want := strings.Join(walls, ", "), "00:00 CEST, 01:00 CEST, 02:00 CEST, 03:00 CET, 04:00 CET, 05:00 CET"; got != want {
		t.Errorf("hourly over the change: %s, want %s", got, want)
	}

	if _, err := nextSlot("0 0 30 2 *", time.UTC, utc("2026-03-02 00:00:00")); err == nil {
		t.Error("February 30th: no error")
	}
}

// TestStatusReportRun drives the loop with a clock that leaps an hour at
// every reading, so each slot is due at once and nothing sleeps.
func TestStatusReportRun(t *testing.T) {
	s := openReportStore(t, storetest.DSN(t, "sqlite"))
	seedMonitors(t, s, seed{target: "a.example", status: assess.OK, days: 90})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{fail: func(call int) error {
		if call == 3 {
			cancel()
		}
		return nil
	}}
	var (
		mu    sync.Mutex
		clock = reportT0
	)
	r := newTestReport(s, rec, "r1")
	r.Schedule = "0 * * * *"
	r.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Hour)
		return clock
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	msgs := rec.sent()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Key <= msgs[i-1].Key {
			t.Errorf("slots not increasing: %s then %s", msgs[i-1].Key, msgs[i].Key)
		}
	}

	// With the real clock and a yearly schedule, Run sleeps and returns
	// as soon as its context ends.
	ctx, cancel = context.WithCancel(context.Background())
	r = newTestReport(s, &recorder{}, "r1")
	r.Schedule, r.Now = "0 0 1 1 *", nil
	go func() { done <- r.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop on cancel")
	}
}
