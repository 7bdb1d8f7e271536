package agentlink

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
)

// The suite runs a real hub behind httptest over a real store (SQLite,
// and PostgreSQL when CERTMON_TEST_POSTGRES is set) and plays the agent
// with a real coder/websocket client.

// clock is a settable clock; zero means the real time.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

type env struct {
	t     *testing.T
	st    *store.Store
	hub   *Hub
	srv   *httptest.Server
	url   string
	clock *clock
	logs  *syncBuffer
	chain [][]byte // a valid example.com chain
}

// syncBuffer collects logs written while tests read them.
type syncBuffer = certtest.SyncBuffer

func forEachEngine(t *testing.T, fn func(t *testing.T, engine string)) {
	for _, e := range storetest.Engines {
		t.Run(e, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

func newEnv(t *testing.T, engine string, mut func(*HubConfig)) *env {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.Open(context.Background(), storetest.DSN(t, engine), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	now := time.Now()
	root := certtest.NewRootCA("Agent Test Root")
	inter := root.Intermediate("Agent Test Intermediate")
	leaf := inter.Leaf([]string{"example.com"}, certtest.WithValidity(now.Add(-24*time.Hour), now.Add(365*24*time.Hour)))

	clk := &clock{}
	cfg := HubConfig{
		Assess:          monitor.NewLocalChecker(probe.New(probe.Options{}), assess.Config{Roots: certtest.Pool(root), CacheSize: -1}, assess.Policy{WarnDays: 30, CritDays: 7}).Assess,
		Version:         "test",
		Replica:         "r1",
		Now:             clk.Now,
		HelloTimeout:    time.Second,
		PingInterval:    200 * time.Millisecond,
		PongTimeout:     time.Second,
		WriteTimeout:    2 * time.Second,
		RecheckInterval: 100 * time.Millisecond,
		ProbeTimeout:    5 * time.Second,
	}
	if mut != nil {
		mut(&cfg)
	}
	hub, err := NewHub(cfg, st, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hub)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = hub.Run(ctx); close(ran) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		srv.Close()
		if t.Failed() {
			t.Logf("hub log:\n%s", logs.String())
		}
	})
	return &env{t: t, st: st, hub: hub, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + Path,
		clock: clk, logs: logs, chain: certtest.Chain(leaf, &inter.Cert)}
}

// agent creates an agent in pool (team 1) and returns its ID and key.
func (e *env) agent(name, pool string, mut func(a *store.Agent)) (string, string) {
	e.t.Helper()
	key, hash := NewKey()
	a := store.Agent{ID: NewAgentID(), TeamID: store.DefaultTeamID, Name: name, Pool: pool,
		KeyHash: hash, KeyExpires: e.clock.Now().Add(MaxKeyTTL)}
	if mut != nil {
		mut(&a)
	}
	if _, err := e.st.CreateAgent(context.Background(), a); err != nil {
		e.t.Fatal(err)
	}
	return a.ID, key
}

// testAgent is the agent side of one connection.
type testAgent struct {
	t    *testing.T
	id   string
	ws   *websocket.Conn
	msgs chan Envelope
	// closed is closed when the read loop ends; err says why.
	closed chan struct{}
	err    error
}

func (e *env) dial(id, key string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if id != "" {
		h.Set(HeaderAgentID, id)
	}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	h.Set(HeaderProtocol, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, e.url, &websocket.DialOptions{HTTPHeader: h})
}

// connect dials, says hello and waits for the welcome. With read false no
// read loop runs (so no pongs are sent).
func (e *env) connect(id, key string) (*testAgent, Welcome) {
	e.t.Helper()
	ws, _, err := e.dial(id, key)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(MaxMessageBytes)
	a := &testAgent{t: e.t, id: id, ws: ws, msgs: make(chan Envelope, 100), closed: make(chan struct{})}
	e.t.Cleanup(func() { ws.CloseNow() })
	a.send(TypeHello, Hello{AgentID: id, Version: "1.0.0-test", Hostname: "probe-1", QueueDepth: 0})
	go a.readLoop()
	var w Welcome
	a.expect(TypeWelcome, &w)
	return a, w
}

func (a *testAgent) readLoop() {
	defer close(a.closed)
	for {
		_, data, err := a.ws.Read(context.Background())
		if err != nil {
			a.err = err
			return
		}
		var env Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			a.err = err
			return
		}
		a.msgs <- env
	}
}

func (a *testAgent) send(typ string, body any) {
	a.t.Helper()
	data, err := Encode(typ, body)
	if err != nil {
		a.t.Fatal(err)
	}
	a.sendRaw(data)
}

func (a *testAgent) sendRaw(data []byte) {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.ws.Write(ctx, websocket.MessageText, data); err != nil {
		a.t.Fatalf("agent write: %v", err)
	}
}

// expect waits for a message of type typ and decodes its body into v.
func (a *testAgent) expect(typ string, v any) {
	a.t.Helper()
	select {
	case env := <-a.msgs:
		if env.Type != typ {
			a.t.Fatalf("got %s %s, want %s", env.Type, env.Body, typ)
		}
		if v != nil {
			if err := json.Unmarshal(env.Body, v); err != nil {
				a.t.Fatal(err)
			}
		}
	case <-a.closed:
		a.t.Fatalf("connection closed waiting for %s: %v", typ, a.err)
	case <-time.After(5 * time.Second):
		a.t.Fatalf("no %s message", typ)
	}
}

// waitClosed asserts the hub closes the connection within d.
func (a *testAgent) waitClosed(d time.Duration) error {
	a.t.Helper()
	select {
	case <-a.closed:
		return a.err
	case <-time.After(d):
		a.t.Fatalf("connection still open after %s", d)
		return nil
	}
}

// serve answers every job with obs (or refusal) until the connection ends.
func (a *testAgent) serve(chain [][]byte, jobs *atomic.Int64) {
	for {
		select {
		case env := <-a.msgs:
			if env.Type != TypeJob {
				continue
			}
			var j Job
			_ = json.Unmarshal(env.Body, &j)
			jobs.Add(1)
			data, _ := Encode(TypeResult, Result{JobID: j.JobID, Observation: observation(chain)})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.ws.Write(ctx, websocket.MessageText, data)
			cancel()
		case <-a.closed:
			return
		}
	}
}

func observation(chain [][]byte) *probe.Observation {
	return &probe.Observation{Address: "10.1.2.3:443", SNI: "example.com", StartedAt: time.Now(), Chain: chain,
		Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Attempts: 1}
}

var monitorIDs atomic.Int64

func (e *env) claim(pool string, lease time.Duration) store.Claim {
	now := e.clock.Now()
	return store.Claim{
		Monitor: store.Monitor{ID: monitorIDs.Add(1), TeamID: store.DefaultTeamID, Target: "example.com:443", AgentPool: pool},
		Slot:    now.Truncate(time.Second),
		Owner:   "r1",
		Lease:   now.Add(lease),
	}
}

// check runs hub.Check in the background.
func (e *env) check(c store.Claim) <-chan monitor.Outcome {
	out := make(chan monitor.Outcome, 1)
	go func() { out <- e.hub.Check(context.Background(), c) }()
	return out
}

func wantUnknown(t *testing.T, o monitor.Outcome, substr string) {
	t.Helper()
	if o.Result == nil || o.Result.Status != assess.Unknown || o.Result.Error == nil ||
		!strings.Contains(*o.Result.Error, substr) || len(o.ChainDER) != 0 || len(o.Result.Chain) != 0 {
		t.Fatalf("outcome %+v (error %v), want UNKNOWN without chain containing %q", o.Result, errText(o), substr)
	}
}

func errText(o monitor.Outcome) string {
	if o.Result == nil || o.Result.Error == nil {
		return "<nil>"
	}
	return *o.Result.Error
}

func waitOutcome(t *testing.T, ch <-chan monitor.Outcome) monitor.Outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("Check did not return")
		return monitor.Outcome{}
	}
}

