package monitor

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/target"
)

// CloudPool is the agent pool served by the server's built-in agent.
const CloudPool = "cloud"

// ParseTarget reads a monitor's target the way `certmon check` reads one;
// a protocol field names the scheme of a target written without one.
func ParseTarget(raw, protocol string) (target.Target, error) {
	return target.ParseWithProtocol(raw, protocol)
}

// LocalChecker is the built-in ("cloud") agent: it probes from the server
// and assesses at once.
type LocalChecker struct {
	prober   *probe.Prober
	base     assess.Config
	policy   assess.Policy
	mu       sync.Mutex
	byRoots  map[[32]byte]*assess.Assessor
	fallback *assess.Assessor
	reach    probe.Reach
}

// LocalOption tunes a LocalChecker.
type LocalOption func(*LocalChecker)

// WithReach limits what the built-in agent may dial: by default the server
// refuses link-local and cloud metadata addresses, so a monitor cannot be
// used to read the server's own cloud credentials.
func WithReach(r probe.Reach) LocalOption { return func(l *LocalChecker) { l.reach = r } }

// NewLocalChecker returns a checker using prober, the assessor config (its
// Roots are the global roots) and default policy thresholds.
func NewLocalChecker(prober *probe.Prober, cfg assess.Config, defaults assess.Policy, opts ...LocalOption) *LocalChecker {
	l := &LocalChecker{
		prober:   prober,
		base:     cfg,
		policy:   defaults,
		byRoots:  map[[32]byte]*assess.Assessor{},
		fallback: assess.New(cfg),
	}
	for _, o := range opts {
		o(l)
	}
	return l
}

// assessor returns one Assessor per distinct per-monitor CA bundle, so each
// keeps its verification cache.
func (l *LocalChecker) assessor(caPEM string) (*assess.Assessor, error) {
	if caPEM == "" {
		return l.fallback, nil
	}
	key := sha256.Sum256([]byte(caPEM))
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.byRoots[key]; ok {
		return a, nil
	}
	pool, err := l.roots(caPEM)
	if err != nil {
		return nil, err
	}
	cfg := l.base
	cfg.Roots = pool
	a := assess.New(cfg)
	if len(l.byRoots) > 1000 {
		clear(l.byRoots) // bounded: per-monitor bundles are few in practice
	}
	l.byRoots[key] = a
	return a, nil
}

// roots is the global roots plus a monitor's own CA bundle.
func (l *LocalChecker) roots(caPEM string) (*x509.CertPool, error) {
	var pool *x509.CertPool
	if l.base.Roots != nil {
		pool = l.base.Roots.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if caPEM != "" && !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("monitor ca_pem holds no PEM certificate")
	}
	return pool, nil
}

// Check probes and assesses one claimed monitor.
func (l *LocalChecker) Check(ctx context.Context, c store.Claim) Outcome {
	return l.CheckMonitor(ctx, c.Monitor)
}

// CheckMonitor probes and assesses one monitor.
func (l *LocalChecker) CheckMonitor(ctx context.Context, m store.Monitor) Outcome {
	t, sni, err := l.resolve(m)
	if err != nil {
		return invalid(m, err, time.Now().UTC())
	}
	req := probe.Request{Target: t, SNI: sni}
	if !l.reach.Empty() {
		addr, err := l.prober.Within(ctx, t, l.reach)
		var out *probe.OutOfReachError
		if errors.As(err, &out) {
			return invalid(m, out, time.Now().UTC())
		}
		// A failed lookup is left to the probe, which reports it as
		// unreachable; otherwise dial exactly the address checked.
		req.Address = addr
	}
	return l.Assess(ctx, m, l.prober.Probe(ctx, req))
}

// Assess judges an observation of monitor m, made here or by a remote
// agent, with the monitor's thresholds, name and CA bundle.
func (l *LocalChecker) Assess(ctx context.Context, m store.Monitor, obs *probe.Observation) Outcome {
	now := time.Now().UTC()
	t, _, err := l.resolve(m)
	if err != nil {
		return invalid(m, err, now)
	}
	var a *assess.Assessor
	if m.RevocationFrom == "agent" {
		a, err = l.withAgentFetches(m.CAPEM, obs)
	} else {
		a, err = l.assessor(m.CAPEM)
	}
	if err != nil {
		return invalid(m, err, now)
	}
	pol := l.policy
	pol.Hostname = t.Host
	if m.SNI != "" {
		pol.Hostname = m.SNI
	}
	if m.WarnDays > 0 {
		pol.WarnDays = m.WarnDays
	}
	if m.CritDays > 0 {
		pol.CritDays = m.CritDays
	}
	r := a.Assess(ctx, obs, pol, time.Now())
	return Outcome{Result: &r, ChainDER: obs.Chain, At: now}
}

// resolve parses m's target and picks the SNI to send.
func (l *LocalChecker) resolve(m store.Monitor) (target.Target, string, error) {
	t, err := ParseTarget(m.Target, m.Protocol)
	if err != nil {
		return t, "", err
	}
	if m.SNI != "" {
		return t, m.SNI, nil
	}
	return t, probe.DefaultSNI(t), nil
}

// Unknown is the outcome of a check that could not produce an observation
// (no agent connected, target refused): status UNKNOWN with msg as its
// error and no chain, so the state machine retries once before it counts.
func Unknown(m store.Monitor, msg string, at time.Time) Outcome {
	return invalid(m, errors.New(msg), at)
}

func invalid(m store.Monitor, err error, now time.Time) Outcome {
	msg := err.Error()
	return Outcome{At: now, Result: &assess.Result{
		Target:       m.Target,
		Status:       assess.Unknown,
		Problems:     []assess.Problem{},
		Chain:        []assess.Certificate{},
		Verification: assess.Verification{Revocation: assess.RevocationNotChecked},
		Error:        &msg,
	}}
}

// withAgentFetches is an assessor for one observation whose agent fetched
// OCSP/CRL and AIA itself (revocation_from: agent): the server judges with
// the agent's answers instead of fetching, since it cannot reach the
// responders. It is made per observation, so it has no cache.
func (l *LocalChecker) withAgentFetches(caPEM string, obs *probe.Observation) (*assess.Assessor, error) {
	pool, err := l.roots(caPEM)
	if err != nil {
		return nil, err
	}
	cfg := l.base
	cfg.Roots = pool
	cfg.CacheSize = -1
	cfg.Issuers = agentIssuers(obs.Issuers)
	cfg.Revocation = agentRevocation{obs.Revocation}
	return assess.New(cfg), nil
}

// agentIssuers answers AIA fetches with the issuers the agent fetched.
type agentIssuers [][]byte

func (a agentIssuers) FetchIssuer(context.Context, string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, der := range a {
		if c, err := x509.ParseCertificate(der); err == nil {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the agent fetched no issuer")
	}
	return out, nil
}

// agentRevocation answers with the agent's revocation report.
type agentRevocation struct{ r *probe.RevocationReport }

func (a agentRevocation) Check(context.Context, *x509.Certificate, *x509.Certificate, []byte, time.Time) revocation.Status {
	if a.r == nil {
		return revocation.Status{State: revocation.Unknown, Reason: "the agent sent no revocation answer"}
	}
	st := revocation.Status{State: revocation.Unknown, Source: a.r.Source, Reason: a.r.Reason, RevokedAt: a.r.RevokedAt}
	switch revocation.State(a.r.State) {
	case revocation.Good, revocation.Revoked:
		st.State = revocation.State(a.r.State)
	}
	if st.Source != "" {
		st.Source += " (fetched by the agent)"
	}
	return st
}
