package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

// parseTarget reads a job's target the way the server's own checker does
// (monitor.ParseTarget), without importing the store into the agent.
func parseTarget(raw, protocol string) (target.Target, error) {
	if protocol != "" && !strings.Contains(raw, "://") {
		if _, ok := target.Lookup(protocol); !ok {
			return target.Target{}, fmt.Errorf("%w: unknown protocol %q", target.ErrInvalid, protocol)
		}
		t, err := target.Parse(protocol+"://"+raw, "")
		if err == nil {
			t.Raw = raw
		}
		return t, err
	}
	return target.Parse(raw, "")
}

// errOutside marks a target outside the allowed networks.
var errOutside = errors.New("outside the allowed networks")

// allowedAddress picks the address to dial for t. With no allow-list the
// probe dials the name as usual (""). Otherwise every address the name
// resolves to must be allowed, and the probe dials the checked address
// itself, so a second lookup (DNS rebinding) cannot reach elsewhere.
func (a *Agent) allowedAddress(ctx context.Context, t target.Target) (string, error) {
	if len(a.cfg.AllowNetworks) == 0 {
		return "", nil
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(t.Host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		ctx, cancel := context.WithTimeout(ctx, a.cfg.MaxJobTimeout)
		defer cancel()
		addrs, err = a.cfg.Resolver.LookupNetIP(ctx, "ip", t.Host)
		if err != nil {
			return "", err
		}
		if len(addrs) == 0 {
			return "", fmt.Errorf("%s has no addresses", t.Host)
		}
	}
	for _, ip := range addrs {
		if !a.allowed(ip) {
			return "", fmt.Errorf("%w: %s resolves to %s", errOutside, t.Host, ip)
		}
	}
	return netip.AddrPortFrom(addrs[0], uint16(t.Port)).String(), nil
}

func (a *Agent) allowed(ip netip.Addr) bool {
	// Prefix.Contains is false for zoned or 4-in-6 forms of an allowed
	// address; compare the plain address.
	ip = ip.WithZone("").Unmap()
	for _, p := range a.cfg.AllowNetworks {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// execute runs one job and returns its result; it never fails, since a
// failure is an observation (or a refusal) the server records.
func (a *Agent) execute(ctx context.Context, job agentlink.Job) agentlink.Result {
	res := agentlink.Result{JobID: job.JobID}
	t, err := parseTarget(job.Target, job.Protocol)
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
	addr, err := a.allowedAddress(ctx, t)
	if errors.Is(err, errOutside) {
		res.Refused = "target " + err.Error() + " (" + a.allowList() + ")"
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
	return res
}

func (a *Agent) allowList() string {
	s := make([]string, len(a.cfg.AllowNetworks))
	for i, p := range a.cfg.AllowNetworks {
		s[i] = p.String()
	}
	return "allowed: " + strings.Join(s, ", ")
}
