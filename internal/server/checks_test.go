package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// certInfoOf describes a minted certificate the way assess does.
func certInfoOf(c *certtest.Cert) assess.Certificate {
	sum := sha256.Sum256(c.DER)
	x := c.Cert
	return assess.Certificate{
		Subject:            x.Subject.String(),
		Issuer:             x.Issuer.String(),
		Serial:             x.SerialNumber.Text(16),
		NotBefore:          x.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:           x.NotAfter.UTC().Format(time.RFC3339),
		DaysLeft:           daysLeft(x.NotAfter, t0),
		SHA256:             hex.EncodeToString(sum[:]),
		KeyType:            "ECDSA",
		KeyBits:            256,
		SignatureAlgorithm: x.SignatureAlgorithm.String(),
		SANs:               x.DNSNames,
		IsCA:               x.IsCA,
	}
}

// recordCheck claims the monitors due at `at` and records for monitor id
// a check that found chain with status and problems, through the same
// state machine the scheduler uses.
func (e *env) recordCheck(t testing.TB, id int64, at time.Time, status assess.Status, problems []assess.Problem, chain ...*certtest.Cert) {
	t.Helper()
	ctx := context.Background()
	claims, err := e.store.ClaimDue(ctx, "test", []string{monitor.CloudPool}, at, time.Minute, 1000)
	if err != nil {
		t.Fatalf("ClaimDue: %v", err)
	}
	if err := e.store.LoadPrevious(ctx, claims); err != nil {
		t.Fatalf("LoadPrevious: %v", err)
	}
	defer e.store.ReleaseClaims(ctx, "test")
	sched, _ := monitor.ParseSchedule("4h")
	for _, c := range claims {
		if c.Monitor.ID != id {
			continue
		}
		r := &assess.Result{
			Target: c.Monitor.Target, Protocol: "tls", Address: "192.0.2.1:443", Status: status,
			Problems: problems,
			TLS:      &assess.TLSInfo{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", HandshakeMS: 12},
			Verification: assess.Verification{Trusted: true, HostnameMatch: true, ChainComplete: true,
				Revocation: assess.RevocationGood},
		}
		var ders [][]byte
		for _, cert := range chain {
			r.Chain = append(r.Chain, certInfoOf(cert))
			ders = append(ders, cert.DER)
		}
		rec := monitor.Transition(c, monitor.Outcome{Result: r, ChainDER: ders, At: at}, sched, 0, monitor.AlertPolicy{})
		lost, err := e.store.RecordChecks(ctx, []store.CheckRecord{rec})
		if err != nil || len(lost) > 0 {
			t.Fatalf("RecordChecks: lost %v, %v", lost, err)
		}
		return
	}
	t.Fatalf("monitor %d was not due at %s", id, at)
}

func TestChecksCertificatesEvents(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		root := certtest.NewRootCA("Test Root")
		inter := root.Intermediate("Test Intermediate")
		soon := inter.Leaf([]string{"a.example.com"}, certtest.WithValidity(t0.AddDate(0, 0, -80), t0.Add(10*24*time.Hour+time.Hour)))
		renewed := inter.Leaf([]string{"a.example.com"})
		later := inter.Leaf([]string{"b.example.com"})

		a := e.create(t, map[string]any{"target": "a.example.com", "tags": []string{"web"}})
		b := e.create(t, map[string]any{"target": "b.example.com"})
		e.create(t, map[string]any{"target": "c.example.com"}) // never checked

		expiring := []assess.Problem{{Code: assess.CodeExpiring, Severity: assess.SeverityWarning, Message: "expires in 10 days"}}
		e.recordCheck(t, a.id(), t0, assess.Warning, expiring, soon, &inter.Cert)
		e.recordCheck(t, b.id(), t0, assess.OK, nil, later, &inter.Cert)

		// The monitor shows the check in the check contract's shapes.
		var m struct {
			Status       *string
			Problems     []assess.Problem
			TLS          *assess.TLSInfo
			Chain        []assess.Certificate
			Verification *assess.Verification
			Error        *string
			LastCheckAt  *time.Time `json:"last_check_at"`
			NextCheckAt  *time.Time `json:"next_check_at"`
		}
		e.do("GET", fmt.Sprintf("/api/v1/monitors/%d", a.id()), nil).decode(t, http.StatusOK, &m)
		if m.Status == nil || *m.Status != "WARNING" || len(m.Problems) != 1 || m.Problems[0].Code != "EXPIRING" {
			t.Errorf("status %v problems %v", m.Status, m.Problems)
		}
		if m.TLS == nil || m.TLS.Version != "TLS 1.3" || m.Verification == nil || !m.Verification.Trusted || m.Error != nil {
			t.Errorf("tls %+v verification %+v error %v", m.TLS, m.Verification, m.Error)
		}
		if len(m.Chain) != 2 || m.Chain[0].SHA256 != certInfoOf(soon).SHA256 || m.Chain[0].DaysLeft != 10 {
			t.Errorf("chain %+v", m.Chain)
		}
		if m.LastCheckAt == nil || !m.LastCheckAt.Equal(t0) || m.NextCheckAt == nil || !m.NextCheckAt.After(t0) {
			t.Errorf("last_check_at %v next_check_at %v", m.LastCheckAt, m.NextCheckAt)
		}

		type monitorPage struct{ Monitors []monitorJSON }
		for q, want := range map[string]int{
			"status=WARNING":         1,
			"status=OK":              1,
			"status=CRITICAL":        0,
			"expiring_within=30":     1,
			"expiring_within=30d":    1,
			"expiring_within=2400h":  2,
			"expiring_within=0":      0,
			"status=WARNING&tag=web": 1,
			"status=OK&tag=web":      0,
		} {
			var p monitorPage
			e.do("GET", "/api/v1/monitors?"+q, nil).decode(t, http.StatusOK, &p)
			if len(p.Monitors) != want {
				t.Errorf("monitors?%s: %d, want %d", q, len(p.Monitors), want)
			}
		}

		// A renewal: a new leaf and a new status.
		e.do("POST", fmt.Sprintf("/api/v1/monitors/%d/check", a.id()), nil).decode(t, http.StatusAccepted, nil)
		e.recordCheck(t, a.id(), t0.Add(time.Minute), assess.OK, nil, renewed, &inter.Cert)

		var hist struct {
			History []struct {
				Status     string
				LeafSHA256 string `json:"leaf_sha256"`
				Change     []string
				At         time.Time
			}
		}
		e.do("GET", fmt.Sprintf("/api/v1/monitors/%d/history", a.id()), nil).decode(t, http.StatusOK, &hist)
		if len(hist.History) != 2 || hist.History[0].Status != "OK" || hist.History[1].Status != "WARNING" ||
			!slices.Contains(hist.History[1].Change, "first_check") || hist.History[0].LeafSHA256 != certInfoOf(renewed).SHA256 {
			t.Errorf("history %+v", hist.History)
		}

		// Certificates.
		type certPage struct {
			Certificates []map[string]any
			NextCursor   *string `json:"next_cursor"`
		}
		var all certPage
		e.do("GET", "/api/v1/certificates", nil).decode(t, http.StatusOK, &all)
		if len(all.Certificates) != 4 || all.NextCursor != nil {
			t.Fatalf("certificates: %d (next %v), want 4", len(all.Certificates), all.NextCursor)
		}
		for _, c := range all.Certificates {
			for _, k := range []string{"sha256", "subject", "issuer", "serial", "not_before", "not_after", "days_left",
				"key_type", "key_bits", "signature_algorithm", "sans", "self_signed", "is_ca", "first_seen"} {
				if _, ok := c[k]; !ok {
					t.Errorf("certificate lacks %q: %v", k, c)
				}
			}
		}
		// Walk pages of one.
		var walked []string
		cursor := ""
		for range 10 {
			var p certPage
			e.do("GET", "/api/v1/certificates?limit=1&cursor="+cursor, nil).decode(t, http.StatusOK, &p)
			for _, c := range p.Certificates {
				walked = append(walked, c["sha256"].(string))
			}
			if p.NextCursor == nil {
				break
			}
			cursor = *p.NextCursor
		}
		if len(walked) != 4 {
			t.Errorf("paged through %d certificates, want 4", len(walked))
		}
		for q, want := range map[string][]string{
			"expiring_within=30":       {certInfoOf(soon).SHA256},
			"issuer=test+intermediate": {certInfoOf(soon).SHA256, certInfoOf(renewed).SHA256, certInfoOf(later).SHA256},
		} {
			var p certPage
			e.do("GET", "/api/v1/certificates?"+q, nil).decode(t, http.StatusOK, &p)
			var got []string
			for _, c := range p.Certificates {
				got = append(got, c["sha256"].(string))
			}
			if !sameSet(got, want) {
				t.Errorf("certificates?%s: %v, want %v", q, got, want)
			}
		}
		var detail struct {
			SHA256 string
			PEM    string
			UsedBy []struct {
				MonitorID int64 `json:"monitor_id"`
				Target    string
				FirstSeen time.Time  `json:"first_seen"`
				LastSeen  *time.Time `json:"last_seen"`
			} `json:"used_by"`
		}
		fp := certInfoOf(soon).SHA256
		e.do("GET", "/api/v1/certificates/"+strings.ToUpper(fp), nil).decode(t, http.StatusOK, &detail)
		blk, _ := pem.Decode([]byte(detail.PEM))
		if detail.SHA256 != fp || blk == nil || !bytes.Equal(blk.Bytes, soon.DER) {
			t.Errorf("certificate %s: sha256 %s, pem %q", fp, detail.SHA256, detail.PEM)
		}
		if len(detail.UsedBy) != 1 || detail.UsedBy[0].MonitorID != a.id() || detail.UsedBy[0].Target != "a.example.com" ||
			detail.UsedBy[0].LastSeen == nil {
			t.Errorf("used_by %+v (the renewed monitor no longer serves it)", detail.UsedBy)
		}
		e.do("GET", "/api/v1/certificates/"+strings.Repeat("0", 64), nil).wantError(t, 404, "not_found", "certificate")
		e.do("GET", "/api/v1/certificates/xyz", nil).wantError(t, 400, "invalid_field", "sha256: ")
		e.do("GET", "/api/v1/certificates?cursor=xyz", nil).wantError(t, 400, "invalid_field", "cursor: ")
		e.do("GET", "/api/v1/certificates?status=BAD", nil).wantError(t, 400, "invalid_field", "status: ")

		// Events, newest first.
		type eventPage struct {
			Events []struct {
				ID        int64
				MonitorID int64 `json:"monitor_id"`
				At        time.Time
				Kind      string
				Status    string
				Severity  string
				Message   string
				Data      map[string]any
			}
			NextCursor *string `json:"next_cursor"`
		}
		var ev eventPage
		e.do("GET", "/api/v1/events", nil).decode(t, http.StatusOK, &ev)
		kinds := map[string]int{}
		for i, x := range ev.Events {
			kinds[x.Kind]++
			if i > 0 && x.ID >= ev.Events[i-1].ID {
				t.Errorf("events not newest first: %d after %d", x.ID, ev.Events[i-1].ID)
			}
			if x.Data == nil || x.Message == "" || x.Severity == "" {
				t.Errorf("event %+v lacks data, message or severity", x)
			}
		}
		// Monitor a's first certificate was close to expiry: a reminder.
		if kinds["first_check"] != 2 || kinds["status_changed"] != 1 || kinds["certificate_changed"] != 1 || kinds["expiry_reminder"] != 1 {
			t.Errorf("event kinds %v", kinds)
		}
		e.do("GET", "/api/v1/events?kind=certificate_changed", nil).decode(t, http.StatusOK, &ev)
		if len(ev.Events) != 1 || ev.Events[0].Data["change"] != "renewed" || ev.Events[0].MonitorID != a.id() {
			t.Errorf("certificate_changed events %+v", ev.Events)
		}
		e.do("GET", fmt.Sprintf("/api/v1/events?monitor_id=%d", b.id()), nil).decode(t, http.StatusOK, &ev)
		if len(ev.Events) != 1 || ev.Events[0].Kind != "first_check" || ev.Events[0].Status != "OK" {
			t.Errorf("events of monitor b: %+v", ev.Events)
		}
		n, cursor := 0, ""
		for range 10 {
			var p eventPage
			e.do("GET", "/api/v1/events?limit=1&cursor="+cursor, nil).decode(t, http.StatusOK, &p)
			n += len(p.Events)
			if p.NextCursor == nil {
				break
			}
			cursor = *p.NextCursor
		}
		if n != 5 {
			t.Errorf("paged through %d events, want 5", n)
		}
		e.do("GET", "/api/v1/events?monitor_id=x", nil).wantError(t, 400, "invalid_field", "monitor_id: ")

		// Metrics count monitors by status at scrape time.
		r := e.do("GET", "/metrics", nil)
		for _, want := range []string{`certmon_monitors{status="OK"} 2`, `certmon_monitors{status="PENDING"} 1`, `certmon_monitors{status="WARNING"} 0`} {
			if !strings.Contains(string(r.Body), want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
