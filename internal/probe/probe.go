// Package probe dials a target, speaks its STARTTLS preamble if any, does the
// TLS handshake and returns an Observation. It fetches; it never judges:
// an expired, untrusted or mismatched certificate is recorded like any other.
package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/certmon/certmon/internal/target"
)

// Defaults used when Options leave a field zero.
const (
	DefaultTimeout = 10 * time.Second
	// MaxChainCerts bounds how many certificates a server may send; real
	// chains have two to four.
	MaxChainCerts = 20
)

// Dialer opens TCP connections; a proxy dialer satisfies it.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Options configure a Prober. The zero value is usable.
type Options struct {
	// Timeout bounds one attempt: connect, preamble and handshake together.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one that never
	// received a certificate.
	Retries int
	// RetryBackoff is the first pause between attempts; it doubles.
	RetryBackoff time.Duration
	// ClientCertificate is offered when the server asks for one.
	ClientCertificate *tls.Certificate
	// Dialer replaces the direct TCP dialer (proxies, tests).
	Dialer Dialer
	// Resolver is the direct dialer's resolver.
	Resolver *net.Resolver
	// Lookup resolves names for Addresses and Within (nil: Resolver).
	Lookup Lookup
	// XMPPHost overrides the XMPP stream domain.
	XMPPHost string
	// MinVersion/MaxVersion restrict the offered TLS versions (0: Go's
	// widest: TLS 1.0 to 1.3, so old servers are still observed).
	MinVersion, MaxVersion uint16
}

// Lookup resolves a name; *net.Resolver satisfies it.
type Lookup interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Prober runs probes with one set of Options. It is safe for concurrent use.
type Prober struct {
	opts Options
}

// New returns a Prober with defaults filled in.
func New(o Options) *Prober {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 500 * time.Millisecond
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{KeepAlive: -1, Resolver: o.Resolver}
	}
	if o.Lookup == nil {
		o.Lookup = o.Resolver
	}
	if o.MinVersion == 0 {
		o.MinVersion = tls.VersionTLS10
	}
	return &Prober{opts: o}
}

// Request is one probe: a target and the SNI to send.
type Request struct {
	Target target.Target
	// SNI is sent in the ClientHello; empty sends none.
	SNI string
	// Address, when set, is dialed instead of Target.HostPort() (one of
	// several resolved addresses).
	Address string
}

// DefaultSNI is the name to send when the user did not choose one: the host
// for a DNS name, nothing for an IP literal.
func DefaultSNI(t target.Target) string {
	if t.IsIP() {
		return ""
	}
	return t.Host
}

// Probe runs one request with retries and returns what it saw.
func (p *Prober) Probe(ctx context.Context, req Request) *Observation {
	var obs *Observation
	backoff := p.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		obs = p.once(ctx, req)
		obs.Attempts = attempt
		if obs.Err == nil || len(obs.Chain) > 0 || attempt > p.opts.Retries || ctx.Err() != nil {
			return obs
		}
		// Full jitter keeps a batch of failing targets from retrying in step.
		pause := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return obs
		case <-time.After(pause):
		}
		backoff *= 2
	}
}

// Addresses resolves every A/AAAA address of the target, for probing each
// separately (load balancers serve different certificates).
func (p *Prober) Addresses(ctx context.Context, t target.Target) ([]string, error) {
	if t.IsIP() {
		return []string{t.HostPort()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	ips, err := p.opts.Lookup.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip.Unmap().String(), strconv.Itoa(t.Port)))
	}
	return out, nil
}