// eventually polls cond for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	certtest.Eventually(t, d, what, cond)
}

func TestAuthFailures(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		id, key := e.agent("ok", "dc1", nil)
		expID, expKey := e.agent("expired", "dc1", func(a *store.Agent) { a.KeyExpires = e.clock.Now().Add(-time.Minute) })
		revID, revKey := e.agent("revoked", "dc1", nil)
		if err := e.st.RevokeAgent(context.Background(), store.DefaultTeamID, revID, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]struct{ id, key string }{
			"wrong key":      {id, "cmk_wrong"},
			"other's key":    {expID, key},
			"unknown id":     {NewAgentID(), key},
			"malformed id":   {"agt_../../x", key},
			"no key":         {id, ""},
			"no id":          {"", key},
			"expired key":    {expID, expKey},
			"revoked agent":  {revID, revKey},
			"key as id only": {key, key},
		} {
			ws, resp, err := e.dial(c.id, c.key)
			if err == nil {
				ws.CloseNow()
				t.Errorf("%s: upgraded", name)
				continue
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: %v %+v, want 401", name, err, resp)
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), `"code":"unauthorized"`) || resp.Header.Get("Upgrade") != "" {
				t.Errorf("%s: body %s header %v", name, body, resp.Header)
			}
		}
		// Not a WebSocket request at all, with good credentials: no upgrade.
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+Path, nil)
		req.Header.Set(HeaderAgentID, id)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 400 {
			t.Errorf("plain GET: %d", resp.StatusCode)
		}
		if p := e.hub.PoolsFunc(); len(p) != 0 {
			t.Errorf("pools %v after failed connections", p)
		}
	})
}

func TestHelloWelcomeAndStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		id, key := e.agent("a", "dc1", nil)
		a, w := e.connect(id, key)
		if w.ServerVersion != "test" || w.Heartbeat != 200*time.Millisecond || w.KeyExpiresAt.IsZero() {
			t.Errorf("welcome %+v", w)
		}
		if p := e.hub.PoolsFunc(); !slices.Equal(p, []string{"dc1"}) {
			t.Errorf("pools %v", p)
		}
		a.send(TypeStatus, Status{QueueDepth: 4, JobsDone: 12, Errors: 1})
		eventually(t, 3*time.Second, "status stored", func() bool {
			ag, err := e.st.GetAgent(context.Background(), store.DefaultTeamID, id)
			st := ag.Status
			return err == nil && st.Connected && st.QueueDepth == 4 && st.JobsDone == 12 && st.Errors == 1 &&
				st.Version == "1.0.0-test" && st.Hostname == "probe-1" && st.Replica == "r1" &&
				strings.HasPrefix(st.Address, "127.0.0.1:") && !st.LastSeen.IsZero()
		})
		a.ws.Close(websocket.StatusNormalClosure, "bye")
		eventually(t, 3*time.Second, "disconnect stored", func() bool {
			ag, err := e.st.GetAgent(context.Background(), store.DefaultTeamID, id)
			return err == nil && !ag.Status.Connected
		})
		if p := e.hub.PoolsFunc(); len(p) != 0 {
			t.Errorf("pools %v after disconnect", p)
		}
	})
}

