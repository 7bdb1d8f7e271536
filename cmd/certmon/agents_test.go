package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/store/storetest"
)

// agentProcess starts `certmon agent` (the test binary) against base.
func agentProcess(t *testing.T, base, id, key, spool string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "agent", "--spool-dir", spool)
	cmd.Env = append(os.Environ(), "CERTMON_TEST_EXEC=1", "CERTMON_SERVER="+base, "CERTMON_AGENT_ID="+id, "CERTMON_AGENT_KEY="+key)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

type agentView struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	Connected bool   `json:"connected"`
	JobsDone  int64  `json:"jobs_done"`
}

// TestKilledAgentsJobsGoToThePoolsOtherAgent runs two agents of one pool,
// SIGKILLs one, and shows every monitor of the pool checked again, OK,
// through the survivor.
func TestKilledAgentsJobsGoToThePoolsOtherAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 40 s")
	}
	now := time.Now()
	root := certtest.NewRootCA("Pool CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	target := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}).Addr
	dir := t.TempDir()
	const token = "agents-test-token-0123456789"
	srv := startServerProcess(t, "CERTMON_DATA="+filepath.Join(dir, "data"), "CERTMON_BOOTSTRAP_TOKEN="+token,
		"CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_RETRY_DELAY=1s", "CERTMON_SCHEDULER_POLL=200ms")
	c := api{t: t, base: srv.base, token: token}
	var a, b agentView
	c.do("POST", "/api/v1/agents", map[string]any{"name": "a", "pool": "dc1"}, &a)
	c.do("POST", "/api/v1/agents", map[string]any{"name": "b", "pool": "dc1"}, &b)
	procA := agentProcess(t, srv.base, a.ID, a.Key, filepath.Join(dir, "spool-a"))
	agentProcess(t, srv.base, b.ID, b.Key, filepath.Join(dir, "spool-b"))

	const n = 20
	ids := make([]int64, n)
	for i := range n {
		var m monitorView
		c.do("POST", "/api/v1/monitors", map[string]any{"target": target, "schedule": "30s", "agent_pool": "dc1",
			"ca_pem": string(root.PEM())}, &m)
		ids[i] = m.ID
	}
	type checked struct {
		Status      *string `json:"status"`
		LastCheckAt *string `json:"last_check_at"`
	}
	// allOKAfter waits until every monitor has an OK check stamped after
	// since (the API shows whole seconds, so strictly after its second).
	allOKAfter := func(since time.Time, limit time.Duration) {
		t.Helper()
		if !since.IsZero() {
			since = since.Truncate(time.Second).Add(time.Second)
		}
		deadline := time.Now().Add(limit)
		for {
			pending := 0
			for _, id := range ids {
				var m checked
				c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", id), nil, &m)
				last, _ := time.Parse(time.RFC3339, deref(m.LastCheckAt))
				if m.Status == nil || *m.Status != "OK" || last.Before(since) {
					pending++
				}
			}
			if pending == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d monitors not checked OK since %v", pending, n, since.Format(time.TimeOnly))
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	allOKAfter(time.Time{}, 15*time.Second)

	if err := procA.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procA.Wait()
	killed := time.Now()
	// Every monitor's next 30 s slot comes after the kill; with a dead,
	// all of them can only have been checked through agent b.
	allOKAfter(killed, 45*time.Second)
}

// TestServerKilledWhileAgentWorks SIGKILLs the server while an agent is in
// the middle of a burst of slow probes. The agent spools what it could not
// deliver and resends it after the server is back: every monitor is
// recorded exactly once, and no target is probed twice (the results
// arrived, nothing was re-run).
func TestServerKilledWhileAgentWorks(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15 s")
	}
	now := time.Now()
	root := certtest.NewRootCA("Spool CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1", "*.spool.test"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	cert := certtest.TLSCertificate(leaf)
	var mu sync.Mutex
	probed := map[string]int{}
	// Each handshake takes 2 s, so the burst is in flight when the
	// server dies.
	target := certtest.ServeTLS(t, &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		time.Sleep(2 * time.Second)
		mu.Lock()
		probed[h.ServerName]++
		mu.Unlock()
		return &cert, nil
	}}).Addr
	dir := t.TempDir()
	const token = "spool-test-token-0123456789"
	env := []string{"CERTMON_DATA=" + filepath.Join(dir, "data"), "CERTMON_BOOTSTRAP_TOKEN=" + token,
		"CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_POLL=200ms"}
	srv := startServerProcess(t, env...)
	c := api{t: t, base: srv.base, token: token}
	var a agentView
	c.do("POST", "/api/v1/agents", map[string]any{"name": "a", "pool": "dc1"}, &a)
	_, port, _ := net.SplitHostPort(srv.base[len("http://"):])
	agentProcess(t, srv.base, a.ID, a.Key, filepath.Join(dir, "spool"))

	const n = 30
	ids := make([]int64, n)
	for i := range n {
		var m monitorView
		c.do("POST", "/api/v1/monitors", map[string]any{"target": target, "sni": fmt.Sprintf("s%d.spool.test", i),
			"schedule": "1h", "agent_pool": "dc1", "ca_pem": string(root.PEM())}, &m)
		ids[i] = m.ID
	}
	time.Sleep(1 * time.Second) // jobs are out, probes under way
	srv.kill9(t)
	// Same data and port: the agent reconnects to the restarted server.
	srv = startServerProcessOn(t, net.JoinHostPort("127.0.0.1", port), env...)
	c.base = srv.base

	deadline := time.Now().Add(40 * time.Second)
	for _, id := range ids {
		for {
			var h struct {
				History []struct {
					Status string `json:"status"`
				} `json:"history"`
			}
			c.do("GET", fmt.Sprintf("/api/v1/monitors/%d/history", id), nil, &h)
			if len(h.History) == 1 && h.History[0].Status == "OK" {
				break
			}
			if len(h.History) > 1 {
				t.Fatalf("monitor %d recorded %d times", id, len(h.History))
			}
			if time.Now().After(deadline) {
				t.Fatalf("monitor %d not recorded OK after the restart: %+v", id, h.History)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for name, k := range probed {
		if k != 1 {
			t.Errorf("%s probed %d times", name, k)
		}
	}
	if len(probed) != n {
		t.Errorf("%d targets probed, want %d", len(probed), n)
	}
}

// TestAgentOnAnyReplica connects an agent to one of two replicas sharing a
// PostgreSQL database and creates its pool's monitors through the other:
// the replica the agent is connected to claims and dispatches them.
func TestAgentOnAnyReplica(t *testing.T) {
	dsn := storetest.DSN(t, "postgres")
	now := time.Now()
	root := certtest.NewRootCA("Replica CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	target := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}).Addr
	const token = "any-replica-token-0123456789"
	env := []string{"CERTMON_DATABASE_URL=" + dsn, "CERTMON_BOOTSTRAP_TOKEN=" + token,
		"CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_POLL=200ms"}
	one, two := startServerProcess(t, env...), startServerProcess(t, env...)
	c := api{t: t, base: two.base, token: token}
	var a agentView
	c.do("POST", "/api/v1/agents", map[string]any{"name": "a", "pool": "dc1"}, &a)
	agentProcess(t, one.base, a.ID, a.Key, filepath.Join(t.TempDir(), "spool"))
	var m monitorView
	c.do("POST", "/api/v1/monitors", map[string]any{"target": target, "agent_pool": "dc1", "ca_pem": string(root.PEM())}, &m)
	deadline := time.Now().Add(20 * time.Second)
	for m.Status == nil || *m.Status != "OK" {
		if time.Now().After(deadline) {
			t.Fatalf("monitor made on replica two not checked through the agent on replica one: %v", deref(m.Status))
		}
		time.Sleep(200 * time.Millisecond)
		c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", m.ID), nil, &m)
	}
}
