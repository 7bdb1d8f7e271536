package agentlink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
)

// Store is what the hub needs of the store.
type Store interface {
	AuthenticateAgent(ctx context.Context, id string, keyHash []byte, now time.Time) (store.Agent, error)
	AgentsByID(ctx context.Context, ids []string) ([]store.Agent, error)
	UpdateAgentStatus(ctx context.Context, id string, st store.AgentStatus) error
	OfflinePools(ctx context.Context, since time.Time) ([]store.OfflinePool, error)
	MarkAgentsOffline(ctx context.Context, lastSeenBefore, now time.Time, event store.AgentEvent) ([]store.Agent, error)
	MarkAgentOnline(ctx context.Context, id string, event func(offlineSince time.Time) *store.Event) (time.Time, error)
	MarkKeysExpiring(ctx context.Context, before time.Time, event store.AgentEvent) ([]store.Agent, error)
	// For adopting a result whose claim was lost (adopt.go).
	GetMonitor(ctx context.Context, teamID, id int64) (store.MonitorWithState, error)
	LoadPrevious(ctx context.Context, claims []store.Claim) error
	RecordChecks(ctx context.Context, recs []store.CheckRecord) ([]int, error)
}

var _ Store = (*store.Store)(nil)

// AssessFunc judges an agent's observation of monitor m the way the
// built-in agent judges its own: monitor.LocalChecker's Assess.
type AssessFunc func(ctx context.Context, m store.Monitor, obs *probe.Observation) monitor.Outcome

// HubConfig tunes a Hub. Zero durations take the defaults in brackets.
type HubConfig struct {
	// Assess judges an agent's observation (required).
	Assess AssessFunc
	// Version is the server build version sent in Welcome.
	Version string
	// Replica names this process in the agents' status rows, so a late
	// disconnect here does not mark offline an agent that moved to
	// another replica [hostname-random].
	Replica string
	// Now is the clock for key expiry and status times [time.Now].
	Now func() time.Time

	HelloTimeout time.Duration // for the first message [10s]
	PingInterval time.Duration // between WebSocket pings [20s]
	PongTimeout  time.Duration // without a pong before closing [60s]
	WriteTimeout time.Duration // per message [10s]
	// RecheckInterval is how often credentials of connected agents are
	// checked against the store (revocation, expiry, deletion, also by
	// other replicas) and status rows written [5s].
	RecheckInterval time.Duration
	// ProbeTimeout is sent as Job.Timeout, capped by the lease [30s].
	ProbeTimeout time.Duration
	// MaxProtocolErrors is how many malformed messages a connection may
	// send before it is closed [10].
	MaxProtocolErrors int
	// RetryDelay is the scheduler's retry delay, used when an adopted
	// result (see adopt.go) is a failure [20s].
	RetryDelay time.Duration
	// Alerts is the scheduler's alert policy, for adopted results.
	Alerts monitor.AlertPolicy
	// OfflineGrace is how long an agent may go unseen before it counts as
	// offline: an agent_offline event, and its pool's monitors turn
	// UNKNOWN "agent offline" if no agent of the pool was seen [5m]. It is
	// at least minOfflineGrace, since agents connected to other replicas
	// are seen only every statusRefresh.
	OfflineGrace time.Duration
	// SweepInterval is how often offline pools are read from the store and
	// offline agents and expiring keys are looked for [15s].
	SweepInterval time.Duration
	// KeyWarning is how long before its key expires an agent_key_expiring
	// event is written [14 days].
	KeyWarning time.Duration
}

// statusRefresh is how often last_seen is written for a quiet agent, so
// readers can tell a connection a crashed replica left "connected".
const statusRefresh = 30 * time.Second

// minOfflineGrace keeps an agent connected to another replica, whose
// last_seen that replica refreshes every statusRefresh, from looking
// offline here.
const minOfflineGrace = 2 * statusRefresh

// expiredMemory is how long a job Check gave up on is remembered, so its
// late result is acked "job expired" rather than "unknown job".
const expiredMemory = 10 * time.Minute

