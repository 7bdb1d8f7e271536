package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/target"
)

// Agent runs jobs for one server. Create it with New and call Run once.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	spool  *spool
	prober *probe.Prober
	// fetcher fetches OCSP/CRL/AIA for jobs that ask for it.
	fetcher *revocation.Fetcher
	wsURL   string
	client  *http.Client
	header  http.Header
	sem     chan struct{}

	mu       sync.Mutex
	inflight map[string]struct{} // accepted jobs not yet spooled
	conn     *websocket.Conn     // the welcomed connection, nil between sessions
	draining bool

	jobs       sync.WaitGroup
	jobCtx     context.Context
	cancelJobs context.CancelFunc
	drainOnce  sync.Once
	started    atomic.Bool

	jobsDone atomic.Int64
	errs     atomic.Int64
	connects atomic.Int64
}

// Stats is a snapshot for metrics and health checks.
type Stats struct {
	Connected  bool
	Spooled    int
	SpoolBytes int64
	// Running counts accepted jobs whose result is not spooled yet.
	Running  int
	JobsDone int64
	// Errors counts failed probes, refusals and dropped jobs.
	Errors   int64
	Connects int64
}

// New validates cfg and opens the spool.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	wsURL, err := websocketURL(c.ServerURL, c.Insecure)
	if err != nil {
		return nil, err
	}
	sp, err := openSpool(c.SpoolDir, c.SpoolMaxBytes, c.Logger)
	if err != nil {
		return nil, err
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	header := http.Header{}
	header.Set(agentlink.HeaderAgentID, c.AgentID)
	header.Set("Authorization", "Bearer "+c.Key)
	header.Set(agentlink.HeaderProtocol, strconv.Itoa(agentlink.ProtocolVersion))
	header.Set("User-Agent", "certmon-agent/"+c.Version)
	transport := &http.Transport{
		// Agents often sit behind an egress proxy; targets never use it.
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: dialTimeout,
	}
	jobCtx, cancel := context.WithCancel(context.Background())
	prober := probe.New(probe.Options{Timeout: c.MaxJobTimeout, Lookup: c.Resolver})
	fetchOpts := revocation.Options{Timeout: c.MaxJobTimeout, Logger: c.Logger}
	if len(c.AllowNetworks) > 0 {
		// OCSP, CRL and AIA URLs come from certificates: the allow-list
		// bounds them as it bounds targets, with no proxy in between.
		reach := probe.Reach{Allow: c.AllowNetworks}
		fetchOpts.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			p, _ := strconv.Atoi(port)
			checked, err := prober.Within(ctx, target.Target{Raw: addr, Host: host, Port: p}, reach)
			if err != nil {
				return nil, err
			}
			var d net.Dialer
			return d.DialContext(ctx, network, checked)
		}}
	}
	return &Agent{
		cfg:     c,
		log:     c.Logger,
		spool:   sp,
		prober:  prober,
		fetcher: revocation.NewFetcher(fetchOpts),
		wsURL:   wsURL,
		client: &http.Client{
			Transport: transport,
			// A redirect would carry the key somewhere the user did not
			// name; report it instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		header:     header,
		sem:        make(chan struct{}, c.Concurrency),
		inflight:   make(map[string]struct{}),
		jobCtx:     jobCtx,
		cancelJobs: cancel,
	}, nil
}

// Stats returns current counters.
func (a *Agent) Stats() Stats {
	n, b := a.spool.stats()
	a.mu.Lock()
	running, connected := len(a.inflight), a.conn != nil
	a.mu.Unlock()
	return Stats{
		Connected: connected, Spooled: n, SpoolBytes: b, Running: running,
		JobsDone: a.jobsDone.Load(), Errors: a.errs.Load(), Connects: a.connects.Load(),
	}
}

// Run connects, serves jobs and reconnects with backoff until ctx ends,
// then stops taking jobs, lets running ones finish (their results are
// spooled) and returns nil. It returns ErrUnauthorized or ErrRevoked
// (wrapped) at once when the server rejects the credentials.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}
	defer a.cancelJobs()
	attempt := 0
	for {
		start := time.Now()
		welcomed, err := a.session(ctx)
		if errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrRevoked) {
			a.log.Error("stopping: credentials no longer accepted; create or rotate the agent key on the server", "err", err)
			a.cancelJobs()
			a.jobs.Wait()
			return err
		}
		if ctx.Err() != nil {
			break
		}
		if welcomed && time.Since(start) >= a.cfg.StableAfter {
			attempt = 0
		}
		wait := a.backoff(attempt)
		attempt++
		a.log.Warn("server connection failed; retrying", "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	a.drain()
	return nil
}

