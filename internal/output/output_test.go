package output

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/certmon/certmon/internal/assess"
)

func results() []*assess.Result {
	errText := "connect: dial tcp 192.0.2.1:443: i/o timeout"
	return []*assess.Result{
		{
			Target: "example.com", Protocol: "tls", Address: "192.0.2.10:443", SNI: "example.com",
			Status: assess.Warning,
			Problems: []assess.Problem{{Code: assess.CodeExpiring, Severity: assess.SeverityWarning,
				Message: "certificate CN=example.com expires in 12 days"}},
			TLS: &assess.TLSInfo{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", HandshakeMS: 12},
			Chain: []assess.Certificate{{
				Subject: "=HYPERLINK(\"http://evil\")", Issuer: "CN=Test CA", NotAfter: "2026-06-27T12:00:00Z",
				DaysLeft: 12, SHA256: "ab12", KeyType: "ECDSA", KeyBits: 256, SANs: []string{"example.com", "www.example.com"},
			}},
			Verification: assess.Verification{Trusted: true, HostnameMatch: true, ChainComplete: true, Revocation: "good"},
		},
		{
			Target: "down.example.com:8443", Protocol: "tls", Status: assess.Critical,
			Problems: []assess.Problem{{Code: assess.CodeUnreachable, Severity: assess.SeverityCritical,
				Message: "timeout connecting to 192.0.2.1:443\x1b[31m"}},
			Chain:        []assess.Certificate{},
			Verification: assess.Verification{Revocation: "not_checked"},
			Error:        &errText,
		},
	}
}

func render(t *testing.T, format string) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := New(format, &buf, Options{WarnDays: 30, CritDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results() {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestJSONLines(t *testing.T) {
	out := render(t, "json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil {
		t.Fatal(err)
	}
	if r["tls"] != nil {
		t.Errorf("tls of an unreachable target should be null, got %v", r["tls"])
	}
	if probs := r["problems"].([]any); len(probs) != 1 {
		t.Errorf("problems %v", probs)
	}
	if !strings.Contains(lines[0], `"error":null`) {
		t.Errorf("error must be null when there is none: %s", lines[0])
	}
}

func TestCSVQuotesFormulas(t *testing.T) {
	rows, err := csv.NewReader(strings.NewReader(render(t, "csv"))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || len(rows[0]) != len(CSVHeader) {
		t.Fatalf("rows %d, columns %d", len(rows), len(rows[0]))
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	if got := rows[1][col["subject"]]; !strings.HasPrefix(got, "'=") {
		t.Errorf("formula not defused: %q", got)
	}
	if rows[1][col["days_left"]] != "12" || rows[1][col["status"]] != "WARNING" || rows[2][col["problems"]] != "UNREACHABLE" {
		t.Errorf("row values %v / %v", rows[1], rows[2])
	}
	if csvSafe("-3") != "-3" {
		t.Error("negative numbers must stay numbers")
	}
}

func TestNagiosLine(t *testing.T) {
	out := render(t, "nagios")
	want := "CERTMON CRITICAL - down.example.com:8443: timeout connecting to 192.0.2.1:443?[31m (2 checked: 0 ok, 1 warning, 1 critical, 0 unknown) | days=12;30;7 'example.com_days'=12;30;7\n"
	if out != want {
		t.Errorf("got  %q\nwant %q", out, want)
	}
}

func TestNagiosNoTargets(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("nagios", &buf, Options{})
	w.Close()
	if !strings.HasPrefix(buf.String(), "CERTMON UNKNOWN - no targets") {
		t.Errorf("got %q", buf.String())
	}
}

func TestTextStripsControlCharacters(t *testing.T) {
	out := render(t, "text")
	if strings.Contains(out, "\x1b") {
		t.Errorf("escape sequence from server text reached the terminal: %q", out)
	}
	for _, want := range []string{"WARNING", "example.com", "EXPIRING", "UNREACHABLE", "2 checked"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestTextColourOnlyWhenAsked(t *testing.T) {
	var buf bytes.Buffer
	w, _ := New("text", &buf, Options{Color: true})
	w.Write(results()[0])
	if !strings.Contains(buf.String(), ansiYellow+"WARNING"+ansiReset) {
		t.Errorf("no colour: %q", buf.String())
	}
}

func TestUnknownFormat(t *testing.T) {
	if _, err := New("yaml", nil, Options{}); err == nil || !strings.Contains(err.Error(), "yaml") {
		t.Errorf("err %v", err)
	}
}
