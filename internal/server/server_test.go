package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmon/certmon/internal/auth"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
)

// The suite runs every test on SQLite in t.TempDir() and, when
// CERTMON_TEST_POSTGRES holds a DSN, on PostgreSQL in a fresh schema:
//
//	CERTMON_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test ./internal/server/

// t0 is the fixed instant the server's clock shows.
var t0 = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

// env is a server over a real store, with an admin token.
type env struct {
	t     testing.TB
	store *store.Store
	srv   *Server
	token string
	waker *fakeWaker
	reg   *prometheus.Registry
	logs  *syncWriter
}

// fakeWaker counts Wake calls.
type fakeWaker struct{ n atomic.Int64 }

func (w *fakeWaker) Wake() { w.n.Add(1) }

// forEachEngine runs fn on a fresh server of each store engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	for _, engine := range []store.Engine{store.SQLite, store.Postgres} {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			fn(t, newEnv(t, testDSN(t, engine)))
		})
	}
}

// testDSN returns a database of its own on engine (storetest).
func testDSN(tb testing.TB, engine store.Engine) string {
	return storetest.DSN(tb, string(engine))
}

func newEnv(tb testing.TB, dsn string) *env {
	tb.Helper()
	ctx := context.Background()
	logs := &syncWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	st, err := store.Open(ctx, dsn, log)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	secret, hash := auth.GenerateToken()
	if _, err := st.CreateToken(ctx, store.DefaultTeamID, "test", "admin", hash); err != nil {
		tb.Fatalf("create token: %v", err)
	}
	reg := prometheus.NewRegistry()
	NewMetrics(reg, st.CountByStatus)
	w := &fakeWaker{}
	srv, err := New(Config{
		Store:           st,
		Waker:           w,
		DefaultSchedule: "4h",
		WarnDays:        30,
		CritDays:        7,
		MaxBodyBytes:    4096,
		Logger:          log,
		Registry:        reg,
		Version:         "test",
		Now:             func() time.Time { return t0 },
	})
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	return &env{t: tb, store: st, srv: srv, token: secret, waker: w, reg: reg, logs: logs}
}

// syncWriter serialises writes from parallel handlers.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.(*bytes.Buffer).String()
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// response is a recorded answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// do sends a request with the env's token; body may be nil, a string
// (sent as is) or a value (sent as JSON).
func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	return e.doAuth(method, path, body, "Bearer "+e.token)
}

func (e *env) doAuth(method, path string, body any, authorization string) response {
	e.t.Helper()
	var raw string
	switch b := body.(type) {
	case nil:
	case string:
		raw = b
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		raw = string(buf)
	}
	ct := ""
	if body != nil {
		ct = "application/json"
	}
	return e.send(method, path, raw, ct, authorization)
}

// doRaw sends body with a given content type.
func (e *env) doRaw(method, path, body, contentType string) response {
	e.t.Helper()
	return e.send(method, path, body, contentType, "Bearer "+e.token)
}

func (e *env) send(method, path, body, contentType, authorization string) response {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	return response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}

// decode unmarshals the body into v, failing on a wrong status.
func (r response) decode(t testing.TB, status int, v any) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if v == nil {
		return
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// wantError asserts an error in the {"error":{code,message}} shape and
// nothing else, with the status, code and a message containing substr.
func (r response) wantError(t testing.TB, status int, code, substr string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &top); err != nil {
		t.Fatalf("error body %s: %v", r.Body, err)
	}
	if len(top) != 1 || top["error"] == nil {
		t.Fatalf("error body %s: want exactly one key \"error\"", r.Body)
	}
	var inner map[string]any
	if err := json.Unmarshal(top["error"], &inner); err != nil {
		t.Fatalf("error body %s: %v", r.Body, err)
	}
	if len(inner) != 2 {
		t.Errorf("error body %s: want exactly code and message", r.Body)
	}
	gotCode, _ := inner["code"].(string)
	msg, _ := inner["message"].(string)
	if gotCode != code {
		t.Errorf("code %q, want %q (message %q)", gotCode, code, msg)
	}
	if !strings.Contains(msg, substr) {
		t.Errorf("message %q does not contain %q", msg, substr)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	st := &store.Store{}
	for name, cfg := range map[string]Config{
		"no store":         {},
		"bad schedule":     {Store: st, DefaultSchedule: "often"},
		"crit above warn":  {Store: st, WarnDays: 7, CritDays: 30},
		"negative warning": {Store: st, WarnDays: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