// backoff is full jitter: uniform in [0, min(max, min·2^attempt)], so a
// fleet of agents cut off together does not return in step.
func (a *Agent) backoff(attempt int) time.Duration {
	ceiling := a.cfg.MaxBackoff
	if attempt < 30 {
		ceiling = min(ceiling, a.cfg.MinBackoff<<attempt)
	}
	return rand.N(ceiling + 1)
}

// drain stops taking jobs and waits for running ones, at most
// ShutdownGrace; jobs still running then are cancelled and not reported
// (the server's lease expires and it reschedules them).
func (a *Agent) drain() {
	a.drainOnce.Do(func() {
		a.mu.Lock()
		a.draining = true
		a.mu.Unlock()
		done := make(chan struct{})
		go func() { a.jobs.Wait(); close(done) }()
		t := time.NewTimer(a.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			a.log.Warn("shutdown: cancelling jobs still running", "grace", a.cfg.ShutdownGrace)
			a.cancelJobs()
			<-done
		}
	})
}

// session is one connection: dial, hello, welcome, then serve until the
// connection fails, the credentials are revoked or ctx ends (nil).
func (a *Agent) session(ctx context.Context) (welcomed bool, err error) {
	var lastRecv atomic.Int64
	touch := func() { lastRecv.Store(time.Now().UnixNano()) }
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	conn, resp, err := websocket.Dial(dctx, a.wsURL, &websocket.DialOptions{
		HTTPClient:     a.client,
		HTTPHeader:     a.header,
		OnPingReceived: func(context.Context, []byte) bool { touch(); return true },
		OnPongReceived: func(context.Context, []byte) { touch() },
	})
	cancel()
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return false, fmt.Errorf("%w: %s answered %s%s", ErrUnauthorized, a.cfg.ServerURL, resp.Status, bodySnippet(resp))
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return false, fmt.Errorf("dial %s: server answered %s%s", a.wsURL, resp.Status, bodySnippet(resp))
		}
		return false, fmt.Errorf("dial %s: %w", a.wsURL, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(agentlink.MaxMessageBytes)
	touch()

	st := a.Stats()
	hello := agentlink.Hello{
		AgentID: a.cfg.AgentID, Version: a.cfg.Version, Hostname: a.cfg.Hostname,
		AllowNetworks: prefixStrings(a.cfg), QueueDepth: st.Spooled + st.Running,
	}
	if err := a.write(ctx, conn, agentlink.TypeHello, hello); err != nil {
		return false, err
	}
	welcome, err := a.awaitWelcome(ctx, conn)
	if err != nil {
		return false, err
	}
	a.connects.Add(1)
	a.log.Info("connected to server", "url", a.wsURL, "server_version", welcome.ServerVersion, "key_expires_at", welcome.KeyExpiresAt)
	if !welcome.KeyExpiresAt.IsZero() && time.Until(welcome.KeyExpiresAt) < 14*24*time.Hour {
		a.log.Warn("agent key expires soon; rotate it on the server", "key_expires_at", welcome.KeyExpiresAt)
	}

	// The session's reads outlive ctx on purpose: on shutdown the agent
	// keeps reading (acks, pings) while running jobs finish.
	sctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	a.setConn(conn)
	defer a.setConn(nil)

	wg.Add(3)
	go func() { defer wg.Done(); a.resend(sctx, conn) }()
	go func() { defer wg.Done(); a.heartbeat(sctx, conn, &lastRecv) }()
	go func() {
		defer wg.Done()
		select {
		case <-sctx.Done():
		case <-ctx.Done():
			a.drain()
			_ = conn.Close(websocket.StatusGoingAway, "agent shutting down")
		}
	}()

	for {
		typ, data, err := conn.Read(sctx)
		if err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("connection lost: %w", err)
		}
		touch()
		if typ != websocket.MessageText {
			a.log.Warn("ignoring a binary message from the server", "bytes", len(data))
			continue
		}
		if err := a.handle(conn, data); err != nil {
			_ = conn.Close(websocket.StatusNormalClosure, "credentials revoked")
			return true, err
		}
	}
}