// Hub accepts agent connections at Path and dispatches checks of agent
// pools to them; it is a monitor.Checker. Call Run for its background
// work (credential re-checks, status writes) and graceful shutdown.
type Hub struct {
	cfg   HubConfig
	store Store
	log   *slog.Logger

	// ctx ends when Run returns; connections read under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // connection handlers

	mu      sync.Mutex
	closed  bool
	conns   map[string]*conn    // by agent ID, welcomed connections
	byPool  map[poolKey][]*conn // the same, by team and pool
	jobs    map[string]*pending // by job ID
	expired map[string]time.Time
	// silent remembers, per monitor, the agent that last let its job lapse
	// unanswered, so the retry goes to another agent of the pool.
	silent map[int64]string
	rr     uint64
	// offline is the last sweep's offline pools (any team), by team and
	// pool; offlineNames their names, for PoolsFunc.
	offline      map[poolKey]store.OfflinePool
	offlineNames []string
}

type poolKey struct {
	team int64
	pool string
}

var _ monitor.Checker = (*Hub)(nil)

// NewHub returns a Hub over st.
func NewHub(cfg HubConfig, st Store, log *slog.Logger) (*Hub, error) {
	if cfg.Assess == nil {
		return nil, errors.New("agentlink: hub needs an Assess function")
	}
	if st == nil {
		return nil, errors.New("agentlink: hub needs a store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.Replica = host + "-" + hex.EncodeToString(b)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HelloTimeout, 10*time.Second)
	def(&cfg.PingInterval, 20*time.Second)
	def(&cfg.PongTimeout, 60*time.Second)
	def(&cfg.WriteTimeout, 10*time.Second)
	def(&cfg.RecheckInterval, 5*time.Second)
	def(&cfg.ProbeTimeout, 30*time.Second)
	def(&cfg.RetryDelay, 20*time.Second)
	def(&cfg.OfflineGrace, 5*time.Minute)
	cfg.OfflineGrace = max(cfg.OfflineGrace, minOfflineGrace)
	def(&cfg.SweepInterval, 15*time.Second)
	def(&cfg.KeyWarning, 14*24*time.Hour)
	if cfg.MaxProtocolErrors <= 0 {
		cfg.MaxProtocolErrors = 10
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg: cfg, store: st, log: log, ctx: ctx, cancel: cancel,
		conns:   map[string]*conn{},
		byPool:  map[poolKey][]*conn{},
		jobs:    map[string]*pending{},
		expired: map[string]time.Time{},
		silent:  map[int64]string{},
	}, nil
}

func (h *Hub) now() time.Time { return h.cfg.Now().UTC() }

// conn is one welcomed agent connection.
type conn struct {
	hub     *Hub
	ws      *websocket.Conn
	agent   store.Agent // as authenticated: ID, team, pool
	keyHash []byte
	log     *slog.Logger
	done    chan struct{} // closed when the handler returns

	// outstanding and revoking are guarded by hub.mu.
	outstanding int
	revoking    bool

	mu        sync.Mutex
	status    store.AgentStatus
	dirty     bool
	lastWrite time.Time
	lastPong  time.Time
}

// ServeHTTP authenticates an agent's upgrade request and serves its
// connection until it ends. Bad credentials get 401 without an upgrade.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.log.With("remote", r.RemoteAddr)
	id := r.Header.Get(HeaderAgentID)
	key, ok := bearer(r.Header.Get("Authorization"))
	if !ok || !ValidAgentID(id) {
		log.Info("agent refused: missing or malformed credentials")
		httpError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid agent credentials")
		return
	}
	log = log.With("agent", id)
	if v := r.Header.Get(HeaderProtocol); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < ProtocolVersion-1 || n > ProtocolVersion+1 {
			log.Info("agent refused: protocol version", "version", v)
			httpError(w, http.StatusBadRequest, "unsupported_protocol",
				fmt.Sprintf("protocol version %q is not supported; this server speaks %d", v, ProtocolVersion))
			return
		}
	}
	hash := HashKey(key)
	actx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	a, err := h.store.AuthenticateAgent(actx, id, hash, h.now())
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrAgentRevoked), errors.Is(err, store.ErrAgentKeyExpired):
		log.Info("agent refused", "err", err)
		httpError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid agent credentials")
		return
	case err != nil:
		log.Error("agent authentication: store", "err", err)
		httpError(w, http.StatusServiceUnavailable, "unavailable", "cannot check credentials now; retry later")
		return
	}
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if closed {
		httpError(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	defer h.wg.Done()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		// Accept has answered the client already.
		log.Info("agent upgrade failed", "err", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(MaxMessageBytes)
	c := &conn{hub: h, ws: ws, agent: a, keyHash: hash, log: log.With("pool", a.Pool), done: make(chan struct{})}
	defer close(c.done)
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("agent connection panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	c.serve(r.RemoteAddr)
}

// serve runs a connection: hello, welcome, then messages until it ends.
func (c *conn) serve(remote string) {
	h := c.hub
	hello, err := c.readHello()
	if err != nil {
		c.log.Info("agent closed before hello", "err", err)
		_ = c.ws.Close(websocket.StatusPolicyViolation, "expected hello")
		return
	}
	now := h.now()
	c.status = store.AgentStatus{
		Version: hello.Version, Hostname: hello.Hostname, Address: remote, LastSeen: now,
		QueueDepth: max(hello.QueueDepth, 0), Connected: true, Replica: h.cfg.Replica,
	}
	c.lastPong = now
	c.log = c.log.With("hostname", clipText(hello.Hostname, 100), "version", clipText(hello.Version, 50))

	if !h.register(c) {
		_ = c.ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer h.unregister(c)
	if err := c.send(h.ctx, TypeWelcome, Welcome{
		ServerVersion: h.cfg.Version,
		Heartbeat:     h.cfg.PingInterval,
		KeyExpiresAt:  c.agent.KeyExpiresFor(c.keyHash),
	}); err != nil {
		c.log.Info("agent welcome failed", "err", err)
		return
	}
	c.log.Info("agent connected", "allow_networks", len(hello.AllowNetworks))
	c.writeStatus(true)
	// After the status write: last_seen is fresh, so no sweep marks the
	// agent offline again between the two.
	c.markOnline(now)

	go c.pinger()
	c.readLoop()
}

func (c *conn) readHello() (Hello, error) {
	ctx, cancel := context.WithTimeout(c.hub.ctx, c.hub.cfg.HelloTimeout)
	defer cancel()
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return Hello{}, err
	}
	if typ != websocket.MessageText {
		return Hello{}, errors.New("binary first message")
	}
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return Hello{}, fmt.Errorf("first message: %w", err)
	}
	if env.Type != TypeHello {
		return Hello{}, fmt.Errorf("first message is %q, not hello", clipText(env.Type, 40))
	}
	var hello Hello
	if err := json.Unmarshal(env.Body, &hello); err != nil {
		return Hello{}, fmt.Errorf("hello: %w", err)
	}
	if hello.AgentID != c.agent.ID {
		return Hello{}, fmt.Errorf("hello names agent %q", clipText(hello.AgentID, 40))
	}
	return hello, nil
}

// register adds a welcomed connection; a previous connection of the same
// agent on this hub is closed (its jobs fail as disconnected).
func (h *Hub) register(c *conn) bool {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return false
	}
	old := h.conns[c.agent.ID]
	if old != nil {
		h.removeLocked(old)
	}
	h.conns[c.agent.ID] = c
	k := poolKey{c.agent.TeamID, c.agent.Pool}
	h.byPool[k] = append(h.byPool[k], c)
	h.mu.Unlock()
	if old != nil {
		old.log.Info("agent replaced by a newer connection")
		go func() { _ = old.ws.Close(websocket.StatusPolicyViolation, "replaced by a newer connection") }()
	}
	return true
}

// removeLocked takes c out of dispatch; h.mu is held.
func (h *Hub) removeLocked(c *conn) {
	if h.conns[c.agent.ID] == c {
		delete(h.conns, c.agent.ID)
	}
	k := poolKey{c.agent.TeamID, c.agent.Pool}
	list := slices.DeleteFunc(h.byPool[k], func(x *conn) bool { return x == c })
	if len(list) == 0 {
		delete(h.byPool, k)
	} else {
		h.byPool[k] = list
	}
	c.revoking = true
}

// unregister runs when a connection ends: its outstanding jobs fail as
// "agent disconnected" and the store is told, unless a newer connection
// of the agent has taken over.
func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	replaced := h.conns[c.agent.ID] != nil && h.conns[c.agent.ID] != c
	h.removeLocked(c)
	var failed []*pending
	for id, p := range h.jobs {
		if p.conn == c {
			delete(h.jobs, id)
			failed = append(failed, p)
		}
	}
	c.outstanding = 0
	h.mu.Unlock()
	for _, p := range failed {
		p.done <- reply{err: "agent disconnected"}
	}
	c.log.Info("agent disconnected", "failed_jobs", len(failed))
	if !replaced {
		c.mu.Lock()
		c.status.Connected = false
		c.status.LastSeen = h.now()
		c.mu.Unlock()
		c.writeStatus(true)
	}
}

