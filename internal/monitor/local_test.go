package monitor_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
