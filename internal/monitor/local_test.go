package monitor_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/target"
)

// TestLocalCheckerPerMonitorRoots shows a monitor's own ca_pem trusting a
// private CA that the global roots do not hold, without widening trust for
// other monitors.
func TestLocalCheckerPerMonitorRoots(t *testing.T) {
	now := time.Now()
	private := certtest.NewRootCA("Private Root", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := private.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(now.AddDate(0, 0, -1), now.AddDate(0, 0, 90)))
	addr := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}).Addr
	checker := monitor.NewLocalChecker(probe.New(probe.Options{Timeout: 3 * time.Second}),
		assess.Config{Roots: x509.NewCertPool()}, assess.Policy{WarnDays: 30, CritDays: 7})

	cases := []struct {
		name  string
		caPEM string
		want  assess.Status
	}{
		{"without its CA", "", assess.Critical},
		{"with its CA", string(private.PEM()), assess.OK},
		{"again without", "", assess.Critical},
		{"garbage CA", "not PEM", assess.Unknown},
	}
	for _, tc := range cases {
		o := checker.CheckMonitor(context.Background(), store.Monitor{ID: 1, Target: addr, CAPEM: tc.caPEM})
		if o.Result.Status != tc.want {
			t.Errorf("%s: %s %+v", tc.name, o.Result.Status, o.Result.Problems)
		}
	}
}

func TestParseTargetWithProtocol(t *testing.T) {
	tg, err := monitor.ParseTarget("mail.example.com", "smtp")
	if err != nil || tg.StartTLS != "smtp" || tg.Port != 25 || tg.Raw != "mail.example.com" {
		t.Errorf("%+v %v", tg, err)
	}
	if _, err := monitor.ParseTarget("mail.example.com", "gopher"); err == nil {
		t.Error("unknown protocol accepted")
	}
}

// TestLocalCheckerDenyList shows the built-in agent refusing cloud
// metadata and link-local targets without dialing them, by name or by
// address, while ordinary targets are probed.
func TestLocalCheckerDenyList(t *testing.T) {
	deny, err := probe.ParsePrefixes([]string{"169.254.0.0/16", "fe80::/10", "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	leaf := certtest.SelfSigned([]string{"127.0.0.1"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)))
	addr := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}).Addr
	_, port, _ := net.SplitHostPort(addr)
	// Should the deny list ever fail, this dialer still keeps the test's
	// traffic on loopback.
	checker := monitor.NewLocalChecker(probe.New(probe.Options{Timeout: 2 * time.Second, Dialer: loopbackOnly{}}),
		assess.Config{}, assess.Policy{WarnDays: 30, CritDays: 7}, monitor.WithReach(probe.Reach{Deny: deny}))
	for _, target := range []string{"169.254.169.254:80", "[fe80::1]:443", "127.0.0.2:" + port} {
		o := checker.CheckMonitor(context.Background(), store.Monitor{ID: 1, Target: target})
		if o.Result.Status != assess.Unknown || o.Result.Error == nil || !strings.Contains(*o.Result.Error, "denied network") {
			t.Errorf("%s: %s %v", target, o.Result.Status, o.Result.Error)
		}
	}
	// Allowed: probed (self-signed here, so CRITICAL, but reached).
	o := checker.CheckMonitor(context.Background(), store.Monitor{ID: 1, Target: addr})
	if len(o.Result.Chain) == 0 {
		t.Errorf("allowed target not probed: %+v", o.Result)
	}
}

type loopbackOnly struct{}

func (loopbackOnly) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("test dialer: %s is not loopback", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestAssessWithAgentFetches judges an agent's observation with the
// revocation answer and AIA issuers the agent fetched (revocation_from:
// agent), never fetching from the server.
func TestAssessWithAgentFetches(t *testing.T) {
	now := time.Now()
	root := certtest.NewRootCA("Internal Root", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(3, 0, 0)))
	inter := root.Intermediate("Internal Issuing CA", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(2, 0, 0)))
	leaf := inter.Leaf([]string{"intranet.test"}, certtest.WithValidity(now.Add(-time.Hour), now.AddDate(0, 0, 90)),
		certtest.WithOCSPServer("http://ocsp.internal.invalid/"), certtest.WithIssuerURL("http://pki.internal.invalid/issuing.crt"))
	// The server may not fetch anything: these would fail the test.
	checker := monitor.NewLocalChecker(probe.New(probe.Options{}),
		assess.Config{Roots: certtest.Pool(root), Issuers: failingFetcher{t}, Revocation: failingFetcher{t}},
		assess.Policy{WarnDays: 30, CritDays: 7, Revocation: true})
	tg, _ := target.Parse("intranet.test", "")
	m := store.Monitor{ID: 1, Target: "intranet.test", AgentPool: "dc1", RevocationFrom: "agent"}
	obs := func(rev *probe.RevocationReport, issuers ...[]byte) *probe.Observation {
		return &probe.Observation{Target: tg, SNI: "intranet.test", Chain: [][]byte{leaf.DER}, Version: tls.VersionTLS13,
			CipherSuite: tls.TLS_AES_128_GCM_SHA256, Revocation: rev, Issuers: issuers}
	}
	revoked := &probe.RevocationReport{State: "revoked", Source: "OCSP http://ocsp.internal.invalid/", RevokedAt: now.Add(-time.Hour)}

	o := checker.Assess(context.Background(), m, obs(revoked, inter.DER))
	codes := map[string]bool{}
	for _, p := range o.Result.Problems {
		codes[p.Code] = true
	}
	if !codes[assess.CodeRevoked] || !codes[assess.CodeIncompleteChain] || !o.Result.Verification.Trusted ||
		o.Result.Verification.Revocation != assess.RevocationRevoked {
		t.Errorf("with the agent's answers: %s %+v %+v", o.Result.Status, o.Result.Problems, o.Result.Verification)
	}
	// No answer from the agent: unknown, never revoked; no issuer: untrusted.
	o = checker.Assess(context.Background(), m, obs(nil))
	if o.Result.Verification.Revocation == assess.RevocationRevoked || o.Result.Verification.Trusted {
		t.Errorf("without the agent's answers: %+v", o.Result.Verification)
	}
}

// failingFetcher fails the test if the server tries to fetch.
type failingFetcher struct{ t *testing.T }

func (f failingFetcher) FetchIssuer(_ context.Context, u string) ([]*x509.Certificate, error) {
	f.t.Errorf("the server fetched %s itself", u)
	return nil, fmt.Errorf("no")
}

func (f failingFetcher) Check(context.Context, *x509.Certificate, *x509.Certificate, []byte, time.Time) revocation.Status {
	f.t.Error("the server checked revocation itself")
	return revocation.Status{State: revocation.Unknown}
}
