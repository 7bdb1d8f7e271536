package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/agentlink"
)

// fakeServer speaks the server side of agentlink on a real WebSocket and
// checks credentials the way the real hub does. It records what it gets.
type fakeServer struct {
	t       *testing.T
	srv     *httptest.Server
	agentID string
	key     string

	// down answers 503 to every dial; dials counts every attempt.
	down  atomic.Bool
	dials atomic.Int32

	// afterWelcome runs in its own goroutine for connection n (from 1).
	afterWelcome func(ctx context.Context, c *websocket.Conn, n int)
	// ack decides whether to acknowledge a result (default: always).
	ack func(n int, r agentlink.Result) bool
	// silent makes connection n stop reading after welcome, so it answers
	// no pings.
	silent func(n int) bool

	mu       sync.Mutex
	conns    int
	hellos   []agentlink.Hello
	results  []agentlink.Result
	statuses []agentlink.Status
	resultCh chan agentlink.Result
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{t: t, agentID: "agt_test1", key: "sekrit-key-123", resultCh: make(chan agentlink.Result, 1000)}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

// newFakeTLSServer serves wss://; its certificate is trusted by RootCAs.
func newFakeTLSServer(t *testing.T) (*fakeServer, *x509.CertPool) {
	f := &fakeServer{t: t, agentID: "agt_test1", key: "sekrit-key-123", resultCh: make(chan agentlink.Result, 1000)}
	f.srv = httptest.NewTLSServer(f)
	t.Cleanup(f.srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return f, pool
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.dials.Add(1)
	if f.down.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != agentlink.Path {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get(agentlink.HeaderAgentID) != f.agentID ||
		r.Header.Get("Authorization") != "Bearer "+f.key ||
		r.Header.Get(agentlink.HeaderProtocol) != strconv.Itoa(agentlink.ProtocolVersion) {
		http.Error(w, "invalid agent credentials", http.StatusUnauthorized)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(agentlink.MaxMessageBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()

	_, data, err := c.Read(ctx)
	if err != nil {
		return
	}
	var env agentlink.Envelope
	var hello agentlink.Hello
	if json.Unmarshal(data, &env) != nil || env.Type != agentlink.TypeHello || json.Unmarshal(env.Body, &hello) != nil {
		f.t.Errorf("first message is not a hello: %s", data)
		return
	}
	f.mu.Lock()
	f.conns++
	n := f.conns
	f.hellos = append(f.hellos, hello)
	f.mu.Unlock()
	send(ctx, c, agentlink.TypeWelcome, agentlink.Welcome{ServerVersion: "fake", Heartbeat: 20 * time.Second})
	if f.afterWelcome != nil {
		go f.afterWelcome(ctx, c, n)
	}
	if f.silent != nil && f.silent(n) {
		// A hijacked request's context does not end when the peer goes,
		// so bound the silence rather than wait for it.
		select {
		case <-ctx.Done():
		case <-time.After(3 * time.Second):
		}
		return
	}
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		if json.Unmarshal(data, &env) != nil {
			f.t.Errorf("agent sent a malformed message: %s", data)
			return
		}
		switch env.Type {
		case agentlink.TypeResult:
			var res agentlink.Result
			if err := json.Unmarshal(env.Body, &res); err != nil {
				f.t.Errorf("malformed result: %v", err)
				return
			}
			f.mu.Lock()
			f.results = append(f.results, res)
			f.mu.Unlock()
			f.resultCh <- res
			if f.ack == nil || f.ack(n, res) {
				send(ctx, c, agentlink.TypeAck, agentlink.Ack{JobID: res.JobID})
			}
		case agentlink.TypeStatus:
			var st agentlink.Status
			_ = json.Unmarshal(env.Body, &st)
			f.mu.Lock()
			f.statuses = append(f.statuses, st)
			f.mu.Unlock()
		}
	}
}

func (f *fakeServer) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// sendJobs makes afterWelcome send jobs on connection 1 only.
func (f *fakeServer) sendJobsOnFirst(jobs ...agentlink.Job) {
	f.afterWelcome = func(ctx context.Context, c *websocket.Conn, n int) {
		if n != 1 {
			return
		}
		for _, j := range jobs {
			send(ctx, c, agentlink.TypeJob, j)
		}
	}
}

// awaitResults collects n results or fails the test.
func (f *fakeServer) awaitResults(n int, timeout time.Duration) []agentlink.Result {
	f.t.Helper()
	var got []agentlink.Result
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case r := <-f.resultCh:
			got = append(got, r)
		case <-deadline:
			f.t.Fatalf("got %d results, want %d: %+v", len(got), n, got)
		}
	}
	return got
}

func send(ctx context.Context, c *websocket.Conn, typ string, body any) {
	data, err := agentlink.Encode(typ, body)
	if err != nil {
		panic(err)
	}
	_ = c.Write(ctx, websocket.MessageText, data)
}

// testConfig is a Config for f with short timings.
func testConfig(t *testing.T, f *fakeServer) Config {
	cfg := Config{
		AgentID:        f.agentID,
		Key:            f.key,
		SpoolDir:       t.TempDir(),
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:        "test-1.2.3",
		Hostname:       "agent-host",
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		WelcomeTimeout: 2 * time.Second,
		MaxJobTimeout:  5 * time.Second,
	}
	if f.srv != nil {
		cfg.ServerURL = f.srv.URL
	}
	return cfg
}

// startAgent runs an agent until the test ends; the channel yields Run's
// result.
func startAgent(t *testing.T, cfg Config) (*Agent, context.CancelFunc, <-chan error) {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- a.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(15 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return a, cancel, done
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