// readLoop handles the agent's messages until the connection ends.
func (c *conn) readLoop() {
	h := c.hub
	protoErrs := 0
	fault := func(msg string, args ...any) bool {
		protoErrs++
		c.log.Warn("agent protocol error: "+msg, append(args, "count", protoErrs)...)
		if protoErrs > h.cfg.MaxProtocolErrors {
			c.log.Warn("agent closed: too many protocol errors")
			_ = c.ws.Close(websocket.StatusPolicyViolation, "too many protocol errors")
			return true
		}
		return false
	}
	for {
		typ, data, err := c.ws.Read(h.ctx)
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrMessageTooBig):
				c.log.Warn("agent closed: message over the size limit", "limit", MaxMessageBytes)
			case websocket.CloseStatus(err) != -1:
				c.log.Debug("agent closed the connection", "status", websocket.CloseStatus(err))
			default:
				c.log.Debug("agent connection ended", "err", err)
			}
			return
		}
		c.seen()
		if typ != websocket.MessageText {
			if fault("binary message") {
				return
			}
			continue
		}
		var env Envelope
		if err := json.Unmarshal(data, &env); err != nil {
			if fault("malformed message", "err", err) {
				return
			}
			continue
		}
		switch env.Type {
		case TypeResult:
			if !c.handleResult(env.Body) && fault("malformed result") {
				return
			}
		case TypeStatus:
			var st Status
			if err := json.Unmarshal(env.Body, &st); err != nil {
				if fault("malformed status", "err", err) {
					return
				}
				continue
			}
			c.mu.Lock()
			c.status.QueueDepth = max(st.QueueDepth, 0)
			c.status.JobsDone = max(st.JobsDone, 0)
			c.status.Errors = max(st.Errors, 0)
			c.dirty = true
			c.mu.Unlock()
		case TypeHello:
			if fault("second hello") {
				return
			}
		default:
			// A newer agent may send types this server does not know.
			c.log.Info("agent sent an unknown message type; ignored", "type", clipText(env.Type, 40), "v", env.V)
		}
	}
}