func (a *Agent) awaitWelcome(ctx context.Context, conn *websocket.Conn) (agentlink.Welcome, error) {
	wctx, cancel := context.WithTimeout(ctx, a.cfg.WelcomeTimeout)
	defer cancel()
	for {
		typ, data, err := conn.Read(wctx)
		if err != nil {
			return agentlink.Welcome{}, fmt.Errorf("waiting for welcome: %w", err)
		}
		if typ != websocket.MessageText {
			continue
		}
		env, err := decode(data)
		if err != nil {
			a.log.Warn("ignoring a malformed message from the server", "err", err)
			continue
		}
		switch env.Type {
		case agentlink.TypeWelcome:
			var w agentlink.Welcome
			if err := json.Unmarshal(env.Body, &w); err != nil {
				return w, fmt.Errorf("malformed welcome: %w", err)
			}
			return w, nil
		case agentlink.TypeRevoked:
			return agentlink.Welcome{}, revoked(env.Body)
		default:
			a.log.Warn("ignoring a message before welcome", "type", clean(env.Type))
		}
	}
}

// heartbeat pings the server (its pong counts as traffic), reconnects when
// nothing arrived for IdleTimeout and sends Status periodically.
func (a *Agent) heartbeat(ctx context.Context, conn *websocket.Conn, lastRecv *atomic.Int64) {
	idle := a.cfg.IdleTimeout
	check := time.NewTicker(idle / 4)
	defer check.Stop()
	status := time.NewTicker(a.cfg.StatusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			if since := time.Since(time.Unix(0, lastRecv.Load())); since > idle {
				a.log.Warn("nothing received from the server; reconnecting", "silent_for", since.Round(time.Millisecond))
				_ = conn.CloseNow()
				return
			}
			go func() {
				pctx, cancel := context.WithTimeout(ctx, idle/2)
				defer cancel()
				_ = conn.Ping(pctx)
			}()
		case <-status.C:
			st := a.Stats()
			_ = a.write(ctx, conn, agentlink.TypeStatus, agentlink.Status{
				QueueDepth: st.Spooled + st.Running, JobsDone: st.JobsDone, Errors: st.Errors,
			})
		}
	}
}

// resend sends every spooled result after (re)connecting: at-least-once;
// the server ignores a job ID it already stored.
func (a *Agent) resend(ctx context.Context, conn *websocket.Conn) {
	names := a.spool.names()
	if len(names) > 0 {
		a.log.Info("resending unacknowledged results", "count", len(names))
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		data, err := a.spool.read(name)
		if errors.Is(err, os.ErrNotExist) {
			continue // acknowledged meanwhile
		}
		if err == nil && !validResult(data) {
			err = errors.New("not a result message")
		}
		if err != nil {
			a.log.Warn("spool: dropping an unreadable result", "file", name, "err", err)
			a.spool.removeName(name)
			continue
		}
		if err := a.writeRaw(ctx, conn, data); err != nil {
			return // the session ends; the next one resends
		}
	}
}

func validResult(data []byte) bool {
	if len(data) > agentlink.MaxMessageBytes {
		return false
	}
	env, err := decode(data)
	if err != nil || env.Type != agentlink.TypeResult {
		return false
	}
	var r agentlink.Result
	return json.Unmarshal(env.Body, &r) == nil && r.JobID != ""
}

// handle acts on one server message. Malformed or unknown messages are
// logged and ignored; only a revocation ends the session.
func (a *Agent) handle(conn *websocket.Conn, data []byte) error {
	env, err := decode(data)
	if err != nil {
		a.log.Warn("ignoring a malformed message from the server", "err", err, "bytes", len(data))
		return nil
	}
	switch env.Type {
	case agentlink.TypeJob:
		var job agentlink.Job
		if err := json.Unmarshal(env.Body, &job); err != nil {
			a.log.Warn("ignoring a malformed job", "err", err)
			return nil
		}
		if job.JobID == "" || len(job.JobID) > maxIDBytes {
			a.log.Warn("ignoring a job without a valid job ID", "job_id_bytes", len(job.JobID))
			return nil
		}
		a.accept(conn, job)
	case agentlink.TypeAck:
		var ack agentlink.Ack
		if err := json.Unmarshal(env.Body, &ack); err != nil || ack.JobID == "" {
			a.log.Warn("ignoring a malformed ack", "err", err)
			return nil
		}
		a.spool.remove(ack.JobID)
		if ack.Error != "" {
			a.log.Info("server did not use a result", "job_id", clean(ack.JobID), "reason", clean(ack.Error))
		}
	case agentlink.TypeRevoked:
		return revoked(env.Body)
	case agentlink.TypeWelcome:
		// A repeated welcome is harmless.
	default:
		a.log.Warn("ignoring an unknown message type", "type", clean(env.Type), "v", env.V)
	}
	return nil
}

