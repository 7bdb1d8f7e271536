package assess

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/target"
)

var _ IssuerFetcher = (*revocation.Fetcher)(nil)
var _ RevocationChecker = (*revocation.Fetcher)(nil)

var now = certtest.Now

// fixture is a trusted PKI with an OCSP/CRL/AIA server on loopback.
type fixture struct {
	root, inter *certtest.CA
	pki         *certtest.PKI
	fetcher     *revocation.Fetcher
}

func newFixture(t testing.TB) *fixture {
	root := certtest.NewRootCA("Test Root")
	return &fixture{
		root:    root,
		inter:   root.Intermediate("Test Intermediate"),
		pki:     certtest.NewPKI(t),
		fetcher: revocation.NewFetcher(revocation.Options{Timeout: 500 * time.Millisecond}),
	}
}

func (fx *fixture) config() Config {
	return Config{Roots: certtest.Pool(fx.root), Issuers: fx.fetcher, Revocation: fx.fetcher}
}

// observe builds what a probe of a.test:443 would return for chain.
func observe(chain [][]byte, mods ...func(*probe.Observation)) *probe.Observation {
	o := &probe.Observation{
		Target:      target.Target{Raw: "a.test", Protocol: "tls", Host: "a.test", Port: 443},
		Address:     "192.0.2.10:443",
		SNI:         "a.test",
		Chain:       chain,
		Version:     tls.VersionTLS13,
		CipherSuite: tls.TLS_AES_128_GCM_SHA256,
		Handshake:   12 * time.Millisecond,
	}
	for _, m := range mods {
		m(o)
	}
	return o
}

func failed(stage probe.Stage, timeout bool, msg string) func(*probe.Observation) {
	return func(o *probe.Observation) {
		o.Err = &probe.Error{Stage: stage, Timeout: timeout, Message: msg}
		o.Version, o.CipherSuite = 0, 0
	}
}

// codes renders problems as sorted "CODE/severity" for comparison.
func codes(ps []Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Code+"/"+string(p.Severity))
	}
	slices.Sort(out)
	return out
}

