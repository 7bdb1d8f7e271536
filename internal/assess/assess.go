// Package assess judges what a probe observed: (Observation, Policy, now)
// → Result with a status and a list of problems. It does no network I/O of
// its own; AIA and revocation fetching are injected, so the same code runs
// in `certmon check` and in the server.
package assess

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
)

// More problem codes; result.go holds those of the original contract.
const (
	// CodeMalformedCertificate: a certificate the server sent does not
	// parse (critical and status UNKNOWN for the leaf, warning otherwise).
	CodeMalformedCertificate = "MALFORMED_CERTIFICATE"
	// CodeNoCertificate: the observation holds neither a certificate nor
	// an error (status UNKNOWN).
	CodeNoCertificate = "NO_CERTIFICATE"
)

// IssuerFetcher downloads the certificates at an AIA caIssuers URL.
type IssuerFetcher interface {
	FetchIssuer(ctx context.Context, url string) ([]*x509.Certificate, error)
}

// RevocationChecker decides whether leaf, issued by issuer, is revoked at
// now, given the stapled OCSP response (nil if none). Failures must yield
// revocation.Unknown, never Revoked.
type RevocationChecker interface {
	Check(ctx context.Context, leaf, issuer *x509.Certificate, staple []byte, now time.Time) revocation.Status
}

// Config wires an Assessor.
type Config struct {
	// Roots are the trusted roots (system roots plus --ca-file); nil
	// means the system pool.
	Roots *x509.CertPool
	// Issuers completes chains that lack intermediates; nil disables AIA.
	Issuers IssuerFetcher
	// Revocation checks the leaf; nil reports revocation "not_checked".
	Revocation RevocationChecker
	// Linter reports findings on the leaf when Policy.Lint is set.
	Linter func(leaf *x509.Certificate) []Problem
	Logger *slog.Logger
	// CacheSize bounds the verification cache in chains (0 means 10,000;
	// negative disables caching).
	CacheSize int
}

// Policy is what a check asks for.
type Policy struct {
	// WarnDays and CritDays are the EXPIRING thresholds (default 30, 7).
	WarnDays, CritDays int
	// Hostname is the name to verify: the SNI, or the target host. An IP
	// literal matches IP SANs. Empty means no name is checked.
	Hostname string
	// Revocation enables revocation checking (--revocation auto).
	Revocation bool
	// Lint runs Config.Linter on the leaf.
	Lint bool
}

// Assessor judges observations. It is safe for concurrent use.
type Assessor struct {
	cfg   Config
	roots *x509.CertPool
	cache *verifyCache
	log   *slog.Logger
	// verifies counts chain verifications that the cache did not spare.
	verifies atomic.Int64
}

