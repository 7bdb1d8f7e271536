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
	"github.com/certmon/certmon/internal/store"
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