func TestHelloRequired(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, key := e.agent("a", "dc1", nil)
	for name, first := range map[string]func(ws *websocket.Conn) error{
		"silence": func(*websocket.Conn) error { return nil },
		"job first": func(ws *websocket.Conn) error {
			data, _ := Encode(TypeStatus, Status{})
			return ws.Write(context.Background(), websocket.MessageText, data)
		},
		"another agent's hello": func(ws *websocket.Conn) error {
			data, _ := Encode(TypeHello, Hello{AgentID: NewAgentID()})
			return ws.Write(context.Background(), websocket.MessageText, data)
		},
	} {
		ws, _, err := e.dial(id, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := first(ws); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err = ws.Read(ctx)
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: read %v, want the hub to close", name, err)
		}
		ws.CloseNow()
	}
	if p := e.hub.PoolsFunc(); len(p) != 0 {
		t.Errorf("pools %v", p)
	}
}

func TestDispatchResult(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		id, key := e.agent("a", "dc1", nil)
		a, _ := e.connect(id, key)
		c := e.claim("dc1", 2*time.Minute)
		out := e.check(c)
		var j Job
		a.expect(TypeJob, &j)
		if j.JobID != fmt.Sprintf("%d-%d", c.Monitor.ID, c.Slot.UnixMilli()) || j.Target != "example.com:443" ||
			!j.Deadline.Equal(c.Lease) || j.Timeout != 5*time.Second {
			t.Errorf("job %+v", j)
		}
		a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(e.chain)})
		var ack Ack
		a.expect(TypeAck, &ack)
		if ack.JobID != j.JobID || ack.Error != "" {
			t.Errorf("ack %+v", ack)
		}
		o := waitOutcome(t, out)
		if o.Result.Status != assess.OK || len(o.ChainDER) != 2 || len(o.Result.Chain) != 2 || o.Result.Target != "example.com:443" {
			t.Fatalf("outcome %+v error %s", o.Result, errText(o))
		}
		// The same result again (a resend after a lost ack): acked, not used.
		a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(e.chain)})
		a.expect(TypeAck, &ack)
		if ack.Error == "" {
			t.Errorf("resent result acked without error")
		}
	})
}

func TestRefusedAndNoAgent(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	wantUnknown(t, e.hub.Check(context.Background(), e.claim("dc1", time.Minute)), "no agent of pool dc1 connected")

	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	// Another team's pool of the same name is not served by this agent.
	c := e.claim("dc1", time.Minute)
	c.Monitor.TeamID = 2
	wantUnknown(t, e.hub.Check(context.Background(), c), "no agent of pool dc1 connected")

	out := e.check(e.claim("dc1", time.Minute))
	var j Job
	a.expect(TypeJob, &j)
	a.send(TypeResult, Result{JobID: j.JobID, Refused: "10.9.9.9 is outside --allow-networks"})
	a.expect(TypeAck, nil)
	wantUnknown(t, waitOutcome(t, out), "outside --allow-networks")

	// An observation carrying more certificates than a probe keeps.
	out = e.check(e.claim("dc1", time.Minute))
	a.expect(TypeJob, &j)
	a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(make([][]byte, probe.MaxChainCerts+1))})
	a.expect(TypeAck, nil)
	wantUnknown(t, waitOutcome(t, out), "certificates")

	// Garbage DER is assessed, not a crash.
	out = e.check(e.claim("dc1", time.Minute))
	a.expect(TypeJob, &j)
	a.send(TypeResult, Result{JobID: j.JobID, Observation: observation([][]byte{{0x30, 0x03, 0x01}})})
	a.expect(TypeAck, nil)
	if o := waitOutcome(t, out); o.Result == nil || o.Result.Status == assess.OK {
		t.Errorf("garbage chain: %+v", o.Result)
	}
}

