// Package certtest mints CAs, chains and TLS/STARTTLS servers for tests.
// Every certificate is made in memory, with validity relative to a caller's
// fixed instant, so expiry logic is tested at known times.
package certtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// Now is the fixed instant tests judge at unless they choose another.
var Now = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

var serial atomic.Int64

// Cert is a certificate with its key.
type Cert struct {
	Cert *x509.Certificate
	DER  []byte
	Key  crypto.Signer
}

// PEM returns the certificate as PEM.
func (c *Cert) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.DER})
}

// KeyPEM returns the private key as PKCS#8 PEM.
func (c *Cert) KeyPEM() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Template is what a mutator may change before signing.
type Template = x509.Certificate

// Option changes a template (and may replace the key) before signing.
type Option func(t *Template, key *crypto.Signer)

// ECKey returns a fresh P-256 key; keys are cheap, tests make many.
func ECKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// WithKey sets the subject key.
func WithKey(k crypto.Signer) Option { return func(_ *Template, key *crypto.Signer) { *key = k } }

// WithRSA gives the certificate an RSA key of the given size.
func WithRSA(bits int) Option {
	return func(_ *Template, key *crypto.Signer) {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		*key = k
	}
}

// WithValidity sets NotBefore/NotAfter.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(t *Template, _ *crypto.Signer) { t.NotBefore, t.NotAfter = notBefore, notAfter }
}

// WithDNS sets the DNS SANs.
func WithDNS(names ...string) Option {
	return func(t *Template, _ *crypto.Signer) { t.DNSNames = names }
}

// WithIPs sets the IP SANs.
func WithIPs(ips ...string) Option {
	return func(t *Template, _ *crypto.Signer) {
		t.IPAddresses = nil
		for _, s := range ips {
			t.IPAddresses = append(t.IPAddresses, net.ParseIP(s))
		}
	}
}

// WithCN sets the subject common name.
func WithCN(cn string) Option {
	return func(t *Template, _ *crypto.Signer) { t.Subject.CommonName = cn }
}

// WithSignatureAlgorithm forces the signature algorithm (e.g. SHA1WithRSA;
// the issuer must then have an RSA key).
func WithSignatureAlgorithm(a x509.SignatureAlgorithm) Option {
	return func(t *Template, _ *crypto.Signer) { t.SignatureAlgorithm = a }
}

// With applies an arbitrary change.
func With(f func(t *Template)) Option {
	return func(t *Template, _ *crypto.Signer) { f(t) }
}

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert
}

// NewRootCA makes a self-signed root valid from Now-1y to Now+10y.
func NewRootCA(name string, opts ...Option) *CA {
	t, key := caTemplate(name, 10, opts)
	return &CA{Cert: sign(t, t, key.Public(), key, key)}
}

// Intermediate issues a sub-CA valid from Now-1y to Now+5y.
func (ca *CA) Intermediate(name string, opts ...Option) *CA {
	t, key := caTemplate(name, 5, opts)
	return &CA{Cert: sign(t, ca.Cert.Cert, key.Public(), key, ca.Key)}
}

// caTemplate is a CA named name, valid from Now-1y for years after Now,
// with opts applied.
func caTemplate(name string, years int, opts []Option) (*Template, crypto.Signer) {
	t := &Template{
		Subject:               pkix.Name{CommonName: name, Organization: []string{"certmon test"}},
		NotBefore:             Now.AddDate(-1, 0, 0),
		NotAfter:              Now.AddDate(years, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	key := ECKey()
	for _, o := range opts {
		o(t, &key)
	}
	return t, key
}

// Leaf issues a server certificate for the given DNS names (or IPs),
// valid from Now-30d to Now+90d.
func (ca *CA) Leaf(names []string, opts ...Option) *Cert {
	t, key := leafTemplate(names, opts)
	c := sign(t, ca.Cert.Cert, key.Public(), key, ca.Key)
	return &c
}

// SelfSigned makes a self-signed leaf (not a CA) for names.
func SelfSigned(names []string, opts ...Option) *Cert {
	t, key := leafTemplate(names, opts)
	c := sign(t, t, key.Public(), key, key)
	return &c
}

// leafTemplate is a server certificate for names (DNS names or IPs, the
// first also the CN), valid from Now-30d to Now+90d, with opts applied.
func leafTemplate(names []string, opts []Option) (*Template, crypto.Signer) {
	t := &Template{
		NotBefore:   Now.AddDate(0, 0, -30),
		NotAfter:    Now.AddDate(0, 0, 90),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, n)
		}
	}
	if len(names) > 0 {
		t.Subject.CommonName = names[0]
	}
	key := ECKey()
	for _, o := range opts {
		o(t, &key)
	}
	return t, key
}

func sign(t, parent *x509.Certificate, pub crypto.PublicKey, key, parentKey crypto.Signer) Cert {
	if t.SerialNumber == nil {
		t.SerialNumber = big.NewInt(1000 + serial.Add(1))
	}
	der, err := x509.CreateCertificate(rand.Reader, t, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return Cert{Cert: c, DER: der, Key: key}
}

// Pool returns a CertPool holding the given CAs.
func Pool(cas ...*CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert.Cert)
	}
	return p
}

// TLSCertificate builds a tls.Certificate that serves leaf followed by chain.
func TLSCertificate(leaf *Cert, chain ...*Cert) tls.Certificate {
	tc := tls.Certificate{Certificate: [][]byte{leaf.DER}, PrivateKey: leaf.Key, Leaf: leaf.Cert}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.DER)
	}
	return tc
}

// Chain returns the DER chain leaf, then intermediates, as a server sends it.
func Chain(leaf *Cert, chain ...*Cert) [][]byte {
	out := [][]byte{leaf.DER}
	for _, c := range chain {
		out = append(out, c.DER)
	}
	return out
}
