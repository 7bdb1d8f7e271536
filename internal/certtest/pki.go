package certtest

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// WithOCSPServer sets the AIA OCSP responder URLs.
func WithOCSPServer(urls ...string) Option {
	return func(t *Template, _ *crypto.Signer) { t.OCSPServer = urls }
}

// WithCRL sets the CRL distribution points.
func WithCRL(urls ...string) Option {
	return func(t *Template, _ *crypto.Signer) { t.CRLDistributionPoints = urls }
}

// WithIssuerURL sets the AIA caIssuers URLs.
func WithIssuerURL(urls ...string) Option {
	return func(t *Template, _ *crypto.Signer) { t.IssuingCertificateURL = urls }
}

// OCSPResponder issues a delegated OCSP responder certificate for ca.
func (ca *CA) OCSPResponder(opts ...Option) *Cert {
	opts = append([]Option{With(func(t *Template) {
		t.KeyUsage = x509.KeyUsageDigitalSignature
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning}
	})}, opts...)
	return ca.Leaf(nil, append(opts, WithCN(ca.Cert.Cert.Subject.CommonName+" OCSP"))...)
}

// OCSPResponse signs an OCSP response about leaf with the CA's key, or with
// signer's when it is not nil (a delegated responder that ca issued). Zero
// ThisUpdate/NextUpdate default to Now-1h and Now+24h.
func OCSPResponse(ca *CA, signer *Cert, leaf *x509.Certificate, tmpl ocsp.Response) []byte {
	tmpl.SerialNumber = leaf.SerialNumber
	if tmpl.ThisUpdate.IsZero() {
		tmpl.ThisUpdate = Now.Add(-time.Hour)
	}
	if tmpl.NextUpdate.IsZero() {
		tmpl.NextUpdate = Now.Add(24 * time.Hour)
	}
	responder, key := ca.Cert.Cert, ca.Key
	if signer != nil {
		responder, key = signer.Cert, signer.Key
		tmpl.Certificate = signer.Cert
	}
	der, err := ocsp.CreateResponse(ca.Cert.Cert, responder, tmpl, key)
	if err != nil {
		panic(err)
	}
	return der
}

// CRL signs a CRL listing entries, valid from thisUpdate to nextUpdate.
func CRL(ca *CA, entries []x509.RevocationListEntry, thisUpdate, nextUpdate time.Time) []byte {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(thisUpdate.Unix()),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert.Cert, ca.Key)
	if err != nil {
		panic(err)
	}
	return der
}

// Failure makes a PKI server misbehave.
type Failure int

const (
	// Healthy answers normally.
	Healthy Failure = iota
	// FailStatus answers HTTP 500.
	FailStatus
	// FailHang never answers; the client must time out.
	FailHang
	// FailGarbage answers 200 with bytes that parse as nothing.
	FailGarbage
)

// PKI is an HTTP server on 127.0.0.1:0 acting as the OCSP responder, CRL
// publisher and AIA repository of test CAs. Responses are dated around Now.
type PKI struct {
	URL    string
	srv    *httptest.Server
	closed chan struct{}

	mu        sync.Mutex
	cas       []*CA
	delegates map[*CA]*Cert
	revoked   map[string]x509.RevocationListEntry // by serial, hex
	files     map[string][]byte
	hits      map[string]int
	failure   Failure

	// Clock dates OCSP answers (default the fixed Now); set it to
	// time.Now for tests judged at the real time.
	Clock func() time.Time
}

// NewPKI starts a PKI server that stops at the end of the test.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{
		closed:    make(chan struct{}),
		delegates: map[*CA]*Cert{},
		revoked:   map[string]x509.RevocationListEntry{},
		files:     map[string][]byte{},
		hits:      map[string]int{},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	t.Cleanup(func() {
		close(p.closed)
		p.srv.Close()
	})
	return p
}

// OCSPURL returns the URL of an OCSP responder for ca.
func (p *PKI) OCSPURL(ca *CA) string { return p.URL + "/ocsp/" + p.caID(ca) }

// CRLURL returns the URL of ca's CRL.
func (p *PKI) CRLURL(ca *CA) string { return p.URL + "/crl/" + p.caID(ca) + ".crl" }

