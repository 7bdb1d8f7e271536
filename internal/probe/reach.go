package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/certmon/certmon/internal/target"
)

// Reach limits the addresses a prober may dial: a self-hosted agent's
// allow-list, the built-in agent's deny list. Names are resolved first and
// every address checked; the probe then dials a checked address, so a
// second DNS answer cannot widen the reach.
type Reach struct {
	// Allow, when not empty, is the only networks that may be dialed.
	Allow []netip.Prefix
	// Deny is never dialed, even when Allow holds it.
	Deny []netip.Prefix
}

// Empty reports whether r restricts nothing.
func (r Reach) Empty() bool { return len(r.Allow) == 0 && len(r.Deny) == 0 }

// permits returns why a is out of reach, or nil.
func (r Reach) permits(a netip.Addr) error {
	// Prefix.Contains is false for zoned or 4-in-6 forms of an address.
	a = a.WithZone("").Unmap()
	for _, p := range r.Deny {
		if p.Contains(a) {
			return fmt.Errorf("%s is in the denied network %s", a, p)
		}
	}
	if len(r.Allow) == 0 {
		return nil
	}
	for _, p := range r.Allow {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("%s is outside the allowed networks", a)
}

// OutOfReachError says a target may not be probed from here.
type OutOfReachError struct {
	Target string
	Reason error
}

func (e *OutOfReachError) Error() string {
	return fmt.Sprintf("%s may not be probed from here: %v", e.Target, e.Reason)
}

// ParsePrefixes reads CIDRs ("10.0.0.0/8", "fd00::/8"); a bare address is
// a single-address prefix.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network (CIDR such as 10.0.0.0/8) or address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Within resolves t and returns the address to dial ("ip:port") if every
// address of the name is within reach, or an *OutOfReachError. A lookup
// failure is returned as is (the probe reports it as unreachable).
func (p *Prober) Within(ctx context.Context, t target.Target, r Reach) (string, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(t.Host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
		defer cancel()
		ips, err := p.opts.Lookup.LookupNetIP(ctx, "ip", t.Host)
		if err != nil {
			return "", err
		}
		addrs = ips
	}
	if len(addrs) == 0 {
		return "", &net.DNSError{Err: "no addresses", Name: t.Host, IsNotFound: true}
	}
	for _, a := range addrs {
		if err := r.permits(a); err != nil {
			return "", &OutOfReachError{Target: t.Raw, Reason: err}
		}
	}
	return net.JoinHostPort(addrs[0].Unmap().String(), strconv.Itoa(t.Port)), nil
}