func hexSum(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

func TestAssess(t *testing.T) {
	fx := newFixture(t)
	root, inter, pki := fx.root, fx.inter, fx.pki
	pol := Policy{Hostname: "a.test", Revocation: true}
	// A server whose OCSP responder fails.
	down := certtest.NewPKI(t)
	down.Fail(certtest.FailStatus)
	// A second, untrusted hierarchy.
	rogue := certtest.NewRootCA("Rogue Root")
	rsaInter := root.Intermediate("RSA Intermediate", certtest.WithRSA(2048))

	type tc struct {
		name string
		obs  *probe.Observation
		pol  *Policy       // nil: pol
		cfg  func(*Config) // changes fx.config()
		want Status
		code []string // sorted CODE/severity
		msg  string   // substring of some problem message
		chk  func(*testing.T, Result)
	}
	var tests []tc
	add := func(c tc) { tests = append(tests, c) }

	ok := inter.Leaf([]string{"a.test", "www.a.test"}, certtest.WithOCSPServer(pki.OCSPURL(inter)))
	add(tc{name: "OK", obs: observe(certtest.Chain(ok, &inter.Cert)), want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			v := r.Verification
			if !v.Trusted || !v.HostnameMatch || !v.ChainComplete || v.Revocation != RevocationGood {
				t.Errorf("verification %+v", v)
			}
			if len(r.Chain) != 2 {
				t.Fatalf("chain %d", len(r.Chain))
			}
			c := r.Chain[0]
			if c.DaysLeft != 90 || c.SHA256 != hexSum(ok.DER) || c.KeyType != "ECDSA" || c.KeyBits != 256 ||
				c.Subject != "CN=a.test" || c.Issuer != "CN=Test Intermediate,O=certmon test" ||
				c.Serial != ok.Cert.SerialNumber.Text(16) || c.NotAfter != "2026-09-13T12:00:00Z" ||
				c.SignatureAlgorithm != "ECDSA-SHA256" || c.SelfSigned || c.IsCA ||
				!slices.Equal(c.SANs, []string{"a.test", "www.a.test"}) {
				t.Errorf("leaf %+v", c)
			}
			if ic := r.Chain[1]; !ic.IsCA || ic.SelfSigned || ic.DaysLeft != 1826 {
				t.Errorf("intermediate %+v", ic)
			}
			if r.TLS == nil || r.TLS.Version != "TLS 1.3" || r.TLS.Cipher != "TLS_AES_128_GCM_SHA256" || r.TLS.HandshakeMS != 12 {
				t.Errorf("tls %+v", r.TLS)
			}
			if r.Error != nil || r.Target != "a.test" || r.Protocol != "tls" || r.SNI != "a.test" || r.Address != "192.0.2.10:443" {
				t.Errorf("result %+v", r)
			}
		}})
	add(tc{name: "revocation off", obs: observe(certtest.Chain(ok, &inter.Cert)), pol: &Policy{Hostname: "a.test"},
		want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if r.Verification.Revocation != RevocationNotChecked {
				t.Errorf("revocation %q", r.Verification.Revocation)
			}
		}})

	expired := inter.Leaf([]string{"a.test"}, certtest.WithValidity(now.AddDate(0, 0, -100), now.Add(-5*24*time.Hour-time.Hour)))
	add(tc{name: "expired", obs: observe(certtest.Chain(expired, &inter.Cert)), want: Critical,
		code: []string{"EXPIRED/critical"}, msg: "certificate CN=a.test expired 5 days ago (2026-06-10)",
		chk: func(t *testing.T, r Result) {
			if !r.Verification.Trusted || r.Chain[0].DaysLeft != -6 {
				t.Errorf("an expired certificate from a trusted CA stays trusted: %+v, days_left %d", r.Verification, r.Chain[0].DaysLeft)
			}
			if r.Verification.Revocation != RevocationNotChecked {
				t.Errorf("revocation of an expired certificate: %q", r.Verification.Revocation)
			}
		}})
	add(tc{name: "expiring warning", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"},
		certtest.WithValidity(now.AddDate(0, 0, -60), now.AddDate(0, 0, 20))), &inter.Cert)),
		want: Warning, code: []string{"EXPIRING/warning"}, msg: "expires in 20 days (2026-07-05)",
		chk: func(t *testing.T, r Result) {
			if r.Chain[0].DaysLeft != 20 {
				t.Errorf("days_left %d", r.Chain[0].DaysLeft)
			}
		}})
	add(tc{name: "expiring critical", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"},
		certtest.WithValidity(now.AddDate(0, 0, -60), now.AddDate(0, 0, 5))), &inter.Cert)),
		want: Critical, code: []string{"EXPIRING/critical"}, msg: "certificate CN=a.test expires in 5 days (2026-06-20)"})
	add(tc{name: "expiring thresholds from policy", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"},
		certtest.WithValidity(now.AddDate(0, 0, -60), now.AddDate(0, 0, 20))), &inter.Cert)),
		pol: &Policy{Hostname: "a.test", WarnDays: 60, CritDays: 21}, want: Critical, code: []string{"EXPIRING/critical"}})
	add(tc{name: "not yet valid", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"},
		certtest.WithValidity(now.AddDate(0, 0, 2), now.AddDate(0, 0, 92))), &inter.Cert)),
		want: Critical, code: []string{"NOT_YET_VALID/critical"}, msg: "not valid before 2026-06-17",
		chk: func(t *testing.T, r Result) {
			if !r.Verification.Trusted {
				t.Error("a not-yet-valid certificate from a trusted CA stays trusted")
			}
		}})

	add(tc{name: "hostname mismatch DNS", obs: observe(certtest.Chain(inter.Leaf([]string{"b.test", "*.c.test"}), &inter.Cert)),
		want: Critical, code: []string{"HOSTNAME_MISMATCH/critical"}, msg: `does not match "a.test" (it names b.test, *.c.test)`,
		chk: func(t *testing.T, r Result) {
			if r.Verification.HostnameMatch || !r.Verification.Trusted {
				t.Errorf("verification %+v", r.Verification)
			}
		}})
	add(tc{name: "wildcard matches", obs: observe(certtest.Chain(inter.Leaf([]string{"*.test"}), &inter.Cert)),
		want: OK, code: []string{}})
	ipLeaf := inter.Leaf([]string{"192.0.2.10"})
	add(tc{name: "IP SAN matches IP target", obs: observe(certtest.Chain(ipLeaf, &inter.Cert)),
		pol: &Policy{Hostname: "192.0.2.10"}, want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if !slices.Equal(r.Chain[0].SANs, []string{"192.0.2.10"}) {
				t.Errorf("sans %v", r.Chain[0].SANs)
			}
		}})
	add(tc{name: "hostname mismatch IP", obs: observe(certtest.Chain(ipLeaf, &inter.Cert)),
		pol: &Policy{Hostname: "192.0.2.11"}, want: Critical, code: []string{"HOSTNAME_MISMATCH/critical"}})
	add(tc{name: "no hostname: not checked", obs: observe(certtest.Chain(ipLeaf, &inter.Cert)),
		pol: &Policy{}, want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if r.Verification.HostnameMatch {
				t.Error("hostname_match must be false when no name was checked")
			}
		}})

	self := certtest.SelfSigned([]string{"a.test"})
	add(tc{name: "self-signed", obs: observe(certtest.Chain(self)), want: Critical,
		code: []string{"SELF_SIGNED/critical"}, msg: "self-signed",
		chk: func(t *testing.T, r Result) {
			if r.Verification.Trusted || !r.Chain[0].SelfSigned || r.Verification.Revocation != RevocationNotChecked {
				t.Errorf("verification %+v, self_signed %v", r.Verification, r.Chain[0].SelfSigned)
			}
		}})
	add(tc{name: "self-signed in --ca-file is trusted", obs: observe(certtest.Chain(self)), want: OK, code: []string{},
		cfg: func(c *Config) { c.Roots = x509.NewCertPool(); c.Roots.AddCert(self.Cert) },
		chk: func(t *testing.T, r Result) {
			if !r.Verification.Trusted || !r.Verification.ChainComplete {
				t.Errorf("verification %+v", r.Verification)
			}
		}})

	rogueInter := rogue.Intermediate("Rogue Intermediate")
	add(tc{name: "untrusted root sent", obs: observe(certtest.Chain(rogueInter.Leaf([]string{"a.test"}), &rogueInter.Cert, &rogue.Cert)),
		want: Critical, code: []string{"UNTRUSTED/critical"}, msg: "ends in CN=Rogue Root, which is not a trusted root",
		chk: func(t *testing.T, r Result) {
			if r.Verification.Trusted || !r.Verification.ChainComplete || !r.Verification.HostnameMatch {
				t.Errorf("verification %+v", r.Verification)
			}
		}})
	add(tc{name: "untrusted issuer not sent", obs: observe(certtest.Chain(rogueInter.Leaf([]string{"a.test"}), &rogueInter.Cert)),
		want: Critical, code: []string{"UNTRUSTED/critical"}, msg: "the issuer of CN=Rogue Intermediate (CN=Rogue Root,O=certmon test) is not a trusted root",
		chk: func(t *testing.T, r Result) {
			if r.Verification.ChainComplete {
				t.Errorf("verification %+v", r.Verification)
			}
		}})
	add(tc{name: "missing intermediate without AIA", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"}))),
		want: Critical, code: []string{"UNTRUSTED/critical"}, msg: "the issuer of CN=a.test (CN=Test Intermediate,O=certmon test)"})
	// An untrusted chain is judged on what links to the leaf: the expired
	// stray certificate does not count, the expired rogue root does.
	staleRogue := certtest.NewRootCA("Rogue Root", certtest.WithKey(rogue.Key), certtest.WithValidity(now.AddDate(-5, 0, 0), now.AddDate(0, 0, -1)))
	stray := certtest.NewRootCA("Stray", certtest.WithValidity(now.AddDate(-5, 0, 0), now.AddDate(0, 0, -1)))
	add(tc{name: "untrusted chain judged on linked certificates", obs: observe(certtest.Chain(rogueInter.Leaf([]string{"a.test"}), &stray.Cert, &rogueInter.Cert, &staleRogue.Cert)),
		want: Critical, code: []string{"EXPIRED/critical", "UNTRUSTED/critical"}, msg: "CA certificate CN=Rogue Root expired"})

	aiaLeaf := inter.Leaf([]string{"a.test"}, certtest.WithIssuerURL(pki.IssuerURL(&inter.Cert)))
	add(tc{name: "incomplete chain completed by AIA", obs: observe(certtest.Chain(aiaLeaf)),
		want: Warning, code: []string{"INCOMPLETE_CHAIN/warning"}, msg: "server omits intermediate certificates (CN=Test Intermediate)",
		chk: func(t *testing.T, r Result) {
			if !r.Verification.Trusted || r.Verification.ChainComplete || len(r.Chain) != 1 {
				t.Errorf("verification %+v, chain %d", r.Verification, len(r.Chain))
			}
		}})
	add(tc{name: "incomplete chain, AIA fails", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"}, certtest.WithIssuerURL(pki.URL+"/aia/missing.cer")))),
		want: Critical, code: []string{"UNTRUSTED/critical"}, msg: "AIA: fetching issuer from " + pki.URL + "/aia/missing.cer: HTTP status 404",
		chk: func(t *testing.T, r Result) {
			if r.Verification.Trusted || r.Verification.ChainComplete {
				t.Errorf("verification %+v", r.Verification)
			}
		}})
	add(tc{name: "incomplete chain, no fetcher", obs: observe(certtest.Chain(aiaLeaf)),
		cfg: func(c *Config) { c.Issuers = nil }, want: Critical, code: []string{"UNTRUSTED/critical"}})

	revoked := inter.Leaf([]string{"a.test"}, certtest.WithOCSPServer(pki.OCSPURL(inter)))
	pki.Revoke(revoked, 1)
	add(tc{name: "revoked via OCSP", obs: observe(certtest.Chain(revoked, &inter.Cert)), want: Critical,
		code: []string{"REVOKED/critical"}, msg: "certificate CN=a.test was revoked on 2026-06-13 (keyCompromise) according to OCSP",
		chk: func(t *testing.T, r Result) {
			if r.Verification.Revocation != RevocationRevoked {
				t.Errorf("revocation %q", r.Verification.Revocation)
			}
		}})
	stapled := inter.Leaf([]string{"a.test"})
	add(tc{name: "revoked via staple", want: Critical, code: []string{"REVOKED/critical"}, msg: "according to stapled OCSP",
		obs: observe(certtest.Chain(stapled, &inter.Cert), func(o *probe.Observation) {
			o.OCSPStaple = certtest.OCSPResponse(inter, nil, stapled.Cert, ocsp.Response{Status: ocsp.Revoked, RevokedAt: now.AddDate(0, 0, -1)})
		}),
		chk: func(t *testing.T, r Result) {
			if !r.TLS.OCSPStapled {
				t.Error("ocsp_stapled")
			}
		}})
	crlRevoked := inter.Leaf([]string{"a.test"}, certtest.WithCRL(pki.CRLURL(inter)))
	pki.Revoke(crlRevoked, 4)
	add(tc{name: "revoked via CRL", obs: observe(certtest.Chain(crlRevoked, &inter.Cert)), want: Critical,
		code: []string{"REVOKED/critical"}, msg: "(superseded) according to CRL"})
	downLeaf := inter.Leaf([]string{"a.test"}, certtest.WithOCSPServer(down.OCSPURL(inter)), certtest.WithCRL(down.CRLURL(inter)))
	pki.Revoke(downLeaf, 1)
	add(tc{name: "responder down is unknown, not revoked", obs: observe(certtest.Chain(downLeaf, &inter.Cert)),
		want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if r.Verification.Revocation != RevocationUnknown {
				t.Errorf("revocation %q", r.Verification.Revocation)
			}
		}})
	add(tc{name: "no revocation source is unknown", obs: observe(certtest.Chain(inter.Leaf([]string{"a.test"}), &inter.Cert)),
		want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if r.Verification.Revocation != RevocationUnknown {
				t.Errorf("revocation %q", r.Verification.Revocation)
			}
		}})

	weakKey := inter.Leaf([]string{"a.test"}, certtest.WithRSA(1024))
	add(tc{name: "weak key", obs: observe(certtest.Chain(weakKey, &inter.Cert)), want: Critical,
		code: []string{"WEAK_KEY/critical"}, msg: "weak RSA key (1024 bits)",
		chk: func(t *testing.T, r Result) {
			if r.Chain[0].KeyType != "RSA" || r.Chain[0].KeyBits != 1024 {
				t.Errorf("key %s %d", r.Chain[0].KeyType, r.Chain[0].KeyBits)
			}
		}})
	weakRoot := certtest.NewRootCA("Weak Root", certtest.WithRSA(1024), certtest.WithSignatureAlgorithm(x509.SHA1WithRSA))
	weakRootInter := weakRoot.Intermediate("Under Weak Root")
	add(tc{name: "weak root key and signature do not count", obs: observe(certtest.Chain(weakRootInter.Leaf([]string{"a.test"}), &weakRootInter.Cert, &weakRoot.Cert)),
		cfg: func(c *Config) { c.Roots = certtest.Pool(weakRoot) }, want: OK, code: []string{}})
	sha1Leaf := rsaInter.Leaf([]string{"a.test"}, certtest.WithSignatureAlgorithm(x509.SHA1WithRSA))
	// Go refuses SHA-1 signatures when building chains, as browsers do, so
	// the chain is also untrusted.
	add(tc{name: "weak signature", obs: observe(certtest.Chain(sha1Leaf, &rsaInter.Cert)), want: Critical,
		code: []string{"UNTRUSTED/critical", "WEAK_SIGNATURE/critical"}, msg: "certificate CN=a.test is signed with SHA1-RSA",
		chk: func(t *testing.T, r Result) {
			if r.Chain[0].SignatureAlgorithm != "SHA1-RSA" {
				t.Errorf("signature_algorithm %q", r.Chain[0].SignatureAlgorithm)
			}
		}})

	add(tc{name: "old protocol", obs: observe(certtest.Chain(ok, &inter.Cert), func(o *probe.Observation) {
		o.Version, o.CipherSuite = tls.VersionTLS11, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA
	}), pol: &Policy{Hostname: "a.test"}, want: Warning, code: []string{"OLD_PROTOCOL/warning"}, msg: "TLS 1.1",
		chk: func(t *testing.T, r Result) {
			if r.TLS.Version != "TLS 1.1" {
				t.Errorf("version %q", r.TLS.Version)
			}
		}})

	add(tc{name: "unreachable: refused", obs: observe(nil, failed(probe.StageConnect, false, "dial tcp 192.0.2.10:443: connect: connection refused")),
		want: Critical, code: []string{"UNREACHABLE/critical"}, msg: "cannot connect to 192.0.2.10:443: dial tcp 192.0.2.10:443: connect: connection refused",
		chk: func(t *testing.T, r Result) {
			if r.TLS != nil || len(r.Chain) != 0 || r.Error == nil || r.Verification.Revocation != RevocationNotChecked {
				t.Errorf("result %+v", r)
			}
		}})
	add(tc{name: "unreachable: timeout", obs: observe(nil, failed(probe.StageConnect, true, "i/o timeout")),
		want: Critical, code: []string{"UNREACHABLE/critical"}, msg: "timed out connecting to 192.0.2.10:443"})
	add(tc{name: "unreachable: DNS", obs: observe(nil, failed(probe.StageResolve, false, "lookup a.test: no such host")),
		want: Critical, code: []string{"UNREACHABLE/critical"}, msg: "cannot resolve a.test: lookup a.test: no such host"})
	add(tc{name: "handshake failed", obs: observe(nil, failed(probe.StageHandshake, false, "remote error: tls: protocol version not supported")),
		want: Critical, code: []string{"HANDSHAKE_FAILED/critical"}, msg: "TLS handshake failed: remote error"})
	add(tc{name: "STARTTLS failed", obs: observe(nil, failed(probe.StageStartTLS, false, "server does not offer STARTTLS")),
		want: Critical, code: []string{"HANDSHAKE_FAILED/critical"}, msg: "STARTTLS failed: server does not offer STARTTLS"})
	add(tc{name: "chain after failed handshake is judged", obs: observe(certtest.Chain(ok, &inter.Cert),
		failed(probe.StageHandshake, false, "remote error: tls: certificate required"), func(o *probe.Observation) { o.ClientAuthRequested = true }),
		pol: &Policy{Hostname: "a.test"}, want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if r.Error == nil || *r.Error != "handshake: remote error: tls: certificate required" {
				t.Errorf("error %v", r.Error)
			}
			if r.TLS != nil || len(r.Chain) != 2 || !r.Verification.Trusted {
				t.Errorf("result %+v", r)
			}
		}})
	add(tc{name: "chain after failed handshake, expired", obs: observe(certtest.Chain(expired, &inter.Cert),
		failed(probe.StagePostHandshake, false, "server rejected the connection")),
		pol: &Policy{Hostname: "a.test"}, want: Critical, code: []string{"EXPIRED/critical"}})

	// The server sends, after the intermediate, an expired copy of the root
	// (same name and key) and an unrelated expired root: neither is on the
	// verified path, so neither raises EXPIRED (blackbox_exporter #637).
	oldRoot := certtest.NewRootCA("Test Root", certtest.WithKey(root.Key), certtest.WithValidity(now.AddDate(-20, 0, 0), now.AddDate(-1, 0, 0)))
	add(tc{name: "expired extra roots sent by the server are ignored", obs: observe(certtest.Chain(ok, &inter.Cert, &oldRoot.Cert, &stray.Cert)),
		pol: &Policy{Hostname: "a.test"}, want: OK, code: []string{},
		chk: func(t *testing.T, r Result) {
			if len(r.Chain) != 4 || r.Chain[2].DaysLeft >= 0 || !r.Chain[2].SelfSigned {
				t.Errorf("the chain as sent must still be listed: %+v", r.Chain)
			}
		}})
	add(tc{name: "valid root sent by the server is judged", obs: observe(certtest.Chain(ok, &inter.Cert, &root.Cert)),
		pol: &Policy{Hostname: "a.test", WarnDays: 3700, CritDays: 1}, want: Warning,
		code: []string{"EXPIRING/warning", "EXPIRING/warning", "EXPIRING/warning"}})
	expiredInter := root.Intermediate("Expired Intermediate", certtest.WithValidity(now.AddDate(-3, 0, 0), now.AddDate(0, 0, -2)))
	add(tc{name: "expired intermediate", obs: observe(certtest.Chain(expiredInter.Leaf([]string{"a.test"},
		certtest.WithValidity(now.AddDate(0, 0, -200), now.AddDate(0, 0, 100))), &expiredInter.Cert)),
		pol: &Policy{Hostname: "a.test"}, want: Critical, code: []string{"EXPIRED/critical"}, msg: "CA certificate CN=Expired Intermediate expired 2 days ago",
		chk: func(t *testing.T, r Result) {
			if !r.Verification.Trusted {
				t.Error("a chain with an expired intermediate stays trusted: EXPIRED says what is wrong")
			}
		}})

	add(tc{name: "lint", obs: observe(certtest.Chain(inter.Leaf(nil, certtest.WithCN("a.test")), &inter.Cert)),
		pol: &Policy{Hostname: "a.test", Lint: true}, cfg: func(c *Config) { c.Linter = ZLint }, want: Critical,
		chk: func(t *testing.T, r Result) {
			i := slices.IndexFunc(r.Problems, func(p Problem) bool { return p.Code == CodeLint && p.Lint == "e_ext_san_missing" })
			if i < 0 {
				t.Fatalf("no e_ext_san_missing in %+v", r.Problems)
			}
			if p := r.Problems[i]; p.Severity != SeverityCritical || p.Message == "" {
				t.Errorf("problem %+v", p)
			}
			if !slices.Contains(codes(r.Problems), "HOSTNAME_MISMATCH/critical") {
				t.Error("a CN-only certificate matches no name")
			}
		}})
	add(tc{name: "lint off", obs: observe(certtest.Chain(inter.Leaf(nil, certtest.WithCN("a.test")), &inter.Cert)),
		pol: &Policy{Hostname: "a.test"}, cfg: func(c *Config) { c.Linter = ZLint }, want: Critical,
		code: []string{"HOSTNAME_MISMATCH/critical"}})

	add(tc{name: "malformed leaf", obs: observe([][]byte{[]byte("not a certificate")}),
		want: Unknown, code: []string{"MALFORMED_CERTIFICATE/critical"}, msg: "the server's certificate does not parse",
		chk: func(t *testing.T, r Result) {
			if len(r.Chain) != 1 || r.Chain[0].SHA256 != hexSum([]byte("not a certificate")) || r.Chain[0].SANs == nil {
				t.Errorf("chain %+v", r.Chain)
			}
		}})
	add(tc{name: "malformed extra certificate", obs: observe(append(certtest.Chain(ok, &inter.Cert), []byte{0x30, 0x00})),
		pol: &Policy{Hostname: "a.test"}, want: Warning, code: []string{"MALFORMED_CERTIFICATE/warning"}, msg: "certificate #3"})
	add(tc{name: "no certificate, no error", obs: observe(nil), want: Unknown, code: []string{"NO_CERTIFICATE/critical"}})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fx.config()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			p := pol
			if tt.pol != nil {
				p = *tt.pol
			}
			r := New(cfg).Assess(context.Background(), tt.obs, p, now)
			if r.Status != tt.want {
				t.Errorf("status %s, want %s; problems %+v", r.Status, tt.want, r.Problems)
			}
			if tt.code != nil && !slices.Equal(codes(r.Problems), tt.code) {
				t.Errorf("problems %v, want %v\n%+v", codes(r.Problems), tt.code, r.Problems)
			}
			if tt.msg != "" && !slices.ContainsFunc(r.Problems, func(p Problem) bool { return strings.Contains(p.Message, tt.msg) }) {
				t.Errorf("no problem message contains %q: %+v", tt.msg, r.Problems)
			}
			if r.Problems == nil || r.Chain == nil {
				t.Error("problems and chain must be [] in JSON, not null")
			}
			if tt.chk != nil {
				tt.chk(t, r)
			}
		})
	}
}

