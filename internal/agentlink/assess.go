package agentlink

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/store"
)

// AssessFunc judges an agent's observation of monitor m the way the
// built-in agent judges its own (thresholds, SNI, per-monitor CA bundle).
type AssessFunc func(ctx context.Context, m store.Monitor, obs *probe.Observation) monitor.Outcome

// Assessor is a stand-in for monitor.LocalChecker's judging half until
// LocalChecker has an Assess(ctx, store.Monitor, *probe.Observation)
// method; it repeats LocalChecker's policy and per-bundle assessor cache.
// Its Assess method is an AssessFunc.
type Assessor struct {
	base     assess.Config
	policy   assess.Policy
	mu       sync.Mutex
	byRoots  map[[32]byte]*assess.Assessor
	fallback *assess.Assessor
}

// NewAssessor returns an Assessor with the assessor config (its Roots are
// the global roots) and default policy thresholds.
func NewAssessor(cfg assess.Config, defaults assess.Policy) *Assessor {
	return &Assessor{base: cfg, policy: defaults, byRoots: map[[32]byte]*assess.Assessor{}, fallback: assess.New(cfg)}
}

func (a *Assessor) assessor(caPEM string) (*assess.Assessor, error) {
	if caPEM == "" {
		return a.fallback, nil
	}
	key := sha256.Sum256([]byte(caPEM))
	a.mu.Lock()
	defer a.mu.Unlock()
	if as, ok := a.byRoots[key]; ok {
		return as, nil
	}
	var pool *x509.CertPool
	if a.base.Roots != nil {
		pool = a.base.Roots.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("monitor ca_pem holds no PEM certificate")
	}
	cfg := a.base
	cfg.Roots = pool
	as := assess.New(cfg)
	if len(a.byRoots) > 1000 {
		clear(a.byRoots)
	}
	a.byRoots[key] = as
	return as, nil
}

// Assess judges obs as a check of m.
func (a *Assessor) Assess(ctx context.Context, m store.Monitor, obs *probe.Observation) monitor.Outcome {
	now := time.Now().UTC()
	t, err := monitor.ParseTarget(m.Target, m.Protocol)
	if err != nil {
		return unknownOutcome(m, err.Error(), now)
	}
	as, err := a.assessor(m.CAPEM)
	if err != nil {
		return unknownOutcome(m, err.Error(), now)
	}
	hostname := t.Host
	if m.SNI != "" {
		hostname = m.SNI
	}
	pol := a.policy
	pol.Hostname = hostname
	if m.WarnDays > 0 {
		pol.WarnDays = m.WarnDays
	}
	if m.CritDays > 0 {
		pol.CritDays = m.CritDays
	}
	r := as.Assess(ctx, obs, pol, time.Now())
	return monitor.Outcome{Result: &r, ChainDER: obs.Chain, At: now}
}

// unknownOutcome is a check that produced no certificate: status UNKNOWN
// with msg as its error and no chain, so the state machine retries once
// before it counts.
func unknownOutcome(m store.Monitor, msg string, at time.Time) monitor.Outcome {
	return monitor.Outcome{At: at, Result: &assess.Result{
		Target:       m.Target,
		Status:       assess.Unknown,
		Problems:     []assess.Problem{},
		Chain:        []assess.Certificate{},
		Verification: assess.Verification{Revocation: assess.RevocationNotChecked},
		Error:        &msg,
	}}
}