// New returns an Assessor.
func New(cfg Config) *Assessor {
	a := &Assessor{cfg: cfg, roots: cfg.Roots, cache: newVerifyCache(cfg.CacheSize), log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.roots == nil {
		// Loaded once: x509 would otherwise consult the platform verifier
		// on some systems, which ignores VerifyOptions.CurrentTime.
		pool, err := x509.SystemCertPool()
		if err != nil {
			a.log.Warn("no system roots: every chain will be untrusted", "err", err)
			pool = x509.NewCertPool()
		}
		a.roots = pool
	}
	return a
}

// Assess turns an observation into a result, judged at now.
func (a *Assessor) Assess(ctx context.Context, obs *probe.Observation, pol Policy, now time.Time) Result {
	if pol.WarnDays == 0 {
		pol.WarnDays = 30
	}
	if pol.CritDays == 0 {
		pol.CritDays = 7
	}
	r := Result{
		Target:       obs.Target.Raw,
		Protocol:     obs.Target.Protocol,
		Address:      obs.Address,
		SNI:          obs.SNI,
		Problems:     []Problem{},
		Chain:        []Certificate{},
		Verification: Verification{Revocation: RevocationNotChecked},
	}
	if obs.Err != nil {
		msg := obs.Err.Error()
		r.Error = &msg
	}
	if obs.HandshakeComplete() {
		r.TLS = &TLSInfo{
			Version:             probe.VersionName(obs.Version),
			Cipher:              probe.CipherName(obs.CipherSuite),
			HandshakeMS:         obs.Handshake.Milliseconds(),
			OCSPStapled:         len(obs.OCSPStaple) > 0,
			ClientAuthRequested: obs.ClientAuthRequested,
		}
	}
	j := judgement{Result: &r}
	switch {
	case len(obs.Chain) > 0:
		// A chain that arrived before the handshake failed (a server
		// demanding a client certificate) is judged like any other; the
		// failure stays in Result.Error.
		a.judgeChain(ctx, &j, obs, pol, now)
	case obs.Err != nil:
		j.add(probeProblem(obs))
	default:
		j.unknown = true
		j.add(Problem{Code: CodeNoCertificate, Severity: SeverityCritical, Message: "no certificate was received"})
	}
	if obs.HandshakeComplete() && obs.Version < tls.VersionTLS12 {
		j.add(Problem{Code: CodeOldProtocol, Severity: SeverityWarning,
			Message: fmt.Sprintf("server negotiated %s; TLS 1.2 or later is expected", probe.VersionName(obs.Version))})
	}
	r.Status = j.status()
	return r
}

// judgement collects problems while a result is built.
type judgement struct {
	*Result
	// unknown marks a result that could not be judged.
	unknown bool
}

func (j *judgement) add(p ...Problem) { j.Problems = append(j.Problems, p...) }

func (j *judgement) status() Status {
	if j.unknown {
		return Unknown
	}
	s := OK
	for _, p := range j.Problems {
		switch p.Severity {
		case SeverityCritical:
			s = Worse(s, Critical)
		case SeverityWarning:
			s = Worse(s, Warning)
		}
	}
	return s
}

// probeProblem describes a probe that failed before any certificate came.
func probeProblem(obs *probe.Observation) Problem {
	e := obs.Err
	addr := obs.Address
	if addr == "" {
		addr = obs.Target.HostPort()
	}
	p := Problem{Code: CodeHandshakeFailed, Severity: SeverityCritical}
	switch e.Stage {
	case probe.StageResolve:
		p.Code, p.Message = CodeUnreachable, fmt.Sprintf("cannot resolve %s: %s", obs.Target.Host, e.Message)
	case probe.StageConnect:
		p.Code = CodeUnreachable
		if e.Timeout {
			p.Message = fmt.Sprintf("timed out connecting to %s", addr)
		} else {
			p.Message = fmt.Sprintf("cannot connect to %s: %s", addr, e.Message)
		}
	case probe.StageStartTLS:
		if e.Timeout {
			p.Message = "timed out during the STARTTLS dialogue"
		} else {
			p.Message = "STARTTLS failed: " + e.Message
		}
	default:
		if e.Timeout {
			p.Message = "timed out during the TLS handshake"
		} else {
			p.Message = "TLS handshake failed: " + e.Message
		}
	}
	return p
}

// judgeChain fills the chain, verification and the problems of a chain.
func (a *Assessor) judgeChain(ctx context.Context, j *judgement, obs *probe.Observation, pol Policy, now time.Time) {
	sums, key := chainSums(obs.Chain)
	p, v := a.cache.lookup(key)
	if p == nil {
		p = parseChain(obs.Chain, sums, obs.Parsed)
	}
	for i, d := range p.desc {
		d.SANs = slices.Clone(d.SANs) // results must not share the cached slice
		if c := p.certs[i]; c != nil {
			d.DaysLeft = daysLeft(c.NotAfter, now)
		}
		j.Chain = append(j.Chain, d)
	}
	for i, err := range p.errs[1:] {
		if err != nil {
			j.add(Problem{Code: CodeMalformedCertificate, Severity: SeverityWarning,
				Message: fmt.Sprintf("certificate #%d sent by the server does not parse: %v", i+2, err)})
		}
	}
	leaf := p.leaf()
	if leaf == nil {
		j.unknown = true
		j.add(Problem{Code: CodeMalformedCertificate, Severity: SeverityCritical,
			Message: fmt.Sprintf("the server's certificate does not parse: %v", p.errs[0])})
		return
	}

	t := verifyTime(leaf, now)
	if v == nil || !v.holds(t) {
		v = a.cache.verdict(ctx, key, p, t, func() *verdict { return a.verify(ctx, p, t) })
	}

	// judged are the certificates whose dates count; weak are those whose
	// key and signature count (below the root).
	var judged, weak []*x509.Certificate
	selfSigned := p.selfSigned[0]
	j.Verification.Trusted = v.trusted
	switch {
	case v.trusted:
		judged, weak = v.path, v.path
		if n := len(v.path); n > 1 {
			weak = v.path[:n-1]
			if !p.sent(v.path[n-1]) {
				// A root from the trust store is not the server's to renew.
				judged = weak
			}
		}
		j.Verification.ChainComplete = !v.viaAIA
		if v.viaAIA {
			j.add(Problem{Code: CodeIncompleteChain, Severity: SeverityWarning,
				Message: "server omits intermediate certificates (" + missing(p, v.path) + "); the chain was completed via AIA, which many clients do not do"})
		}
	case selfSigned:
		judged, weak = p.linked(), p.linked()
		j.Verification.ChainComplete = true
		j.add(Problem{Code: CodeSelfSigned, Severity: SeverityCritical,
			Message: fmt.Sprintf("certificate %s is self-signed and not trusted", name(leaf))})
	default:
		judged, weak = p.linked(), p.linked()
		top := p.linked()[len(p.linked())-1]
		if p.isSelf(top) {
			// Nothing is missing; the root is just not trusted.
			weak = p.linked()[:len(p.linked())-1]
			j.Verification.ChainComplete = true
		}
		j.add(Problem{Code: CodeUntrusted, Severity: SeverityCritical, Message: v.reason})
	}

	// An empty Hostname means nothing to check: hostname_match stays false
	// and no problem is raised, since no name was asked for.
	if pol.Hostname != "" {
		if err := leaf.VerifyHostname(pol.Hostname); err == nil {
			j.Verification.HostnameMatch = true
		} else {
			j.add(Problem{Code: CodeHostnameMismatch, Severity: SeverityCritical,
				Message: fmt.Sprintf("certificate %s does not match %q (it names %s)", name(leaf), pol.Hostname, names(leaf))})
		}
	}

	for i, c := range judged {
		j.add(dateProblems(c, i == 0, now, pol)...)
	}
	for _, c := range weak {
		j.add(weakProblems(c, p.isSelf(c))...)
	}

	if pol.Revocation && a.cfg.Revocation != nil {
		a.checkRevocation(ctx, j, obs, v, p, now)
	}
	if pol.Lint && a.cfg.Linter != nil {
		j.add(p.lintLeaf(a.cfg.Linter)...)
	}
}

// checkRevocation asks the RevocationChecker about the leaf.
func (a *Assessor) checkRevocation(ctx context.Context, j *judgement, obs *probe.Observation, v *verdict, p *parsedChain, now time.Time) {
	leaf := p.leaf()
	path := p.linked()
	if v.trusted {
		path = v.path
	}
	switch {
	case len(path) < 2:
		// A self-signed or directly trusted leaf has no issuer to ask.
		return
	case now.After(leaf.NotAfter):
		// CAs drop expired certificates from CRLs and OCSP; an answer
		// would mean nothing, and EXPIRED already says enough.
		return
	}
	st := a.cfg.Revocation.Check(ctx, leaf, path[1], obs.OCSPStaple, now)
	switch st.State {
	case revocation.Good:
		j.Verification.Revocation = RevocationGood
	case revocation.Revoked:
		j.Verification.Revocation = RevocationRevoked
		msg := fmt.Sprintf("certificate %s was revoked", name(leaf))
		if !st.RevokedAt.IsZero() {
			msg += " on " + st.RevokedAt.UTC().Format(time.DateOnly)
		}
		if st.Reason != "" {
			msg += " (" + st.Reason + ")"
		}
		if st.Source != "" {
			msg += " according to " + st.Source
		}
		j.add(Problem{Code: CodeRevoked, Severity: SeverityCritical, Message: msg})
	default:
		j.Verification.Revocation = RevocationUnknown
		a.log.Debug("revocation status unknown", "target", obs.Target.Raw, "certificate", name(leaf), "reason", st.Reason)
	}
}

// dateProblems reports a certificate out of its validity or close to its
// end. "Within N days" means fewer than N whole days remain, so that
// days_left < N.
func dateProblems(c *x509.Certificate, isLeaf bool, now time.Time, pol Policy) []Problem {
	what := "certificate " + name(c)
	if !isLeaf {
		what = "CA certificate " + name(c)
	}
	day := c.NotAfter.UTC().Format(time.DateOnly)
	switch left := daysLeft(c.NotAfter, now); {
	case now.Before(c.NotBefore):
		return []Problem{{Code: CodeNotYetValid, Severity: SeverityCritical,
			Message: fmt.Sprintf("%s is not valid before %s", what, c.NotBefore.UTC().Format(time.RFC3339))}}
	case now.After(c.NotAfter):
		return []Problem{{Code: CodeExpired, Severity: SeverityCritical,
			Message: expiredAgo(what, int(now.Sub(c.NotAfter)/(24*time.Hour)), day)}}
	case left < pol.CritDays:
		return []Problem{{Code: CodeExpiring, Severity: SeverityCritical, Message: expiresIn(what, left, day)}}
	case left < pol.WarnDays:
		return []Problem{{Code: CodeExpiring, Severity: SeverityWarning, Message: expiresIn(what, left, day)}}
	}
	return nil
}

func expiredAgo(what string, days int, day string) string {
	if days == 0 {
		return fmt.Sprintf("%s expired less than a day ago (%s)", what, day)
	}
	return fmt.Sprintf("%s expired %s ago (%s)", what, plural(days, "day"), day)
}

func expiresIn(what string, left int, day string) string {
	if left == 0 {
		return fmt.Sprintf("%s expires in less than a day (%s)", what, day)
	}
	return fmt.Sprintf("%s expires in %s (%s)", what, plural(left, "day"), day)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// weakProblems reports a short key or a broken signature hash. The
// signature of a self-signed certificate protects nothing, so it does not
// count.
func weakProblems(c *x509.Certificate, selfSigned bool) []Problem {
	var out []Problem
	typ, bits := keyInfo(c)
	if typ == "RSA" && bits < 2048 || typ == "ECDSA" && bits < 256 {
		out = append(out, Problem{Code: CodeWeakKey, Severity: SeverityCritical,
			Message: fmt.Sprintf("certificate %s has a weak %s key (%d bits)", name(c), typ, bits)})
	}
	if !selfSigned {
		switch c.SignatureAlgorithm {
		case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
			out = append(out, Problem{Code: CodeWeakSignature, Severity: SeverityCritical,
				Message: fmt.Sprintf("certificate %s is signed with %s", name(c), c.SignatureAlgorithm)})
		}
	}
	return out
}

// missing names the certificates of path that the server did not send,
// leaving out the trust anchor.
func missing(p *parsedChain, path []*x509.Certificate) string {
	var s string
	for _, c := range path[1 : len(path)-1] {
		if !p.sent(c) {
			if s != "" {
				s += ", "
			}
			s += name(c)
		}
	}
	return s
}

// names lists what a certificate is valid for, shortened for messages.
func names(c *x509.Certificate) string {
	var all []string
	all = append(all, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		all = append(all, ip.String())
	}
	switch {
	case len(all) == 0:
		return "no DNS or IP names"
	case len(all) > 5:
		return fmt.Sprintf("%s and %d more", strings.Join(all[:5], ", "), len(all)-5)
	}
	return strings.Join(all, ", ")
}