// IssuerURL publishes c as DER and returns its URL (for AIA caIssuers).
func (p *PKI) IssuerURL(c *Cert) string {
	return p.Publish("/aia/"+c.Cert.SerialNumber.Text(16)+".cer", c.DER)
}

// Publish serves body at path and returns its URL.
func (p *PKI) Publish(path string, body []byte) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files[path] = body
	return p.URL + path
}

// Delegate makes the responder for ca sign with a delegated responder
// certificate instead of the CA key.
func (p *PKI) Delegate(ca *CA, responder *Cert) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delegates[ca] = responder
}

// Revoke marks c revoked for the OCSP responder and the CRL.
func (p *PKI) Revoke(c *Cert, reason int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked[c.Cert.SerialNumber.Text(16)] = x509.RevocationListEntry{
		SerialNumber: c.Cert.SerialNumber, RevocationTime: Now.Add(-48 * time.Hour), ReasonCode: reason,
	}
}

// Fail sets how the server misbehaves from now on.
func (p *PKI) Fail(f Failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failure = f
}

// Hits counts requests by kind: "ocsp", "ocsp-get", "ocsp-post", "crl",
// "file".
func (p *PKI) Hits(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[kind]
}

func (p *PKI) caID(ca *CA) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.cas {
		if c == ca {
			return strconv.Itoa(i)
		}
	}
	p.cas = append(p.cas, ca)
	return strconv.Itoa(len(p.cas) - 1)
}

func (p *PKI) ca(id string) *CA {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, err := strconv.Atoi(id)
	if err != nil || i < 0 || i >= len(p.cas) {
		return nil
	}
	return p.cas[i]
}

func (p *PKI) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	failure := p.failure
	kind := "file"
	switch {
	case strings.HasPrefix(r.URL.Path, "/ocsp/"):
		kind = "ocsp"
		p.hits["ocsp-"+strings.ToLower(r.Method)]++
	case strings.HasPrefix(r.URL.Path, "/crl/"):
		kind = "crl"
	}
	p.hits[kind]++
	p.mu.Unlock()

	switch failure {
	case FailStatus:
		http.Error(w, "responder broken", http.StatusInternalServerError)
		return
	case FailHang:
		select {
		case <-r.Context().Done():
		case <-p.closed:
		}
		return
	case FailGarbage:
		_, _ = w.Write([]byte("this is not DER"))
		return
	}
	switch kind {
	case "ocsp":
		p.serveOCSP(w, r)
	case "crl":
		p.serveCRL(w, r)
	default:
		p.mu.Lock()
		body, ok := p.files[r.URL.Path]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}
}

func (p *PKI) serveOCSP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
	id, encoded, _ := strings.Cut(rest, "/")
	ca := p.ca(id)
	if ca == nil {
		http.NotFound(w, r)
		return
	}
	var der []byte
	var err error
	if r.Method == http.MethodPost {
		der, err = io.ReadAll(io.LimitReader(r.Body, 10<<10))
	} else {
		var b64 string
		if b64, err = url.QueryUnescape(encoded); err == nil {
			der, err = base64.StdEncoding.DecodeString(b64)
		}
	}
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
		return
	}
	p.mu.Lock()
	entry, revoked := p.revoked[req.SerialNumber.Text(16)]
	signer := p.delegates[ca]
	p.mu.Unlock()
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber}
	if p.Clock != nil {
		now := p.Clock()
		tmpl.ThisUpdate, tmpl.NextUpdate = now.Add(-time.Hour), now.Add(24*time.Hour)
	}
	if revoked {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, entry.RevocationTime, entry.ReasonCode
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(OCSPResponse(ca, signer, &x509.Certificate{SerialNumber: req.SerialNumber}, tmpl))
}

func (p *PKI) serveCRL(w http.ResponseWriter, r *http.Request) {
	ca := p.ca(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/crl/"), ".crl"))
	if ca == nil {
		http.NotFound(w, r)
		return
	}
	var entries []x509.RevocationListEntry
	p.mu.Lock()
	for _, e := range p.revoked {
		entries = append(entries, e)
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(CRL(ca, entries, Now.Add(-time.Hour), Now.Add(24*time.Hour)))
}
