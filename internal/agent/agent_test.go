package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/certtest"
)

// tlsTarget serves a leaf+intermediate chain on 127.0.0.1 and counts the
// connections it accepts.
type tlsTarget struct {
	addr    string
	chain   [][]byte
	accepts *atomic.Int32
}

func newTLSTarget(t *testing.T, delay time.Duration) tlsTarget {
	t.Helper()
	root := certtest.NewRootCA("Agent Test Root")
	inter := root.Intermediate("Agent Test Intermediate")
	leaf := inter.Leaf([]string{"svc.test", "127.0.0.1"})
	h := certtest.TLSHandler(&tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf, &inter.Cert)}})
	var accepts atomic.Int32
	srv := certtest.Serve(t, func(c net.Conn) {
		accepts.Add(1)
		time.Sleep(delay)
		h(c)
	})
	return tlsTarget{addr: srv.Addr, chain: certtest.Chain(leaf, &inter.Cert), accepts: &accepts}
}

func job(id, target string) agentlink.Job {
	return agentlink.Job{JobID: id, Target: target, Timeout: 3 * time.Second, Deadline: time.Now().Add(time.Minute)}
}

func spoolFiles(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

func TestAgentProbesAndReportsChain(t *testing.T) {
	f, roots := newFakeTLSServer(t)
	tgt := newTLSTarget(t, 0)
	_, port, _ := net.SplitHostPort(tgt.addr)
	f.sendJobsOnFirst(
		agentlink.Job{JobID: "j1", Target: tgt.addr, SNI: "svc.test", Timeout: 3 * time.Second},
		agentlink.Job{JobID: "j2", Target: "127.0.0.1:" + port, Protocol: "https"},
	)
	cfg := testConfig(t, f)
	cfg.RootCAs = roots
	cfg.StatusInterval = 50 * time.Millisecond
	a, _, _ := startAgent(t, cfg)

	results := f.awaitResults(2, 10*time.Second)
	slices.SortFunc(results, func(a, b agentlink.Result) int { return strings.Compare(a.JobID, b.JobID) })
	for i, r := range results {
		if r.Refused != "" || r.Observation == nil {
			t.Fatalf("result %d: %+v", i, r)
		}
		obs := r.Observation
		if obs.Err != nil {
			t.Errorf("%s: probe error %v", r.JobID, obs.Err)
		}
		if len(obs.Chain) != len(tgt.chain) || !bytes.Equal(obs.Chain[0], tgt.chain[0]) || !bytes.Equal(obs.Chain[1], tgt.chain[1]) {
			t.Errorf("%s: chain of %d certificates is not the served chain", r.JobID, len(obs.Chain))
		}
		if obs.Version == 0 {
			t.Errorf("%s: no negotiated version", r.JobID)
		}
	}
	if results[0].Observation.SNI != "svc.test" || results[1].Observation.SNI != "" {
		t.Errorf("SNI = %q, %q; want svc.test and none for an IP literal", results[0].Observation.SNI, results[1].Observation.SNI)
	}
	if results[1].Observation.Target.Protocol != "https" {
		t.Errorf("protocol = %q, want https", results[1].Observation.Target.Protocol)
	}

	eventually(t, "acked results leave the spool", func() bool { return spoolFiles(t, cfg.SpoolDir) == 0 })
	eventually(t, "a status report", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.statuses) > 0 && f.statuses[len(f.statuses)-1].JobsDone == 2
	})
	f.mu.Lock()
	hello := f.hellos[0]
	f.mu.Unlock()
	if hello.AgentID != f.agentID || hello.Version != "test-1.2.3" || hello.Hostname != "agent-host" {
		t.Errorf("hello = %+v", hello)
	}
	if st := a.Stats(); !st.Connected || st.JobsDone != 2 || st.Errors != 0 || st.Spooled != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestAgentResendsUnackedResultsAfterReconnect(t *testing.T) {
	f := newFakeServer(t)
	tgt := newTLSTarget(t, 0)
	ids := []string{"r1", "r2", "r3"}
	f.ack = func(n int, _ agentlink.Result) bool { return n > 1 }
	f.afterWelcome = func(ctx context.Context, c *websocket.Conn, n int) {
		if n != 1 {
			return
		}
		for _, id := range ids {
			send(ctx, c, agentlink.TypeJob, job(id, tgt.addr))
		}
		// Drop the connection once every result arrived, unacknowledged.
		for ctx.Err() == nil {
			f.mu.Lock()
			got := len(f.results)
			f.mu.Unlock()
			if got >= len(ids) {
				_ = c.CloseNow()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cfg := testConfig(t, f)
	startAgent(t, cfg)

	f.awaitResults(2*len(ids), 10*time.Second)
	eventually(t, "acked results leave the spool", func() bool { return spoolFiles(t, cfg.SpoolDir) == 0 })
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]int{}
	for _, r := range f.results {
		seen[r.JobID]++
	}
	for _, id := range ids {
		if seen[id] < 2 {
			t.Errorf("job %s sent %d times, want at least twice (before and after reconnect)", id, seen[id])
		}
	}
	if f.conns < 2 {
		t.Errorf("connections = %d, want a reconnect", f.conns)
	}
	// Resent from the spool, not probed again.
	if n := tgt.accepts.Load(); n != int32(len(ids)) {
		t.Errorf("target accepted %d connections, want %d", n, len(ids))
	}
}

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestAllowNetworks(t *testing.T) {
	resolver := fakeResolver{
		"inside.test":   {netip.MustParseAddr("127.0.0.1")},
		"straddle.test": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.9.9.9")},
	}
	tests := []struct {
		name    string
		allow   string
		host    string
		refused bool
		resolve bool // a resolve failure, not a refusal
	}{
		{"ip outside", "10.0.0.0/8", "127.0.0.1", true, false},
		{"ip inside", "127.0.0.0/8", "127.0.0.1", false, false},
		{"no list allows all", "", "127.0.0.1", false, false},
		{"name inside dials the checked address", "127.0.0.0/8", "inside.test", false, false},
		{"one address outside refuses the name", "127.0.0.0/8", "straddle.test", true, false},
		{"unresolvable name", "127.0.0.0/8", "nowhere.test", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t)
			tgt := newTLSTarget(t, 0)
			_, port, _ := net.SplitHostPort(tgt.addr)
			f.sendJobsOnFirst(job("a1", net.JoinHostPort(tc.host, port)))
			cfg := testConfig(t, f)
			cfg.Resolver = resolver
			if tc.allow != "" {
				cfg.AllowNetworks = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
			}
			startAgent(t, cfg)
			r := f.awaitResults(1, 10*time.Second)[0]
			switch {
			case tc.refused:
				if r.Refused == "" || r.Observation != nil {
					t.Fatalf("want a refusal, got %+v", r)
				}
				if !strings.Contains(r.Refused, "outside the allowed networks") {
					t.Errorf("refusal %q does not say why", r.Refused)
				}
				if n := tgt.accepts.Load(); n != 0 {
					t.Errorf("target accepted %d connections; a refused job must not connect", n)
				}
			case tc.resolve:
				if r.Observation == nil || r.Observation.Err == nil || r.Observation.Err.Stage != "resolve" {
					t.Fatalf("want a resolve failure, got %+v", r)
				}
			default:
				if r.Refused != "" || r.Observation == nil || r.Observation.Err != nil || len(r.Observation.Chain) != 2 {
					t.Fatalf("want an observation with the chain, got %+v", r)
				}
				if r.Observation.Address != "127.0.0.1:"+port {
					t.Errorf("dialed %s, want 127.0.0.1:%s", r.Observation.Address, port)
				}
				if tc.host == "inside.test" && r.Observation.SNI != "inside.test" {
					t.Errorf("SNI = %q, want the name", r.Observation.SNI)
				}
			}
		})
	}
}

