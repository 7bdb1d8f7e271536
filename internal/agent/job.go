package agent

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

// execute runs one job and returns its result; it never fails, since a
// failure is an observation (or a refusal) the server records.
func (a *Agent) execute(ctx context.Context, job agentlink.Job) agentlink.Result {
	res := agentlink.Result{JobID: job.JobID}
	t, err := target.ParseWithProtocol(job.Target, job.Protocol)
	if err != nil {
		res.Refused = "cannot parse target: " + err.Error()
		return res
	}
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = probe.DefaultTimeout
	}
	timeout = min(timeout, a.cfg.MaxJobTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	sni := job.SNI
	if sni == "" {
		sni = probe.DefaultSNI(t)
	}
	started := time.Now().UTC()
	// With an allow-list every address of the name must be inside it,
	// and the probe dials the checked address, so a second lookup (DNS
	// rebinding) cannot reach elsewhere. The server cannot widen this.
	var addr string
	if len(a.cfg.AllowNetworks) > 0 {
		addr, err = a.prober.Within(ctx, t, probe.Reach{Allow: a.cfg.AllowNetworks})
	}
	var out *probe.OutOfReachError
	if errors.As(err, &out) {
		res.Refused = out.Error() + " (" + a.allowList() + ")"
		return res
	}
	if err != nil {
		res.Observation = &probe.Observation{
			Target: t, SNI: sni, StartedAt: started, Attempts: 1,
			Err: &probe.Error{Stage: probe.StageResolve, Timeout: errors.Is(err, context.DeadlineExceeded), Message: err.Error()},
		}
		return res
	}
	res.Observation = a.prober.Probe(ctx, probe.Request{Target: t, SNI: sni, Address: addr})
	if job.FetchRevocation {
		a.fetchRevocation(ctx, res.Observation)
	}
	return res
}

func (a *Agent) allowList() string {
	s := make([]string, len(a.cfg.AllowNetworks))
	for i, p := range a.cfg.AllowNetworks {
		s[i] = p.String()
	}
	return "allowed: " + strings.Join(s, ", ")
}