// handleResult hands a result to the Check waiting for it and acks it;
// false means the body was malformed.
func (c *conn) handleResult(body json.RawMessage) bool {
	h := c.hub
	var res Result
	if err := json.Unmarshal(body, &res); err != nil || res.JobID == "" {
		// Ack what can be named, so the agent stops resending it.
		var id struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal(body, &id) == nil && id.JobID != "" {
			c.ack(id.JobID, "malformed result")
		}
		return false
	}
	reason := ""
	adopt := false
	h.mu.Lock()
	p := h.jobs[res.JobID]
	switch {
	case p != nil && p.conn == c:
		h.takeLocked(res.JobID)
	case p != nil:
		reason = "job was not given to this connection"
	case !h.expired[res.JobID].IsZero():
		reason = "job expired"
	default:
		adopt = true
	}
	h.mu.Unlock()
	if adopt {
		// Not sent from here: a spooled result whose claim died with
		// another (or an earlier) server process.
		if reason = c.adopt(&res); reason == "" {
			c.ack(res.JobID, "")
			return true
		}
	}
	if reason == "" {
		p.done <- reply{res: &res}
	} else {
		c.log.Warn("agent result rejected", "job", clipText(res.JobID, 80), "reason", reason)
	}
	c.ack(res.JobID, reason)
	return true
}

func (c *conn) ack(jobID, reason string) {
	if err := c.send(c.hub.ctx, TypeAck, Ack{JobID: jobID, Error: reason}); err != nil {
		c.log.Info("agent ack failed", "err", err)
	}
}

// send writes one message; a failed write ends the connection (a partly
// written frame cannot be recovered).
func (c *conn) send(ctx context.Context, typ string, body any) error {
	data, err := Encode(typ, body)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, c.hub.cfg.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageText, data); err != nil {
		_ = c.ws.CloseNow()
		return fmt.Errorf("writing %s: %w", typ, err)
	}
	return nil
}

// pinger pings the agent; a connection without a pong for PongTimeout is
// closed.
func (c *conn) pinger() {
	h := c.hub
	t := time.NewTicker(h.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		wait := c.lastPong.Add(h.cfg.PongTimeout).Sub(h.now())
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(h.ctx, max(wait, time.Second))
		err := c.ws.Ping(ctx)
		cancel()
		if err != nil {
			select {
			case <-c.done:
			default:
				c.log.Warn("agent closed: no pong", "err", err)
			}
			_ = c.ws.CloseNow()
			return
		}
		c.mu.Lock()
		c.lastPong = h.now()
		c.mu.Unlock()
		c.seen()
	}
}

