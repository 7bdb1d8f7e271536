package assess

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
)

// verdict is the outcome of verifying one chain against the roots.
type verdict struct {
	trusted bool
	// path is the verified chain, leaf first and trust anchor last; nil
	// when untrusted.
	path []*x509.Certificate
	// viaAIA is set when path needed certificates the server did not send
	// and AIA supplied.
	viaAIA bool
	// reason says why the chain is not trusted.
	reason string
	// from and until bound the verify times (see verifyTime) for which
	// this verdict holds.
	from, until time.Time
}

func (v *verdict) holds(t time.Time) bool { return !t.Before(v.from) && !t.After(v.until) }

// shortTTL is how long a verdict that no validity window backs (untrusted,
// or trusted only at a shifted instant) is reused.
const shortTTL = 5 * time.Minute

// AIA limits: how many caIssuers URLs of one certificate are tried, and
// how many missing levels are fetched.
const (
	maxAIAURLs  = 2
	maxAIADepth = 3
)

// errNoAIA: a certificate names no caIssuers URL, nothing to explain.
var errNoAIA = errors.New("no AIA issuer URL")

// verifyTime is now clamped into the leaf's validity: trust is judged
// apart from expiry, so an expired certificate from a trusted CA is
// reported EXPIRED and trusted, not UNTRUSTED.
func verifyTime(leaf *x509.Certificate, now time.Time) time.Time {
	return clamp(now, leaf.NotBefore, leaf.NotAfter)
}

func clamp(t, from, until time.Time) time.Time {
	if t.Before(from) {
		return from
	}
	if t.After(until) {
		return until
	}
	return t
}

// validity returns the intersection of the validity periods of certs.
func validity(certs []*x509.Certificate) (from, until time.Time) {
	for i, c := range certs {
		if i == 0 || c.NotBefore.After(from) {
			from = c.NotBefore
		}
		if i == 0 || c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	return from, until
}

// verify judges trust of a parsed chain at verify time t: first the chain
// as sent; then, if a certificate above the leaf is out of its validity,
// at an instant when all sent ones were valid; then completed by AIA.
func (a *Assessor) verify(ctx context.Context, p *parsedChain, t time.Time) *verdict {
	a.verifies.Add(1)
	leaf := p.leaf()
	inter := x509.NewCertPool()
	for _, c := range p.certs[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	chains, err := a.verifyAt(leaf, inter, t)
	if err == nil {
		v := &verdict{trusted: true, path: shortest(chains)}
		v.from, v.until = validity(v.path)
		return v
	}

	if from, until := validity(p.linked()); !from.After(until) && (t.Before(from) || t.After(until)) {
		if chains, err := a.verifyAt(leaf, inter, clamp(t, from, until)); err == nil {
			return &verdict{trusted: true, path: shortest(chains), from: t.Add(-shortTTL), until: t.Add(shortTTL)}
		}
	}

	top := p.linked()[len(p.linked())-1]
	var aiaErr error
	if a.cfg.Issuers != nil {
		for depth := 0; depth < maxAIADepth && !p.isSelf(top); depth++ {
			issuer, err := a.fetchIssuer(ctx, top, inter)
			if err != nil {
				if err != errNoAIA {
					aiaErr = err
					a.log.Debug("AIA completion failed", "certificate", name(top), "err", err)
				}
				break
			}
			if chains, err := a.verifyAt(leaf, inter, t); err == nil {
				v := &verdict{trusted: true, viaAIA: true, path: shortest(chains)}
				v.from, v.until = validity(v.path)
				return v
			}
			top = issuer
		}
	}
	return &verdict{reason: a.untrustedReason(p, top, t, err, aiaErr), from: t.Add(-shortTTL), until: t.Add(shortTTL)}
}

// shortest picks the path to judge among those x509 found: the shortest,
// which is what clients with an up-to-date trust store build (a path
// through a cross-signed old root is longer).
func shortest(chains [][]*x509.Certificate) []*x509.Certificate {
	return slices.MinFunc(chains, func(a, b []*x509.Certificate) int { return len(a) - len(b) })
}

// verifyAt runs x509 verification at t for a TLS server certificate,
// falling back to any key usage: certmon judges trust, and a certificate
// used for the wrong purpose is not what it reports.
func (a *Assessor) verifyAt(leaf *x509.Certificate, inter *x509.CertPool, t time.Time) ([][]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:         a.roots,
		Intermediates: inter,
		CurrentTime:   t,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	chains, err := leaf.Verify(opts)
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
		chains, err = leaf.Verify(opts)
	}
	return chains, err
}

// fetchIssuer downloads the issuer of c from its AIA caIssuers URLs and
// adds what it got to inter.
func (a *Assessor) fetchIssuer(ctx context.Context, c *x509.Certificate, inter *x509.CertPool) (*x509.Certificate, error) {
	urls := c.IssuingCertificateURL
	if len(urls) == 0 {
		return nil, errNoAIA
	}
	var errs []error
	for _, u := range urls[:min(len(urls), maxAIAURLs)] {
		certs, err := a.cfg.Issuers.FetchIssuer(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, issuer := range certs {
			if signedBy(c, issuer) {
				for _, f := range certs {
					inter.AddCert(f)
				}
				return issuer, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s does not hold the issuer of %s", u, name(c)))
	}
	return nil, errors.Join(errs...)
}

// untrustedReason explains a failed verification; top is the highest
// certificate reached from the leaf.
func (a *Assessor) untrustedReason(p *parsedChain, top *x509.Certificate, t time.Time, err, aiaErr error) string {
	switch {
	case top != p.leaf() && p.isSelf(top):
		return fmt.Sprintf("certificate chain ends in %s, which is not a trusted root", name(top))
	case !p.isSelf(top) && (top == p.leaf() || !a.trustedAlone(top, t)):
		msg := fmt.Sprintf("the issuer of %s (%s) is not a trusted root and the server did not send it", name(top), top.Issuer)
		if aiaErr != nil {
			msg += "; AIA: " + aiaErr.Error()
		}
		return msg
	}
	// The top is trusted, so something below it fails (a bad signature,
	// a name constraint): the x509 error says what.
	return "certificate chain is not trusted: " + err.Error()
}

// trustedAlone reports whether c, a CA certificate, chains to the roots.
func (a *Assessor) trustedAlone(c *x509.Certificate, t time.Time) bool {
	_, err := c.Verify(x509.VerifyOptions{Roots: a.roots, CurrentTime: clamp(t, c.NotBefore, c.NotAfter),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}