func TestSpreadAcrossPool(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	var counts [2]atomic.Int64
	for i := range counts {
		id, key := e.agent(fmt.Sprint("a", i), "dc1", nil)
		a, _ := e.connect(id, key)
		go a.serve(e.chain, &counts[i])
	}
	other, okey := e.agent("b", "dc2", nil)
	var otherJobs atomic.Int64
	b, _ := e.connect(other, okey)
	go b.serve(e.chain, &otherJobs)

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			o := e.hub.Check(context.Background(), e.claim("dc1", time.Minute))
			if o.Result.Status != assess.OK {
				t.Errorf("outcome %+v %s", o.Result, errText(o))
			}
		})
	}
	wg.Wait()
	if counts[0].Load() < 5 || counts[1].Load() < 5 || counts[0].Load()+counts[1].Load() != 20 || otherJobs.Load() != 0 {
		t.Errorf("jobs per agent %d, %d (other pool %d)", counts[0].Load(), counts[1].Load(), otherJobs.Load())
	}
	if p := e.hub.PoolsFunc(); !slices.Equal(p, []string{"dc1", "dc2"}) {
		t.Errorf("pools %v", p)
	}
}

func TestDisconnectMidJob(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	out := e.check(e.claim("dc1", time.Minute))
	a.expect(TypeJob, nil)
	a.ws.CloseNow()
	wantUnknown(t, waitOutcome(t, out), "agent disconnected")
	if p := e.hub.PoolsFunc(); len(p) != 0 {
		t.Errorf("pools %v", p)
	}
}

func TestLateResultExpired(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	out := e.check(e.claim("dc1", 500*time.Millisecond))
	var j Job
	a.expect(TypeJob, &j)
	wantUnknown(t, waitOutcome(t, out), "deadline")
	a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(e.chain)})
	var ack Ack
	a.expect(TypeAck, &ack)
	if ack.JobID != j.JobID || ack.Error != "job expired" {
		t.Errorf("ack %+v", ack)
	}
}

func TestRejectedInputKeepsConnection(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *HubConfig) { c.MaxProtocolErrors = 3 })
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	// A result for a job never given: rejected, the connection stays.
	a.send(TypeResult, Result{JobID: "999-1", Observation: observation(e.chain)})
	var ack Ack
	a.expect(TypeAck, &ack)
	if ack.JobID != "999-1" || ack.Error != "unknown job" {
		t.Errorf("ack %+v", ack)
	}
	// Unknown types are ignored, however many.
	for range 10 {
		a.send("telemetry", map[string]int{"x": 1})
	}
	// Malformed messages up to the limit are survived; a malformed result
	// that names its job is acked so the agent drops it.
	a.sendRaw([]byte(`{not json`))
	a.sendRaw([]byte(`{"type":"result","v":1,"body":{"job_id":"7-7","observation":"nope"}}`))
	a.expect(TypeAck, &ack)
	if ack.JobID != "7-7" || ack.Error != "malformed result" {
		t.Errorf("ack %+v", ack)
	}
	a.sendRaw([]byte(`{"type":"status","v":1,"body":[1,2]}`))

	// Still dispatched to.
	out := e.check(e.claim("dc1", time.Minute))
	var j Job
	a.expect(TypeJob, &j)
	a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(e.chain)})
	a.expect(TypeAck, &ack)
	if o := waitOutcome(t, out); o.Result.Status != assess.OK {
		t.Fatalf("outcome %+v %s", o.Result, errText(o))
	}

	// One error more than allowed closes it.
	a.sendRaw([]byte(`]]`))
	err := a.waitClosed(3 * time.Second)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("close %v, want policy violation", err)
	}
}

func TestOversizedMessage(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	id2, key2 := e.agent("b", "dc1", nil)
	b, _ := e.connect(id2, key2)
	var bJobs atomic.Int64
	go b.serve(e.chain, &bJobs)

	big := `{"type":"status","v":1,"body":{"pad":"` + strings.Repeat("x", MaxMessageBytes) + `"}}`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = a.ws.Write(ctx, websocket.MessageText, []byte(big)) // may fail once the hub closes
	cancel()
	err := a.waitClosed(5 * time.Second)
	if err == nil {
		t.Errorf("closed without error")
	}
	eventually(t, 3*time.Second, "size limit logged", func() bool {
		return strings.Contains(e.logs.String(), "message over the size limit")
	})
	// The hub and the other agent carry on.
	eventually(t, 3*time.Second, "oversized agent gone", func() bool {
		e.hub.mu.Lock()
		defer e.hub.mu.Unlock()
		return e.hub.conns[id] == nil
	})
	if o := e.hub.Check(context.Background(), e.claim("dc1", time.Minute)); o.Result.Status != assess.OK {
		t.Fatalf("outcome after oversized message %+v %s", o.Result, errText(o))
	}
	if bJobs.Load() != 1 {
		t.Errorf("other agent ran %d jobs", bJobs.Load())
	}
}