// seen notes that the agent is alive.
func (c *conn) seen() {
	c.mu.Lock()
	c.status.LastSeen = c.hub.now()
	c.mu.Unlock()
}

// writeStatus stores the connection's status if it changed since the
// last write (or force), or if last_seen is due for a refresh.
func (c *conn) writeStatus(force bool) {
	h := c.hub
	c.mu.Lock()
	now := h.now()
	if !force && !c.dirty && now.Sub(c.lastWrite) < statusRefresh {
		c.mu.Unlock()
		return
	}
	st := c.status
	c.dirty, c.lastWrite = false, now
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.store.UpdateAgentStatus(ctx, c.agent.ID, st); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("writing agent status", "err", err)
	}
}

// revoke tells the agent why and closes its connection; it is taken out of
// dispatch at once.
func (c *conn) revoke(reason string) {
	h := c.hub
	h.mu.Lock()
	if c.revoking {
		// Already on its way out.
		h.mu.Unlock()
		return
	}
	h.removeLocked(c)
	h.mu.Unlock()
	c.log.Info("agent disconnected: " + reason)
	go func() {
		_ = c.send(h.ctx, TypeRevoked, Revoked{Reason: reason})
		_ = c.ws.Close(websocket.StatusPolicyViolation, reason)
	}()
}

// Disconnect closes agentID's connection on this hub at once, telling the
// agent its credentials were revoked (call it after RevokeAgent or
// DeleteAgent; other replicas notice within RecheckInterval).
func (h *Hub) Disconnect(agentID string) {
	h.mu.Lock()
	c := h.conns[agentID]
	h.mu.Unlock()
	if c != nil {
		c.revoke("credentials revoked")
	}
}

// Run re-checks credentials and writes status every RecheckInterval, and
// sweeps for offline agents and expiring keys every SweepInterval, until
// ctx ends, then closes every connection (agents reconnect to another
// replica) and waits for them, briefly.
func (h *Hub) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.RecheckInterval)
	defer t.Stop()
	sweep := time.NewTicker(h.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			h.shutdown()
			return nil
		case <-t.C:
			h.maintain(ctx)
		case <-sweep.C:
			h.sweep(ctx)
		}
	}
}

func (h *Hub) shutdown() {
	h.mu.Lock()
	h.closed = true
	conns := make([]*conn, 0, len(h.conns))
	for _, c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		go func() { _ = c.ws.Close(websocket.StatusGoingAway, "server shutting down") }()
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		h.log.Warn("agent connections did not close in time")
	}
	h.cancel()
}

// maintain is one round of background work; it recovers from panics so
// the loop survives.
func (h *Hub) maintain(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("agent hub maintenance panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	now := h.now()
	h.mu.Lock()
	conns := make([]*conn, 0, len(h.conns))
	ids := make([]string, 0, len(h.conns))
	for id, c := range h.conns {
		conns = append(conns, c)
		ids = append(ids, id)
	}
	for id, until := range h.expired {
		if now.After(until) {
			delete(h.expired, id)
		}
	}
	h.mu.Unlock()
	if len(conns) == 0 {
		return
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	agents, err := h.store.AgentsByID(sctx, ids)
	cancel()
	if err != nil {
		// A store outage is no reason to drop agents.
		h.log.Warn("re-checking agent credentials", "err", err)
	} else {
		byID := make(map[string]store.Agent, len(agents))
		for _, a := range agents {
			byID[a.ID] = a
		}
		for _, c := range conns {
			a, ok := byID[c.agent.ID]
			if !ok {
				c.revoke("agent deleted")
				continue
			}
			switch err := a.CheckKey(c.keyHash, now); {
			case errors.Is(err, store.ErrAgentRevoked):
				c.revoke("credentials revoked")
			case errors.Is(err, store.ErrAgentKeyExpired):
				c.revoke("key expired")
			case err != nil:
				c.revoke("key no longer valid")
			}
		}
	}
	for _, c := range conns {
		h.mu.Lock()
		live := h.conns[c.agent.ID] == c
		h.mu.Unlock()
		if live {
			c.writeStatus(false)
		}
	}
}

// bearer reads "Bearer KEY".
func bearer(authorization string) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	key = strings.TrimSpace(key)
	return key, key != "" && len(key) <= 200
}

// httpError answers in the API's error shape.
func httpError(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="certmon-agent"`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}})
}

// clipText bounds agent-supplied text in logs and messages.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