func TestAgentStopsWhenRevoked(t *testing.T) {
	f := newFakeServer(t)
	f.afterWelcome = func(ctx context.Context, c *websocket.Conn, _ int) {
		send(ctx, c, agentlink.TypeRevoked, agentlink.Revoked{Reason: "key revoked by admin"})
	}
	start := time.Now()
	_, _, done := startAgent(t, testConfig(t, f))
	select {
	case err := <-done:
		if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), "key revoked by admin") {
			t.Fatalf("Run = %v, want ErrRevoked with the reason", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after a revocation")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to stop", d)
	}
	time.Sleep(200 * time.Millisecond)
	if n := f.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1 (no retries after a revocation)", n)
	}
}

func TestAgentStopsOnUnauthorized(t *testing.T) {
	f := newFakeServer(t)
	cfg := testConfig(t, f)
	cfg.Key = "wrong-key"
	_, _, done := startAgent(t, cfg)
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "401") {
			t.Fatalf("Run = %v, want ErrUnauthorized naming the 401", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after a 401")
	}
	time.Sleep(200 * time.Millisecond)
	if n := f.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1 (no retry storm)", n)
	}
}

func TestAgentReconnectsWhenServerComesBack(t *testing.T) {
	// First nothing listens on the port, then the server answers 503,
	// then it is up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	f := &fakeServer{t: t, agentID: "agt_test1", key: "sekrit-key-123", resultCh: make(chan agentlink.Result, 10)}
	f.down.Store(true)
	cfg := testConfig(t, f)
	cfg.ServerURL = "http://" + addr
	start := time.Now()
	startAgent(t, cfg)

	time.Sleep(300 * time.Millisecond)
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	f.srv = httptest.NewUnstartedServer(f)
	f.srv.Listener.Close()
	f.srv.Listener = ln
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	eventually(t, "retries against the 503", func() bool { return f.dials.Load() >= 2 })
	f.down.Store(false)
	eventually(t, "a connection", func() bool { return f.connections() == 1 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("reconnect took %s with a 100ms backoff ceiling", d)
	}
}

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	a := &Agent{cfg: Config{MinBackoff: time.Second, MaxBackoff: time.Minute}}
	for attempt := range 100 {
		ceiling := min(time.Minute, time.Second<<min(attempt, 30))
		if d := a.backoff(attempt); d < 0 || d > ceiling {
			t.Fatalf("backoff(%d) = %s, want within [0, %s]", attempt, d, ceiling)
		}
	}
}