func TestRevokeWhileConnected(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		e := newEnv(t, engine, nil)
		id, key := e.agent("a", "dc1", nil)
		a, _ := e.connect(id, key)
		out := e.check(e.claim("dc1", time.Minute))
		a.expect(TypeJob, nil)
		// Revoked in the store (as by another replica): the re-check
		// disconnects it within seconds.
		start := time.Now()
		if err := e.st.RevokeAgent(context.Background(), store.DefaultTeamID, id, e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		var r Revoked
		a.expect(TypeRevoked, &r)
		if r.Reason != "credentials revoked" {
			t.Errorf("reason %q", r.Reason)
		}
		a.waitClosed(3 * time.Second)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("disconnected after %s", d)
		}
		wantUnknown(t, waitOutcome(t, out), "agent disconnected")
		if _, _, err := e.dial(id, key); err == nil {
			t.Error("revoked agent reconnected")
		}
	})
}

func TestDisconnectMethodAndDelete(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *HubConfig) { c.RecheckInterval = time.Hour })
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	e.hub.Disconnect(id)
	a.expect(TypeRevoked, nil)
	a.waitClosed(3 * time.Second)
	if p := e.hub.PoolsFunc(); len(p) != 0 {
		t.Errorf("pools %v", p)
	}

	// A deleted agent is dropped by the periodic re-check.
	e2 := newEnv(t, "sqlite", nil)
	id, key = e2.agent("a", "dc1", nil)
	b, _ := e2.connect(id, key)
	if err := e2.st.DeleteAgent(context.Background(), store.DefaultTeamID, id); err != nil {
		t.Fatal(err)
	}
	var r Revoked
	b.expect(TypeRevoked, &r)
	if r.Reason != "agent deleted" {
		t.Errorf("reason %q", r.Reason)
	}
	b.waitClosed(3 * time.Second)
}

func TestRotationOverlap(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, oldKey := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, oldKey)
	newKey, newHash := NewKey()
	now := e.clock.Now()
	if _, err := e.st.RotateAgentKey(context.Background(), store.DefaultTeamID, id, newHash,
		now.Add(MaxKeyTTL), now.Add(DefaultRotationOverlap)); err != nil {
		t.Fatal(err)
	}
	// During the overlap both keys work; the running connection stays.
	time.Sleep(300 * time.Millisecond) // a few re-checks
	select {
	case <-a.closed:
		t.Fatalf("connection with the previous key dropped during the overlap: %v", a.err)
	default:
	}
	b, w := e.connect(id, oldKey) // replaces a
	if !w.KeyExpiresAt.Equal(now.Add(DefaultRotationOverlap).Truncate(time.Millisecond)) {
		t.Errorf("welcome on the old key: expires %s", w.KeyExpiresAt)
	}
	a.waitClosed(3 * time.Second)

	// After the overlap the old key's connection is closed and refused.
	e.clock.Advance(DefaultRotationOverlap + time.Minute)
	var r Revoked
	b.expect(TypeRevoked, &r)
	if r.Reason != "key expired" {
		t.Errorf("reason %q", r.Reason)
	}
	b.waitClosed(3 * time.Second)
	if _, resp, err := e.dial(id, oldKey); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old key after the overlap: %v", err)
	}
	c, w := e.connect(id, newKey)
	if !w.KeyExpiresAt.Equal(now.Add(MaxKeyTTL).Truncate(time.Millisecond)) {
		t.Errorf("welcome on the new key: expires %s", w.KeyExpiresAt)
	}
	c.ws.Close(websocket.StatusNormalClosure, "")
}

