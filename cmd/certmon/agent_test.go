package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/agentlink"
)

// clearAgentEnv keeps the runner's environment out of the agent tests.
func clearAgentEnv(t *testing.T) {
	t.Helper()
	for _, k := range agentKeys {
		t.Setenv(k.env, "")
	}
	t.Setenv("CERTMON_AGENT_ENV_FILE", "")
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentCommandRefusesBadSettings(t *testing.T) {
	clearAgentEnv(t)
	creds := []string{"--agent-id", "agt_1", "--agent-key", "k", "--spool-dir", t.TempDir()}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "missing server URL (--server or CERTMON_SERVER), agent ID (--agent-id or CERTMON_AGENT_ID), agent key (--agent-key or CERTMON_AGENT_KEY)"},
		{"no key", []string{"--server", "https://c.example", "--agent-id", "agt_1"}, "missing agent key"},
		{"plain http to a remote host", append([]string{"--server", "http://certmon.example.com"}, creds...), "plain http:// to a non-loopback host"},
		{"not a URL", append([]string{"--server", "certmon.example.com"}, creds...), "want https://host[:port]"},
		{"bad CIDR", append([]string{"--server", "https://c.example", "--allow-networks", "10.0.0.0/8,10.0.0.0/33"}, creds...), `--allow-networks: "10.0.0.0/33" is not a CIDR`},
		{"unreadable CA file", append([]string{"--server", "https://c.example", "--ca-file", "/nonexistent/ca.pem"}, creds...), "--ca-file"},
		{"CA file without PEM", append([]string{"--server", "https://c.example", "--ca-file", writeFile(t, "ca.pem", "junk")}, creds...), "no PEM certificates"},
		{"bad concurrency", append([]string{"--server", "https://c.example", "--concurrency", "0"}, creds...), "--concurrency"},
		{"missing env file", append([]string{"--env-file", "/nonexistent/agent.env"}, creds...), "--env-file"},
		{"typo in env file", []string{"--env-file", writeFile(t, "a.env", "CERTMON_SERVR=https://c.example\n")}, "unknown setting CERTMON_SERVR"},
		{"bad log level", append([]string{"--server", "https://c.example", "--log-level", "loud"}, creds...), "--log-level"},
		{"argument", []string{"extra"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"agent"}, tc.args...), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit = %d, want 2; stderr: %s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestAgentSettingsPrecedence(t *testing.T) {
	envFile := writeFile(t, "agent.env", `# agent settings
export CERTMON_SERVER=https://from-file.example
CERTMON_AGENT_ID="agt_file"
CERTMON_AGENT_KEY='key-from-file'
CERTMON_AGENT_CONCURRENCY=5
CERTMON_AGENT_ALLOW_NETWORKS=10.0.0.0/8, 192.168.1.7
OTHER_TOOL_SETTING=ignored
`)
	spool := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		server, id string
	}{
		{"file only", nil, nil, "https://from-file.example", "agt_file"},
		{"environment beats file", nil, map[string]string{"CERTMON_SERVER": "https://from-env.example"}, "https://from-env.example", "agt_file"},
		{"flag beats environment", []string{"--server", "https://from-flag.example"}, map[string]string{"CERTMON_SERVER": "https://from-env.example", "CERTMON_AGENT_ID": "agt_env"}, "https://from-flag.example", "agt_env"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newAgentCommand(io.Discard, io.Discard)
			if err := cmd.Flags().Parse(append([]string{"--env-file", envFile, "--spool-dir", spool}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			s, err := resolveAgentSettings(cmd.Flags(), func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			c := s.cfg
			if c.ServerURL != tc.server || c.AgentID != tc.id || c.Key != "key-from-file" {
				t.Errorf("server, id, key = %s, %s, %s", c.ServerURL, c.AgentID, c.Key)
			}
			if c.Concurrency != 5 || len(c.AllowNetworks) != 2 || c.AllowNetworks[1].String() != "192.168.1.7/32" {
				t.Errorf("concurrency %d, networks %v", c.Concurrency, c.AllowNetworks)
			}
			if c.SpoolDir != spool {
				t.Errorf("spool dir = %s", c.SpoolDir)
			}
		})
	}
}

func TestAgentCommandExitsOneOnRejectedCredentials(t *testing.T) {
	clearAgentEnv(t)
	var dials atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dials.Add(1)
		if r.URL.Path != agentlink.Path || r.Header.Get("Authorization") != "Bearer the-key" {
			t.Errorf("dial to %s with Authorization %q", r.URL.Path, r.Header.Get("Authorization"))
		}
		http.Error(w, "unknown agent", http.StatusUnauthorized)
	}))
	defer srv.Close()
	t.Setenv("CERTMON_AGENT_KEY", "the-key")
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"agent", "--server", srv.URL, "--agent-id", "agt_1", "--spool-dir", t.TempDir()}, io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "rejected the agent credentials") {
		t.Fatalf("exit = %d, stderr: %s", code, stderr.String())
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestAgentCommandStopsCleanlyWithMetrics(t *testing.T) {
	clearAgentEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "starting up", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &syncBuffer{}
	codec := make(chan int, 1)
	go func() {
		codec <- run(ctx, []string{"agent", "--server", srv.URL, "--agent-id", "agt_1", "--agent-key", "k",
			"--spool-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:0"}, io.Discard, stderr)
	}()
	addr := waitOutput(t, stderr, regexp.MustCompile(`serving metrics" addr=(\S+)`))
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "certmon_agent_connected 0") {
		t.Errorf("/metrics = %d %.200s", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz = %d while disconnected, want 503", code)
	}
	cancel()
	select {
	case code := <-codec:
		if code != 0 {
			t.Errorf("exit = %d after cancel, want 0; stderr: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
}
