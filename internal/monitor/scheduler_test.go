package monitor_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
)

func openStore(t *testing.T, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	certtest.Eventually(t, limit, what, cond)
}

// TestSchedulerChecksNewMonitors runs the real built-in agent against TLS
// servers on loopback and shows new monitors checked within seconds, their
// state, history and first-check events written, on both engines.
func TestSchedulerChecksNewMonitors(t *testing.T) {
	now := time.Now()
	root := certtest.NewRootCA("Sched Root", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(3, 0, 0)))
	good := root.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.AddDate(0, 0, -1), now.AddDate(0, 0, 100)))
	soon := root.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.AddDate(0, 0, -80), now.AddDate(0, 0, 3)))
	goodAddr := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(good)}}).Addr
	soonAddr := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(soon)}}).Addr

	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			st := openStore(t, storetest.DSN(t, engine))
			ctx := context.Background()
			want := map[int64]assess.Status{}
			for i := range 20 {
				addr, status := goodAddr, assess.OK
				if i%4 == 0 {
					addr, status = soonAddr, assess.Critical
				}
				m, err := st.CreateMonitor(ctx, store.Monitor{TeamID: store.DefaultTeamID, Target: addr, Schedule: "1h",
					WarnDays: 30, CritDays: 7, AgentPool: monitor.CloudPool}, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				want[m.ID] = status
			}
			checker := monitor.NewLocalChecker(probe.New(probe.Options{Timeout: 3 * time.Second}),
				assess.Config{Roots: certtest.Pool(root)}, assess.Policy{WarnDays: 30, CritDays: 7})
			sched := monitor.NewScheduler(monitor.SchedulerConfig{Owner: "test", Workers: 4, Poll: 50 * time.Millisecond},
				st, checker, nil, nil)
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- sched.Run(runCtx) }()

			waitFor(t, "every monitor checked", 10*time.Second, func() bool {
				page, _, err := st.ListMonitors(ctx, store.ListFilter{TeamID: store.DefaultTeamID, Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range page {
					if m.State.Status == "" {
						return false
					}
				}
				return len(page) == len(want)
			})
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for id, status := range want {
				m, err := st.GetMonitor(ctx, store.DefaultTeamID, id)
				if err != nil {
					t.Fatal(err)
				}
				if m.State.Status != status {
					t.Errorf("monitor %d (%s): %s, want %s", id, m.Target, m.State.Status, status)
				}
				if next := m.State.NextCheckAt.Sub(m.State.LastCheckAt); next <= 0 || next > time.Hour {
					t.Errorf("monitor %d: next check %v after the last", id, next)
				}
				h, err := st.History(ctx, store.DefaultTeamID, id, 10)
				if err != nil || len(h) != 1 {
					t.Errorf("monitor %d: history %v %v", id, h, err)
				}
			}
			events, _, err := st.ListEvents(ctx, store.EventFilter{TeamID: store.DefaultTeamID, Kind: monitor.EventFirstCheck, Limit: 100})
			if err != nil || len(events) != len(want) {
				t.Errorf("first-check events: %d, %v", len(events), err)
			}
		})
	}
}

// countingChecker stands in for the network: it records which monitor ran
// and answers OK at once, or, as a "dead" replica, never answers.
type countingChecker struct {
	started atomic.Int32
	mu      sync.Mutex
	runs    map[int64]int
	hang    bool
}

func (c *countingChecker) Check(ctx context.Context, claim store.Claim) monitor.Outcome {
	m := claim.Monitor
	c.started.Add(1)
	if c.hang {
		<-ctx.Done()
	} else {
		c.mu.Lock()
		c.runs[m.ID]++
		c.mu.Unlock()
	}
	sha := fmt.Sprintf("%064x", m.ID)
	return monitor.Outcome{At: time.Now().UTC(), ChainDER: [][]byte{[]byte("der")}, Result: &assess.Result{
		Target: m.Target, Status: assess.OK, Problems: []assess.Problem{},
		Chain: []assess.Certificate{{SHA256: sha, NotAfter: "2027-01-01T00:00:00Z"}},
	}}
}

// TestReplicasShareWorkExactlyOnce runs three schedulers, each with its own
// connection pool, on one PostgreSQL database. One of them claims work and
// then hangs like a killed process. Every monitor must be checked exactly
// once: the live replicas take the dead one's claims over when its lease
// lapses, and its late results are refused.
func TestReplicasShareWorkExactlyOnce(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	ctx := context.Background()
	seed := openStore(t, dsn)
	const n = 600
	for i := range n {
		_, err := seed.CreateMonitor(ctx, store.Monitor{TeamID: store.DefaultTeamID, Target: fmt.Sprintf("h%d.test", i),
			Schedule: "24h", AgentPool: monitor.CloudPool}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
	}
	live := &countingChecker{runs: map[int64]int{}}
	dead := &countingChecker{hang: true}
	var wg sync.WaitGroup
	runCtx, stop := context.WithCancel(ctx)
	start := func(name string, ch monitor.Checker) {
		st := openStore(t, dsn)
		sched := monitor.NewScheduler(monitor.SchedulerConfig{Owner: name, Workers: 16, Batch: 50,
			Lease: 2 * time.Second, Poll: 50 * time.Millisecond, ShutdownGrace: 100 * time.Millisecond}, st, ch, nil, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = sched.Run(runCtx)
		}()
	}
	// The dead replica starts first so it surely holds claims.
	start("dead", dead)
	waitFor(t, "the dead replica to hold claims", 5*time.Second, func() bool { return dead.started.Load() == 16 })
	start("a", live)
	start("b", live)
	waitFor(t, "every monitor checked", 30*time.Second, func() bool {
		live.mu.Lock()
		defer live.mu.Unlock()
		return len(live.runs) == n
	})
	// Give duplicate runs, if any, a moment to show up.
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	for id, runs := range live.runs {
		if runs != 1 {
			t.Errorf("monitor %d ran %d times in one slot", id, runs)
		}
	}
	page, _, err := seed.ListMonitors(ctx, store.ListFilter{TeamID: store.DefaultTeamID, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range page {
		if m.State.Status != assess.OK {
			t.Errorf("monitor %d not recorded: %q", m.ID, m.State.Status)
		}
		if !m.State.NextCheckAt.After(time.Now()) {
			t.Errorf("monitor %d already due again: %v", m.ID, m.State.NextCheckAt)
		}
	}
}