func TestAgentSurvivesMalformedAndOversizedMessages(t *testing.T) {
	f := newFakeServer(t)
	tgt := newTLSTarget(t, 0)
	f.afterWelcome = func(ctx context.Context, c *websocket.Conn, n int) {
		if n == 1 {
			for _, m := range []string{
				`{{{ not json`,
				`{"v":1}`,
				`{"type":"job","v":1,"body":"not an object"}`,
				`{"type":"job","v":1,"body":{}}`,
				`{"type":"job","v":1,"body":{"job_id":"` + strings.Repeat("x", 300) + `"}}`,
				`{"type":"ack","v":1,"body":[1,2]}`,
				`{"type":"ack","v":1,"body":{"job_id":"never-sent"}}`,
				`{"type":"from-the-future","v":2,"body":{"x":1}}`,
				`{"type":"job","v":1,"body":{"job_id":"bad-target","target":"exa mple"}}`,
				`{"type":"job","v":1,"body":{"job_id":"bad-proto","target":"x.test","protocol":"gopher"}}`,
			} {
				_ = c.Write(ctx, websocket.MessageText, []byte(m))
			}
			_ = c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2})
			send(ctx, c, agentlink.TypeJob, job("good-1", tgt.addr))
			// Wait for that result, then exceed the message limit.
			for ctx.Err() == nil {
				f.mu.Lock()
				got := len(f.results)
				f.mu.Unlock()
				if got >= 3 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			_ = c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("a"), agentlink.MaxMessageBytes+10))
			return
		}
		send(ctx, c, agentlink.TypeJob, job("good-2", tgt.addr))
	}
	cfg := testConfig(t, f)
	_, _, done := startAgent(t, cfg)

	got := map[string]agentlink.Result{}
	for _, r := range f.awaitResults(4, 10*time.Second) {
		got[r.JobID] = r
	}
	for _, id := range []string{"bad-target", "bad-proto"} {
		if !strings.HasPrefix(got[id].Refused, "cannot parse target") {
			t.Errorf("%s: want a parse refusal, got %+v", id, got[id])
		}
	}
	for _, id := range []string{"good-1", "good-2"} {
		if r := got[id]; r.Observation == nil || r.Observation.Err != nil {
			t.Errorf("%s: want an observation, got %+v", id, r)
		}
	}
	if f.connections() < 2 {
		t.Errorf("an oversized message should end the connection and the agent reconnect")
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

func TestAgentReconnectsWhenServerGoesSilent(t *testing.T) {
	f := newFakeServer(t)
	f.silent = func(n int) bool { return n == 1 }
	cfg := testConfig(t, f)
	cfg.IdleTimeout = 300 * time.Millisecond
	startAgent(t, cfg)
	eventually(t, "a reconnect after silence", func() bool { return f.connections() >= 2 })
	// A responsive server answers the agent's pings: no more reconnects.
	time.Sleep(4 * cfg.IdleTimeout)
	if n := f.connections(); n != 2 {
		t.Errorf("connections = %d, want 2: pongs should keep a quiet connection alive", n)
	}
}

func TestAgentShutdownFinishesRunningJobs(t *testing.T) {
	f := newFakeServer(t)
	tgt := newTLSTarget(t, 400*time.Millisecond)
	f.ack = func(int, agentlink.Result) bool { return false }
	f.sendJobsOnFirst(job("slow", tgt.addr))
	cfg := testConfig(t, f)
	a, cancel, done := startAgent(t, cfg)
	eventually(t, "the job to start", func() bool { return tgt.accepts.Load() == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	r := f.awaitResults(1, time.Second)[0]
	if r.JobID != "slow" || r.Observation == nil || r.Observation.Err != nil {
		t.Errorf("result = %+v, want the finished probe", r)
	}
	if st := a.Stats(); st.Spooled != 1 || st.Running != 0 {
		t.Errorf("stats = %+v, want the unacknowledged result spooled", st)
	}
}

// TestAgentFetchesRevocationWhenAsked: a job with FetchRevocation makes the
// agent ask the certificate's OCSP responder (here on loopback, as an
// internal responder would be) and report the answer; without it the
// agent fetches nothing.
func TestAgentFetchesRevocationWhenAsked(t *testing.T) {
	pki := certtest.NewPKI(t)
	pki.Clock = time.Now
	now := time.Now()
	root := certtest.NewRootCA("Internal CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)),
		certtest.WithOCSPServer(pki.OCSPURL(root)))
	pki.Revoke(leaf, 1)
	target := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf, &root.Cert)}}).Addr

	f, roots := newFakeTLSServer(t)
	f.sendJobsOnFirst(
		agentlink.Job{JobID: "with", Target: target, FetchRevocation: true},
		agentlink.Job{JobID: "without", Target: target},
	)
	cfg := testConfig(t, f)
	cfg.RootCAs = roots
	startAgent(t, cfg)
	results := f.awaitResults(2, 10*time.Second)
	slices.SortFunc(results, func(a, b agentlink.Result) int { return strings.Compare(a.JobID, b.JobID) }) // "with" < "without"
	with, without := results[0].Observation, results[1].Observation
	if with == nil || with.Revocation == nil || with.Revocation.State != "revoked" {
		t.Fatalf("revocation with FetchRevocation: %+v", with)
	}
	if without == nil || without.Revocation != nil {
		t.Errorf("revocation fetched though not asked: %+v", without.Revocation)
	}
	if hits := pki.Hits("ocsp"); hits != 1 {
		t.Errorf("OCSP responder asked %d times, want 1", hits)
	}
}
