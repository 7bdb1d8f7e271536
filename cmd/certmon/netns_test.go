package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
)

// serveTLSTarget is the test binary's "TLS target" mode (see TestMain):
// it serves the certificate in CERTMON_TEST_TLS_CERT/KEY on
// CERTMON_TEST_TLS_TARGET until killed.
func serveTLSTarget() {
	cert, err := tls.LoadX509KeyPair(os.Getenv("CERTMON_TEST_TLS_CERT"), os.Getenv("CERTMON_TEST_TLS_KEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ln, err := tls.Listen("tcp", os.Getenv("CERTMON_TEST_TLS_TARGET"), &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_ = c.(*tls.Conn).Handshake()
		}()
	}
}

// netns is a network namespace joined to this one by a veth pair:
// hostIP here, nsIP inside.
type netns struct {
	name, hostIP, nsIP string
}

func run1(t *testing.T, args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newNetns makes a namespace or skips (fails under CERTMON_REQUIRE_NETNS=1)
// where namespaces cannot be made.
func newNetns(t *testing.T) netns {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n := netns{name: "cmtest-" + id, hostIP: fmt.Sprintf("10.231.%d.1", b[0]), nsIP: fmt.Sprintf("10.231.%d.2", b[0])}
	skip := func(err error) {
		msg := fmt.Sprintf("network namespaces unavailable (needs root and iproute2): %v", err)
		if os.Getenv("CERTMON_REQUIRE_NETNS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip(err)
	}
	if err := run1(t, "ip", "netns", "add", n.name); err != nil {
		skip(err)
	}
	t.Cleanup(func() { _ = run1(t, "ip", "netns", "del", n.name) })
	host, peer := "vh"+id, "vn"+id
	for _, args := range [][]string{
		{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", peer, "netns", n.name},
		{"ip", "addr", "add", n.hostIP + "/30", "dev", host},
		{"ip", "link", "set", host, "up"},
		{"ip", "netns", "exec", n.name, "ip", "addr", "add", n.nsIP + "/30", "dev", peer},
		{"ip", "netns", "exec", n.name, "ip", "link", "set", peer, "up"},
		{"ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up"},
	} {
		if err := run1(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = run1(t, "ip", "link", "del", host) })
	return n
}

// startIn starts the test binary inside the namespace with env.
func (n netns) startIn(t *testing.T, env []string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, out
}

// TestAgentReachesPrivateNetwork puts a TLS server inside a network
// namespace, on the namespace's own loopback, where the server cannot
// reach it, and a certmon agent beside it. The monitor on the agent's pool
// turns OK through the agent; the same target on the built-in (cloud)
// pool is UNREACHABLE.
func TestAgentReachesPrivateNetwork(t *testing.T) {
	ns := newNetns(t)
	now := time.Now()
	root := certtest.NewRootCA("Private CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1", "intranet.test"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	dir := t.TempDir()
	write(t, filepath.Join(dir, "leaf.pem"), leaf.PEM())
	write(t, filepath.Join(dir, "leaf.key"), leaf.KeyPEM())
	_, targetOut := ns.startIn(t, []string{"CERTMON_TEST_TLS_TARGET=127.0.0.1:8443",
		"CERTMON_TEST_TLS_CERT=" + filepath.Join(dir, "leaf.pem"), "CERTMON_TEST_TLS_KEY=" + filepath.Join(dir, "leaf.key")})
	waitOutput(t, targetOut, regexpReady)

	const token = "netns-test-token-0123456789"
	srv := startServerProcessOn(t, net.JoinHostPort(ns.hostIP, "0"), "CERTMON_DATA="+filepath.Join(dir, "data"),
		"CERTMON_BOOTSTRAP_TOKEN="+token, "CERTMON_CHECK_REVOCATION=off", "CERTMON_SCHEDULER_RETRY_DELAY=1s",
		"CERTMON_SCHEDULER_POLL=200ms")
	c := api{t: t, base: srv.base, token: token}
	var agent struct{ ID, Key string }
	if code := c.do("POST", "/api/v1/agents", map[string]any{"name": "dc1-agent", "pool": "dc1"}, &agent); code != 201 || agent.Key == "" {
		t.Fatalf("create agent: %d %+v", code, agent)
	}
	_, agentOut := ns.startIn(t, []string{"CERTMON_TEST_EXEC=1", "CERTMON_SERVER=" + srv.base, "CERTMON_AGENT_ID=" + agent.ID,
		"CERTMON_AGENT_KEY=" + agent.Key}, "agent", "--insecure", "--spool-dir", filepath.Join(dir, "spool"))

	body := map[string]any{"target": "127.0.0.1:8443", "ca_pem": string(root.PEM()), "schedule": "1h"}
	var viaAgent, viaCloud monitorView
	body["agent_pool"] = "dc1"
	c.do("POST", "/api/v1/monitors", body, &viaAgent)
	body["agent_pool"] = "cloud"
	c.do("POST", "/api/v1/monitors", body, &viaCloud)

	deadline := time.Now().Add(30 * time.Second)
	for {
		var a, b struct {
			monitorView
			Problems []struct{ Code string } `json:"problems"`
		}
		c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", viaAgent.ID), nil, &a)
		c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", viaCloud.ID), nil, &b)
		agentOK := a.Status != nil && *a.Status == "OK" && len(a.Chain) > 0 && a.Chain[0].SHA256 == sha256hex(leaf.DER)
		cloudDown := b.Status != nil && *b.Status == "CRITICAL" && len(b.Problems) == 1 && b.Problems[0].Code == "UNREACHABLE"
		if agentOK && cloudDown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("via agent: %v %v; via cloud: %v %v\nagent log:\n%s", deref(a.Status), a.Chain, deref(b.Status), b.Problems, agentOut)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var status struct {
		Connected bool   `json:"connected"`
		Version   string `json:"version"`
		JobsDone  int64  `json:"jobs_done"`
	}
	c.do("GET", "/api/v1/agents/"+agent.ID, nil, &status)
	if !status.Connected {
		t.Errorf("agent status %+v", status)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
