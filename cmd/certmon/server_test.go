package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
)

// TestMain lets the test binary stand in for the certmon binary: with
// CERTMON_TEST_EXEC=1 it runs main, so tests can start real server
// processes and kill them.
func TestMain(m *testing.M) {
	if os.Getenv("CERTMON_TEST_EXEC") == "1" {
		main()
	}
	if os.Getenv("CERTMON_TEST_TLS_TARGET") != "" {
		serveTLSTarget()
	}
	os.Exit(m.Run())
}

// syncBuffer collects output written while tests read it.
type syncBuffer = certtest.SyncBuffer

var (
	listenRe    = regexp.MustCompile(`listening on (https?://\S+)`)
	regexpReady = regexp.MustCompile(`(ready)`)
	tokenRe     = regexp.MustCompile(`admin API token \(shown once, store it now\): (\S+)`)
)

func waitOutput(t *testing.T, out interface{ String() string }, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s in output:\n%s", re, out.String())
	return ""
}

// api is a small client for the server under test.
type api struct {
	t     *testing.T
	base  string
	token string
}

func (a api) do(method, path string, body any, out any) int {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

type monitorView struct {
	ID     int64   `json:"id"`
	Status *string `json:"status"`
	Chain  []struct {
		SHA256 string `json:"sha256"`
	} `json:"chain"`
}

// TestServerFirstStartAndRestart starts `certmon server` as a newcomer
// would (a data directory, nothing else), uses the printed admin token,
// sees a new monitor checked within seconds, stops it gracefully and
// starts it again on the same data.
func TestServerFirstStartAndRestart(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"server", "--listen", "127.0.0.1:0", "--data", dir, "--ca-file", f.caFile}, out, io.Discard)
	}()
	base := waitOutput(t, out, listenRe)
	token := waitOutput(t, out, tokenRe)
	c := api{t: t, base: base, token: token}

	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	var m monitorView
	if code := c.do("POST", "/api/v1/monitors", map[string]any{"target": f.good}, &m); code != 201 {
		t.Fatalf("create: %d", code)
	}
	created := time.Now()
	for m.Status == nil {
		if time.Since(created) > 5*time.Second {
			t.Fatal("new monitor not checked within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
		c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", m.ID), nil, &m)
	}
	if *m.Status != "OK" || len(m.Chain) == 0 || m.Chain[0].SHA256 != f.goodLeafHash {
		t.Fatalf("monitor after first check: %+v", m)
	}
	var doc map[string]any
	if code := c.do("GET", "/api/v1/openapi.json", nil, &doc); code != 200 || doc["paths"] == nil {
		t.Errorf("openapi.json: %d", code)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("graceful shutdown exit %d\n%s", code, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not stop on cancel")
	}
	if _, err := os.Stat(filepath.Join(dir, "certmon.db")); err != nil {
		t.Fatal(err)
	}

	// Second start: the data is kept and no new admin token is minted.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	out2 := &syncBuffer{}
	done2 := make(chan int, 1)
	go func() {
		done2 <- run(ctx2, []string{"server", "--listen", "127.0.0.1:0", "--data", dir}, out2, io.Discard)
	}()
	c.base = waitOutput(t, out2, listenRe)
	if strings.Contains(out2.String(), "admin API token") {
		t.Error("a second admin token was printed on restart")
	}
	var again monitorView
	if code := c.do("GET", fmt.Sprintf("/api/v1/monitors/%d", m.ID), nil, &again); code != 200 || again.Status == nil {
		t.Errorf("monitor lost across restart: %d %+v", code, again)
	}
	cancel2()
	<-done2
}

func TestServerBadStart(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"unreachable database", []string{"--database-url", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"}, nil, 1, "opening the store"},
		{"bad config file", []string{"--config", "/nonexistent.yml"}, nil, 2, "/nonexistent.yml"},
		{"bad env", nil, map[string]string{"CERTMON_SCHEDULER_WORKERS": "lots"}, 2, "CERTMON_SCHEDULER_WORKERS"},
		{"bad listen", []string{"--listen", "nonsense"}, nil, 2, "listen"},
		{"bad flag", []string{"--no-such-flag"}, nil, 2, "unknown flag"},
		{"tls cert without key", []string{"--tls-cert", "/x.pem"}, nil, 2, "tls_cert and tls_key"},
		{"short bootstrap token", nil, map[string]string{"CERTMON_BOOTSTRAP_TOKEN": "short"}, 1, "at least 16"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := append([]string{"server", "--listen", "127.0.0.1:0", "--data", t.TempDir()}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			code := run(ctx, args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr %q lacks %q", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}

// serverProcess is `certmon server` in a child process.
type serverProcess struct {
	cmd  *exec.Cmd
	base string
	out  *syncBuffer
}

func startServerProcess(t *testing.T, env ...string) *serverProcess {
	t.Helper()
	return startServerProcessOn(t, "127.0.0.1:0", env...)
}

func startServerProcessOn(t *testing.T, listen string, env ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "server", "--listen", listen)
	cmd.Env = append(os.Environ(), append([]string{"CERTMON_TEST_EXEC=1"}, env...)...)
	out := &syncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
		}
	}()
	p := &serverProcess{cmd: cmd, out: out}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	p.base = waitOutput(t, out, listenRe)
	return p
}

func (p *serverProcess) kill9(t *testing.T) {
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
}

func (p *serverProcess) stop(t *testing.T) {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("SIGTERM exit: %v\n%s", err, p.out)
	}
}

// TestServerHTTPS serves the API over TLS with --tls-cert/--tls-key; a key
// that does not match the certificate is a start-up error (exit 2).
func TestServerHTTPS(t *testing.T) {
	now := time.Now()
	root := certtest.NewRootCA("Server CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := root.Leaf([]string{"127.0.0.1", "localhost"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	other := root.Leaf([]string{"127.0.0.1"})
	dir := t.TempDir()
	write(t, filepath.Join(dir, "cert.pem"), leaf.PEM())
	write(t, filepath.Join(dir, "key.pem"), leaf.KeyPEM())
	write(t, filepath.Join(dir, "other.key"), other.KeyPEM())

	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"server", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
			"--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "key.pem")}, out, io.Discard)
	}()
	base := waitOutput(t, out, listenRe)
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("listening on %s, want https", base)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certtest.Pool(root)}}}
	resp, err := client.Get(strings.Replace(base, "localhost", "127.0.0.1", 1) + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz over HTTPS: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp.TLS == nil || !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, leaf.DER) {
		t.Error("not served with --tls-cert")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}

	var stderr syncBuffer
	code := run(context.Background(), []string{"server", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data2"),
		"--tls-cert", filepath.Join(dir, "cert.pem"), "--tls-key", filepath.Join(dir, "other.key")}, io.Discard, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "private key does not match") {
		t.Errorf("mismatched key: exit %d, %q", code, stderr.String())
	}
}
