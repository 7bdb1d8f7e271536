package main

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store/storetest"
)

// handshakeLog is a TLS server that records when each SNI name was probed;
// each monitor sends a name of its own, so the log tells which monitor
// ran when, whichever replica ran it.
type handshakeLog struct {
	mu   sync.Mutex
	seen map[string][]time.Time
	addr string
}

func newHandshakeLog(t *testing.T) *handshakeLog {
	now := time.Now()
	leaf := certtest.SelfSigned([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(1, 0, 0)))
	cert := certtest.TLSCertificate(leaf)
	h := &handshakeLog{seen: map[string][]time.Time{}}
	h.addr = certtest.ServeTLS(t, &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		h.mu.Lock()
		h.seen[hello.ServerName] = append(h.seen[hello.ServerName], time.Now())
		h.mu.Unlock()
		return &cert, nil
	}}).Addr
	return h
}

func (h *handshakeLog) times(name string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seen[name])
}

// TestReplicasSurviveSIGKILL runs three `certmon server` processes on one
// PostgreSQL database with 300 monitors on a 30 s schedule, SIGKILLs one
// replica under load, and checks from the probed side that every monitor
// ran once in each of its slots: none missed (the killed replica's leases
// are taken over within the lease timeout) and none ran twice. The only
// allowed duplicate is a probe the killed process had in flight in its
// last second, whose result it never wrote.
func TestReplicasSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 80 s")
	}
	dsn := storetest.DSN(t, "postgres")
	targets := newHandshakeLog(t)
	env := []string{
		"CERTMON_DATABASE_URL=" + dsn,
		"CERTMON_BOOTSTRAP_TOKEN=replica-test-token-0123456789",
		"CERTMON_SCHEDULER_LEASE=5s",
		"CERTMON_SCHEDULER_POLL=200ms",
		"CERTMON_SCHEDULER_RETRY_DELAY=2s",
		"CERTMON_CHECK_REVOCATION=off",
	}
	replicas := []*serverProcess{startServerProcess(t, env...), startServerProcess(t, env...), startServerProcess(t, env...)}
	c := api{t: t, base: replicas[0].base, token: "replica-test-token-0123456789"}

	const n = 300
	ids := make([]int64, n)
	created := make([]time.Time, n)
	for i := range n {
		var m monitorView
		body := map[string]any{"target": targets.addr, "sni": fmt.Sprintf("m%d.test", i), "schedule": "30s"}
		if code := c.do("POST", "/api/v1/monitors", body, &m); code != 201 {
			t.Fatalf("create %d: %d", i, code)
		}
		ids[i], created[i] = m.ID, time.Now()
	}
	time.Sleep(35 * time.Second)
	killedAt := time.Now()
	replicas[1].kill9(t)
	time.Sleep(40 * time.Second)
	end := time.Now()
	replicas[0].stop(t)
	replicas[2].stop(t)

	sched, _ := monitor.ParseSchedule("30s")
	const lease = 5 * time.Second
	for i := range n {
		runs := targets.times(fmt.Sprintf("m%d.test", i))
		if len(runs) == 0 || runs[0].Sub(created[i]) > 5*time.Second {
			t.Errorf("monitor %d: first check not within 5 s of creation: %v", ids[i], runs)
			continue
		}
		// Slots after the first check, ending where the test stopped
		// looking (a lease before the end, so a taken-over slot counts).
		var slots []time.Time
		for s := sched.Next(runs[0], ids[i]); s.Before(end.Add(-lease - 2*time.Second)); s = sched.Next(s, ids[i]) {
			slots = append(slots, s)
		}
		for _, s := range slots {
			var in []time.Time
			for _, r := range runs[1:] {
				// A slot is claimed once due, never before.
				if !r.Before(s) && r.Before(s.Add(30*time.Second)) {
					in = append(in, r)
				}
			}
			switch {
			case len(in) == 0:
				t.Errorf("monitor %d missed its slot %v (runs %v)", ids[i], s.Format(time.TimeOnly), fmtTimes(runs))
			case len(in) == 2 && in[0].After(killedAt.Add(-time.Second)) && in[0].Before(killedAt):
				// In flight in the killed process: never recorded.
			case len(in) > 1:
				t.Errorf("monitor %d ran %d times in slot %v: %v", ids[i], len(in), s.Format(time.TimeOnly), fmtTimes(in))
			}
			if len(in) > 0 && in[len(in)-1].Sub(s) > lease+3*time.Second {
				t.Errorf("monitor %d: slot %v ran %v late", ids[i], s.Format(time.TimeOnly), in[len(in)-1].Sub(s))
			}
		}
	}
}

func fmtTimes(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format("15:04:05.000")
	}
	return out
}

// TestKill9DuringChecksKeepsStateConsistent SIGKILLs a SQLite server in the
// middle of a burst of first checks and restarts it: the database opens,
// every monitor ends up checked, and each has exactly one first-check
// event and one history row: no half-written check survives.
func TestKill9DuringChecksKeepsStateConsistent(t *testing.T) {
	dir := t.TempDir()
	targets := newHandshakeLog(t)
	env := []string{"CERTMON_DATA=" + dir, "CERTMON_BOOTSTRAP_TOKEN=kill9-test-token-0123456789",
		"CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_WORKERS=8"}
	p := startServerProcess(t, env...)
	c := api{t: t, base: p.base, token: "kill9-test-token-0123456789"}
	const n = 400
	for i := range n {
		if code := c.do("POST", "/api/v1/monitors", map[string]any{"target": targets.addr, "sni": fmt.Sprintf("k%d.test", i)}, nil); code != 201 {
			t.Fatalf("create: %d", code)
		}
	}
	// Kill while checks are being written.
	for {
		targets.mu.Lock()
		probed := len(targets.seen)
		targets.mu.Unlock()
		if probed > n/4 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.kill9(t)

	p = startServerProcess(t, env...)
	c.base = p.base
	deadline := time.Now().Add(30 * time.Second)
	for {
		var page struct {
			Monitors []monitorView `json:"monitors"`
		}
		c.do("GET", "/api/v1/monitors?limit=1000", nil, &page)
		pending := 0
		for _, m := range page.Monitors {
			if m.Status == nil {
				pending++
			}
		}
		if len(page.Monitors) != n {
			t.Fatalf("%d monitors after restart, want %d", len(page.Monitors), n)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d monitors never checked after restart", pending)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var events struct {
		Events []struct {
			MonitorID int64 `json:"monitor_id"`
		} `json:"events"`
		Next *string `json:"next_cursor"`
	}
	seen := map[int64]int{}
	path := "/api/v1/events?kind=first_check&limit=1000"
	for {
		c.do("GET", path, nil, &events)
		for _, e := range events.Events {
			seen[e.MonitorID]++
		}
		if events.Next == nil {
			break
		}
		path = "/api/v1/events?kind=first_check&limit=1000&cursor=" + *events.Next
	}
	if len(seen) != n {
		t.Errorf("%d monitors have a first-check event, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("monitor %d has %d first-check events", id, k)
		}
		var h struct {
			History []any `json:"history"`
		}
		c.do("GET", fmt.Sprintf("/api/v1/monitors/%d/history", id), nil, &h)
		if len(h.History) != 1 {
			t.Errorf("monitor %d has %d history rows", id, len(h.History))
		}
	}
	p.stop(t)
}