func (p *Prober) once(parent context.Context, req Request) *Observation {
	obs := &Observation{Target: req.Target, SNI: req.SNI, StartedAt: time.Now().UTC()}
	addr := req.Address
	if addr == "" {
		addr = req.Target.HostPort()
	}
	obs.Address = addr
	ctx, cancel := context.WithTimeout(parent, p.opts.Timeout)
	defer cancel()

	start := time.Now()
	conn, err := p.opts.Dialer.DialContext(ctx, "tcp", addr)
	obs.Connect = time.Since(start)
	if err != nil {
		obs.Err = newError(dialStage(err), err)
		return obs
	}
	defer conn.Close()
	if tcp, ok := conn.RemoteAddr().(*net.TCPAddr); ok && req.Address == "" {
		if _, isProxy := p.opts.Dialer.(proxyDialer); !isProxy {
			obs.Address = tcp.String()
		}
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Closing the connection when ctx ends unblocks reads that a
	// deadline alone would not (a cancelled parent context).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if name := req.Target.StartTLS; name != "" {
		start = time.Now()
		err := p.preamble(conn, name, req)
		obs.StartTLS = time.Since(start)
		if err != nil {
			obs.Err = newError(StageStartTLS, err)
			return obs
		}
	}

	var captured [][]byte
	cfg := &tls.Config{
		ServerName:         req.SNI,
		InsecureSkipVerify: true, // judged later by package assess, never here
		MinVersion:         p.opts.MinVersion,
		MaxVersion:         p.opts.MaxVersion,
		// Offer every suite Go implements, insecure ones too, so weak
		// servers are observed rather than unreachable.
		CipherSuites: offeredCipherSuites,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > MaxChainCerts {
				return fmt.Errorf("server sent %d certificates, more than the limit of %d", len(raw), MaxChainCerts)
			}
			captured = cloneChain(raw)
			return nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			obs.ClientAuthRequested = true
			if p.opts.ClientCertificate != nil {
				return p.opts.ClientCertificate, nil
			}
			return &tls.Certificate{}, nil
		},
	}
	if req.SNI == "" {
		// crypto/tls refuses InsecureSkipVerify without ServerName only
		// when both are empty; an IP literal must not be sent as SNI.
		cfg.ServerName = ""
	}
	tc := tls.Client(conn, cfg)
	start = time.Now()
	err = tc.HandshakeContext(ctx)
	obs.Handshake = time.Since(start)
	obs.Chain = captured
	if err != nil {
		obs.Err = newError(StageHandshake, err)
		return obs
	}
	st := tc.ConnectionState()
	obs.Version = st.Version
	obs.CipherSuite = st.CipherSuite
	obs.OCSPStaple = st.OCSPResponse
	obs.Parsed = st.PeerCertificates
	if obs.ClientAuthRequested && p.opts.ClientCertificate == nil && st.Version == tls.VersionTLS13 {
		// In TLS 1.3 a server that requires a certificate rejects us only
		// after our Finished; read briefly to learn whether it did.
		if err := awaitRejection(tc); err != nil {
			obs.Err = newError(StagePostHandshake, err)
		}
	}
	return obs
}

func (p *Prober) preamble(conn net.Conn, name string, req Request) error {
	fn, ok := preambles[name]
	if !ok {
		return fmt.Errorf("no STARTTLS dialogue for %q", name)
	}
	pc := newPreambleConn(conn)
	host := req.SNI
	if host == "" {
		host = req.Target.Host
	}
	err := fn(pc, PreambleOptions{Host: host, XMPPHost: p.opts.XMPPHost, ClientName: "certmon.invalid"})
	if err != nil {
		return err
	}
	if n := pc.Buffered(); n > 0 {
		return fmt.Errorf("server sent %d unexpected bytes after agreeing to start TLS", n)
	}
	return nil
}

// awaitRejection waits up to a short while for a TLS 1.3 server's alert
// after the handshake; silence means the server accepted us.
func awaitRejection(tc *tls.Conn) error {
	_ = tc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	_, err := tc.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	// A received alert surfaces as a "remote error" OpError; its alert type
	// is unexported in crypto/tls.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return fmt.Errorf("server rejected the connection after the handshake: %w", err)
	}
	return nil
}

func dialStage(err error) Stage {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return StageResolve
	}
	return StageConnect
}

func cloneChain(raw [][]byte) [][]byte {
	out := make([][]byte, len(raw))
	for i, c := range raw {
		out[i] = append([]byte(nil), c...)
	}
	return out
}

// offeredCipherSuites is read-only after init.
var offeredCipherSuites = allCipherSuites()

func allCipherSuites() []uint16 {
	var ids []uint16
	for _, s := range tls.CipherSuites() {
		ids = append(ids, s.ID)
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids = append(ids, s.ID)
	}
	return ids
}