func TestMissingPongsClose(t *testing.T) {
	e := newEnv(t, "sqlite", func(c *HubConfig) {
		c.PingInterval = 100 * time.Millisecond
		c.PongTimeout = 500 * time.Millisecond
	})
	id, key := e.agent("a", "dc1", nil)
	ws, _, err := e.dial(id, key)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	data, _ := Encode(TypeHello, Hello{AgentID: id})
	if err := ws.Write(context.Background(), websocket.MessageText, data); err != nil {
		t.Fatal(err)
	}
	// Nobody reads on the agent side, so no pong is ever sent.
	eventually(t, 3*time.Second, "agent registered", func() bool { return len(e.hub.PoolsFunc()) == 1 })
	eventually(t, 3*time.Second, "silent agent dropped", func() bool { return len(e.hub.PoolsFunc()) == 0 })
	if !strings.Contains(e.logs.String(), "no pong") {
		t.Error("no pong not logged")
	}
}

func TestNewHubValidates(t *testing.T) {
	st := &store.Store{}
	if _, err := NewHub(HubConfig{}, st, nil); err == nil {
		t.Error("no Assess accepted")
	}
}

func TestCredentials(t *testing.T) {
	id := NewAgentID()
	if !ValidAgentID(id) || len(id) != 20 || ValidAgentID("agt_xyz") || ValidAgentID("agt_0123456789abcdeg") {
		t.Errorf("id %q", id)
	}
	k1, h1 := NewKey()
	k2, _ := NewKey()
	if !strings.HasPrefix(k1, KeyPrefix) || len(k1) != 4+43 || k1 == k2 || !bytes.Equal(h1, HashKey(k1)) {
		t.Errorf("key %q", k1)
	}
	for days, want := range map[int]time.Duration{0: MaxKeyTTL, 1: 24 * time.Hour, 180: MaxKeyTTL, -1: 0, 181: 0} {
		got, err := KeyTTL(days)
		if got != want || (want == 0) != (err != nil) {
			t.Errorf("KeyTTL(%d) = %s, %v", days, got, err)
		}
	}
}

// TestSpooledResultAdoptedAfterClaimLost: a result for a job this process
// never sent (its claim died with another server process) is recorded if
// the job still names the monitor's unrecorded slot, exactly once; a
// resend, or a result for another pool's monitor, is refused.
func TestSpooledResultAdoptedAfterClaimLost(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			e := newEnv(t, engine, nil)
			ctx := context.Background()
			slot := e.clock.Now().Add(-time.Minute).Truncate(time.Millisecond)
			m, err := e.st.CreateMonitor(ctx, store.Monitor{TeamID: store.DefaultTeamID, Target: "127.0.0.1:443",
				Schedule: "1h", AgentPool: "dc1"}, slot)
			if err != nil {
				t.Fatal(err)
			}
			other, err := e.st.CreateMonitor(ctx, store.Monitor{TeamID: store.DefaultTeamID, Target: "127.0.0.1:443",
				Schedule: "1h", AgentPool: "dc2"}, slot)
			if err != nil {
				t.Fatal(err)
			}
			id, key := e.agent("a", "dc1", nil)
			a, _ := e.connect(id, key)
			job := fmt.Sprintf("%d-%d", m.ID, slot.UnixMilli())
			var ack Ack
			a.send(TypeResult, Result{JobID: job, Observation: observation(e.chain)})
			a.expect(TypeAck, &ack)
			if ack.JobID != job || ack.Error != "" {
				t.Fatalf("adopted result not accepted: %+v", ack)
			}
			got, err := e.st.GetMonitor(ctx, store.DefaultTeamID, m.ID)
			if err != nil || got.State.Status == "" || !got.State.NextCheckAt.After(slot) {
				t.Fatalf("not recorded: %+v %v", got.State, err)
			}
			// The same result again: the slot is recorded, nothing changes.
			a.send(TypeResult, Result{JobID: job, Observation: observation(e.chain)})
			a.expect(TypeAck, &ack)
			if ack.Error == "" {
				t.Error("a resent result was recorded twice")
			}
			h, _ := e.st.History(ctx, store.DefaultTeamID, m.ID, 10)
			if len(h) != 1 {
				t.Errorf("%d history rows, want 1", len(h))
			}
			// Another pool's monitor: not this agent's to answer.
			otherJob := fmt.Sprintf("%d-%d", other.ID, slot.UnixMilli())
			a.send(TypeResult, Result{JobID: otherJob, Observation: observation(e.chain)})
			a.expect(TypeAck, &ack)
			if ack.Error != "job is not for this agent's pool" {
				t.Errorf("other pool's result: %+v", ack)
			}
		})
	}
}