func TestResultJSON(t *testing.T) {
	fx := newFixture(t)
	leaf := fx.inter.Leaf([]string{"a.test"})
	r := New(fx.config()).Assess(context.Background(), observe(certtest.Chain(leaf, &fx.inter.Cert)), Policy{Hostname: "a.test"}, now)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if p, ok := m["problems"].([]any); !ok || len(p) != 0 {
		t.Errorf("problems %v", m["problems"])
	}
	if m["error"] != nil {
		t.Errorf("error %v", m["error"])
	}
	c := m["chain"].([]any)[0].(map[string]any)
	for k, want := range map[string]any{
		"days_left": 90.0, "key_type": "ECDSA", "key_bits": 256.0, "sha256": hexSum(leaf.DER),
		"not_before": "2026-05-16T12:00:00Z", "self_signed": false,
	} {
		if c[k] != want {
			t.Errorf("%s = %v, want %v", k, c[k], want)
		}
	}
	if v := m["verification"].(map[string]any); v["revocation"] != "not_checked" || v["trusted"] != true {
		t.Errorf("verification %v", v)
	}
}

func TestDaysLeft(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		left time.Duration
		want int
	}{
		{90 * day, 90}, {day + time.Hour, 1}, {day, 1}, {day - time.Second, 0}, {0, 0},
		{-time.Second, -1}, {-day, -1}, {-day - time.Second, -2},
	} {
		if got := daysLeft(now.Add(tt.left), now); got != tt.want {
			t.Errorf("daysLeft(%s) = %d, want %d", tt.left, got, tt.want)
		}
	}
}
