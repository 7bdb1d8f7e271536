package assess

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"sync"
	"time"
)

// parsedChain is the time-independent part of judging a chain as sent: it
// is computed once per distinct chain and cached with the verdict.
type parsedChain struct {
	// certs holds the parsed certificates in the order sent, nil where the
	// DER does not parse (errs says why).
	certs []*x509.Certificate
	errs  []error
	// desc describes each certificate; DaysLeft is filled per assessment.
	desc       []Certificate
	selfSigned []bool
	// path is the leaf followed by the sent certificates that chain from
	// it by issuer and signature: what is judged when trust fails. It costs
	// signature checks that x509.Verify repeats, so it is computed only on
	// the paths that need it.
	pathOnce sync.Once
	path     []*x509.Certificate

	// lint holds the linter's findings on the leaf, computed on first use
	// (zlint takes milliseconds; its findings do not depend on the time).
	lintOnce sync.Once
	lint     []Problem
}

// lintLeaf runs linter on the leaf once per parsed chain.
func (p *parsedChain) lintLeaf(linter func(*x509.Certificate) []Problem) []Problem {
	p.lintOnce.Do(func() { p.lint = linter(p.leaf()) })
	return p.lint
}

// parseChain parses the chain; parsed, when it holds the same number of
// certificates, is crypto/tls's parse of it and is used instead.
func parseChain(ders [][]byte, sums [][32]byte, parsed []*x509.Certificate) *parsedChain {
	p := &parsedChain{
		certs:      make([]*x509.Certificate, len(ders)),
		errs:       make([]error, len(ders)),
		desc:       make([]Certificate, len(ders)),
		selfSigned: make([]bool, len(ders)),
	}
	for i, der := range ders {
		if len(parsed) == len(ders) && parsed[i] != nil && bytes.Equal(parsed[i].Raw, der) {
			p.certs[i] = parsed[i]
		} else {
			p.certs[i], p.errs[i] = x509.ParseCertificate(der)
		}
		if p.errs[i] != nil {
			p.certs[i] = nil
		} else {
			p.selfSigned[i] = isSelfSigned(p.certs[i])
		}
		p.desc[i] = describe(p.certs[i], sums[i], p.selfSigned[i])
	}
	return p
}

// linked returns the leaf and the sent certificates chaining from it.
func (p *parsedChain) linked() []*x509.Certificate {
	p.pathOnce.Do(func() {
		if p.certs[0] != nil {
			p.path = p.link()
		}
	})
	return p.path
}

// leaf returns the first certificate, nil if it did not parse.
func (p *parsedChain) leaf() *x509.Certificate { return p.certs[0] }

// sent reports whether c is one of the certificates the server sent.
func (p *parsedChain) sent(c *x509.Certificate) bool {
	return slices.ContainsFunc(p.certs, func(s *x509.Certificate) bool { return s != nil && s.Equal(c) })
}

// isSelf reports whether c is self-signed, using the cached answer for
// certificates that were sent.
func (p *parsedChain) isSelf(c *x509.Certificate) bool {
	for i, s := range p.certs {
		if s == c {
			return p.selfSigned[i]
		}
	}
	return isSelfSigned(c)
}

// link follows issuers from the leaf through the sent certificates, in
// whatever order the server sent them, stopping at a self-signed one.
func (p *parsedChain) link() []*x509.Certificate {
	path := []*x509.Certificate{p.certs[0]}
	used := make([]bool, len(p.certs))
	used[0] = true
	for cur := 0; !p.selfSigned[cur]; {
		next := -1
		for i, c := range p.certs {
			if !used[i] && c != nil && signedBy(p.certs[cur], c) {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		used[next] = true
		path = append(path, p.certs[next])
		cur = next
	}
	return path
}

// signedBy reports whether parent's key signed child. SHA-1 and MD5 count
// (they are reported as WEAK_SIGNATURE, not hidden as a broken chain).
func signedBy(child, parent *x509.Certificate) bool {
	if !bytes.Equal(child.RawIssuer, parent.RawSubject) {
		return false
	}
	err := parent.CheckSignature(child.SignatureAlgorithm, child.RawTBSCertificate, child.Signature)
	var insecure x509.InsecureAlgorithmError
	if errors.As(err, &insecure) {
		// The signature cannot be checked; trust the names and key IDs.
		return len(child.AuthorityKeyId) == 0 || len(parent.SubjectKeyId) == 0 ||
			bytes.Equal(child.AuthorityKeyId, parent.SubjectKeyId)
	}
	return err == nil
}

// isSelfSigned reports whether c names itself as issuer and its own key
// signed it. (CheckSignatureFrom would refuse a non-CA leaf as parent.)
func isSelfSigned(c *x509.Certificate) bool { return signedBy(c, c) }

// describe renders a certificate for the JSON contract. c is nil for DER
// that does not parse: only the fingerprint is known.
func describe(c *x509.Certificate, sum [32]byte, selfSigned bool) Certificate {
	d := Certificate{SHA256: hex.EncodeToString(sum[:]), SANs: []string{}}
	if c == nil {
		return d
	}
	d.Subject = c.Subject.String()
	d.Issuer = c.Issuer.String()
	d.Serial = c.SerialNumber.Text(16)
	d.NotBefore = c.NotBefore.UTC().Format(time.RFC3339)
	d.NotAfter = c.NotAfter.UTC().Format(time.RFC3339)
	d.KeyType, d.KeyBits = keyInfo(c)
	d.SignatureAlgorithm = c.SignatureAlgorithm.String()
	d.SANs = append(d.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		d.SANs = append(d.SANs, ip.String())
	}
	d.SANs = append(d.SANs, c.EmailAddresses...)
	for _, u := range c.URIs {
		d.SANs = append(d.SANs, u.String())
	}
	d.SelfSigned = selfSigned
	d.IsCA = c.IsCA
	return d
}

// keyInfo names the public key type and its size in bits.
func keyInfo(c *x509.Certificate) (string, int) {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ECDSA", 0
		}
		return "ECDSA", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	}
	return c.PublicKeyAlgorithm.String(), 0
}

// daysLeft is floor((notAfter-now)/24h): negative once expired, 0 on the
// last day.
func daysLeft(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// chainSums returns the SHA-256 of each DER and the cache key of the whole
// chain (a hash over those hashes, so certificate boundaries count).
func chainSums(ders [][]byte) ([][32]byte, [32]byte) {
	sums := make([][32]byte, len(ders))
	h := sha256.New()
	for i, der := range ders {
		sums[i] = sha256.Sum256(der)
		h.Write(sums[i][:])
	}
	var key [32]byte
	h.Sum(key[:0])
	return sums, key
}

// name is how messages refer to a certificate: its CN, or the whole
// subject when it has none.
func name(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	if s := c.Subject.String(); s != "" {
		return s
	}
	return "with serial " + c.SerialNumber.Text(16)
}