// TestNewerAgentVersion plays an agent one protocol version ahead: its
// messages carry v=2, fields and message types this server does not know.
// The server ignores what it does not know and the check works.
func TestNewerAgentVersion(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	id, key := e.agent("a", "dc1", nil)
	a, _ := e.connect(id, key)
	a.sendRaw([]byte(`{"type":"capabilities","v":2,"body":{"revocation_on_agent":true}}`))
	c := e.claim("dc1", 2*time.Minute)
	out := e.check(c)
	var j Job
	a.expect(TypeJob, &j)
	res, err := json.Marshal(Result{JobID: j.JobID, Observation: observation(e.chain)})
	if err != nil {
		t.Fatal(err)
	}
	// A v2 result with an extra field.
	body := append(res[:len(res)-1], []byte(`,"probe_host":"agent-7"}`)...)
	a.sendRaw([]byte(`{"type":"result","v":2,"body":` + string(body) + `}`))
	var ack Ack
	a.expect(TypeAck, &ack)
	if ack.Error != "" {
		t.Fatalf("v2 result refused: %+v", ack)
	}
	if o := waitOutcome(t, out); o.Result.Status != assess.OK {
		t.Fatalf("outcome %+v %s", o.Result, errText(o))
	}
}

// TestUnansweredJobGoesToAnotherAgent: an agent that lets a monitor's job
// lapse is passed over for that monitor's next job while another agent of
// the pool is there.
func TestUnansweredJobGoesToAnotherAgent(t *testing.T) {
	e := newEnv(t, "sqlite", nil)
	idA, keyA := e.agent("a", "dc1", nil)
	a, _ := e.connect(idA, keyA)
	first := e.claim("dc1", 500*time.Millisecond)
	out := e.check(first)
	var j Job
	a.expect(TypeJob, &j) // a takes it and says nothing
	wantUnknown(t, waitOutcome(t, out), "deadline")
	var ack Ack
	a.send(TypeResult, Result{JobID: j.JobID, Observation: observation(e.chain)})
	a.expect(TypeAck, &ack) // late: expired, and a is idle again

	idB, keyB := e.agent("b", "dc1", nil)
	b, _ := e.connect(idB, keyB)
	// Both idle now; the monitor's retry must not go back to a.
	retry := first
	retry.Slot = first.Slot.Add(time.Minute)
	retry.Lease = e.clock.Now().Add(2 * time.Second)
	out = e.check(retry)
	var jb Job
	b.expect(TypeJob, &jb)
	b.send(TypeResult, Result{JobID: jb.JobID, Observation: observation(e.chain)})
	b.expect(TypeAck, &ack)
	if o := waitOutcome(t, out); o.Result.Status != assess.OK {
		t.Fatalf("retry through b: %+v", o.Result)
	}
}