// accept starts a job unless it is a duplicate, the agent is shutting down
// or too many jobs are queued.
func (a *Agent) accept(conn *websocket.Conn, job agentlink.Job) {
	a.mu.Lock()
	_, running := a.inflight[job.JobID]
	switch {
	case a.draining:
		a.mu.Unlock()
		a.log.Debug("shutting down: not taking job", "job_id", clean(job.JobID))
		return
	case running:
		a.mu.Unlock()
		return
	case len(a.inflight) >= a.cfg.MaxQueuedJobs:
		a.mu.Unlock()
		a.errs.Add(1)
		a.log.Warn("too many queued jobs: dropping one", "job_id", clean(job.JobID), "queued", a.cfg.MaxQueuedJobs)
		return
	}
	if a.spool.has(job.JobID) {
		a.mu.Unlock()
		// Already done: the server missed the result, so send it again.
		if data, err := a.spool.read(fileName(job.JobID)); err == nil {
			go func() { _ = a.writeRaw(context.Background(), conn, data) }()
		}
		return
	}
	a.inflight[job.JobID] = struct{}{}
	a.jobs.Add(1)
	a.mu.Unlock()
	go a.run(job)
}

// run executes a job on the bounded pool, spools its result and sends it
// on whatever connection is current.
func (a *Agent) run(job agentlink.Job) {
	defer a.jobs.Done()
	defer func() {
		a.mu.Lock()
		delete(a.inflight, job.JobID)
		a.mu.Unlock()
	}()
	defer func() {
		// One bad job must not take the agent down.
		if r := recover(); r != nil {
			a.errs.Add(1)
			a.log.Error("job panicked", "job_id", clean(job.JobID), "panic", r)
		}
	}()
	select {
	case a.sem <- struct{}{}:
	case <-a.jobCtx.Done():
		return
	}
	res := a.execute(a.jobCtx, job)
	<-a.sem
	if a.jobCtx.Err() != nil {
		return // cancelled, not observed: reporting it would be a false failure
	}
	a.jobsDone.Add(1)
	if res.Refused != "" || res.Observation == nil || res.Observation.Err != nil {
		a.errs.Add(1)
	}
	data, err := agentlink.Encode(agentlink.TypeResult, res)
	if err == nil && len(data) > agentlink.MaxMessageBytes && res.Observation != nil {
		res.Observation.Chain, res.Observation.OCSPStaple = nil, nil
		res.Observation.Err = &probe.Error{Stage: probe.StageHandshake, Message: fmt.Sprintf("result of %d bytes exceeds the protocol limit of %d", len(data), agentlink.MaxMessageBytes)}
		data, err = agentlink.Encode(agentlink.TypeResult, res)
	}
	if err != nil {
		a.log.Error("cannot encode a result", "job_id", clean(job.JobID), "err", err)
		return
	}
	if err := a.spool.put(job.JobID, data); err != nil {
		a.log.Warn("cannot spool a result; sending without a copy", "job_id", clean(job.JobID), "err", err)
	}
	a.mu.Lock()
	conn := a.conn
	a.mu.Unlock()
	if conn != nil {
		_ = a.writeRaw(context.Background(), conn, data)
	}
}

func (a *Agent) setConn(c *websocket.Conn) {
	a.mu.Lock()
	a.conn = c
	a.mu.Unlock()
}

func (a *Agent) write(ctx context.Context, conn *websocket.Conn, typ string, body any) error {
	data, err := agentlink.Encode(typ, body)
	if err != nil {
		return err
	}
	return a.writeRaw(ctx, conn, data)
}

// writeRaw sends one message with a timeout; a failed write closes the
// connection so the read loop notices and the session reconnects.
func (a *Agent) writeRaw(ctx context.Context, conn *websocket.Conn, data []byte) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := conn.Write(wctx, websocket.MessageText, data); err != nil {
		_ = conn.CloseNow()
		return err
	}
	return nil
}

func decode(data []byte) (agentlink.Envelope, error) {
	var env agentlink.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, err
	}
	if env.Type == "" {
		return env, errors.New("envelope without a type")
	}
	return env, nil
}

func revoked(body json.RawMessage) error {
	var r agentlink.Revoked
	_ = json.Unmarshal(body, &r)
	if r.Reason == "" {
		return ErrRevoked
	}
	return fmt.Errorf("%w: %s", ErrRevoked, clean(r.Reason))
}

func prefixStrings(c Config) []string {
	var s []string
	for _, p := range c.AllowNetworks {
		s = append(s, p.String())
	}
	return s
}

// bodySnippet quotes the start of an error response for the log.
func bodySnippet(resp *http.Response) string {
	if resp.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if s := clean(string(b)); s != "" {
		return ": " + s
	}
	return ""
}

// clean bounds and de-controls text the server chose before it is logged.
func clean(s string) string {
	const max = 200
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
