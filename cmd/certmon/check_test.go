package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
)

// fixture is a private CA and two TLS servers: one healthy, one expiring.
type fixture struct {
	caFile       string
	good, soon   string
	clientCert   string
	clientKey    string
	goodLeafHash string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	now := time.Now()
	root := certtest.NewRootCA("certmon test root", certtest.WithValidity(now.AddDate(-1, 0, 0), now.AddDate(5, 0, 0)))
	good := root.Leaf([]string{"127.0.0.1", "good.test"}, certtest.WithValidity(now.AddDate(0, 0, -1), now.AddDate(0, 0, 200)))
	soon := root.Leaf([]string{"127.0.0.1", "soon.test"}, certtest.WithValidity(now.AddDate(0, 0, -80), now.Add(10*24*time.Hour+time.Hour)))
	dir := t.TempDir()
	f := fixture{
		caFile:     filepath.Join(dir, "ca.pem"),
		good:       certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(good)}}).Addr,
		soon:       certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(soon)}}).Addr,
		clientCert: filepath.Join(dir, "client.pem"),
		clientKey:  filepath.Join(dir, "client.key"),
	}
	client := root.Leaf([]string{"client.test"})
	write(t, f.caFile, root.PEM())
	write(t, f.clientCert, client.PEM())
	write(t, f.clientKey, client.KeyPEM())
	f.goodLeafHash = sha256hex(good.DER)
	return f
}

func write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckJSONContract(t *testing.T) {
	f := newFixture(t)
	code, out, stderr := runCLI(t, "check", "--ca-file", f.caFile, "--revocation", "off", "--output", "json", f.good)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s, out %s", code, stderr, out)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"target", "protocol", "address", "sni", "status", "problems", "tls", "chain", "verification", "error"} {
		if _, ok := r[k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	if r["status"] != "OK" || r["target"] != f.good || r["protocol"] != "tls" || r["sni"] != "" {
		t.Errorf("status %v target %v protocol %v sni %v", r["status"], r["target"], r["protocol"], r["sni"])
	}
	tlsInfo := r["tls"].(map[string]any)
	if tlsInfo["version"] != "TLS 1.3" {
		t.Errorf("tls.version %v", tlsInfo["version"])
	}
	for _, k := range []string{"cipher", "handshake_ms", "ocsp_stapled", "client_auth_requested"} {
		if _, ok := tlsInfo[k]; !ok {
			t.Errorf("tls.%s missing", k)
		}
	}
	chain := r["chain"].([]any)
	leaf := chain[0].(map[string]any)
	for _, k := range []string{"subject", "issuer", "serial", "not_before", "not_after", "days_left", "sha256",
		"key_type", "key_bits", "signature_algorithm", "sans", "self_signed", "is_ca"} {
		if _, ok := leaf[k]; !ok {
			t.Errorf("chain[0].%s missing", k)
		}
	}
	if leaf["sha256"] != f.goodLeafHash {
		t.Errorf("sha256 %v, want %s", leaf["sha256"], f.goodLeafHash)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(leaf["not_after"].(string)) {
		t.Errorf("not_after %v is not RFC 3339 UTC", leaf["not_after"])
	}
	v := r["verification"].(map[string]any)
	if v["trusted"] != true || v["hostname_match"] != true || v["chain_complete"] != true || v["revocation"] != "not_checked" {
		t.Errorf("verification %v", v)
	}
}

func TestCheckExitCodes(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		args []string
		code int
		want string // in stdout+stderr
	}{
		{"ok", []string{f.good}, 0, "OK"},
		{"expiring warns", []string{f.soon}, 1, "EXPIRING"},
		{"expiring critical", []string{"--crit-days", "14", "--warn-days", "30", f.soon}, 2, "EXPIRING"},
		{"worst of several", []string{f.good, f.soon}, 1, "2 checked"},
		{"empty CA file", []string{"--ca-file", "/dev/null", f.good}, 3, "no PEM certificates"},
		{"hostname mismatch", []string{"--sni", "other.test", f.good}, 2, "HOSTNAME_MISMATCH"},
		{"sni matches", []string{"--sni", "good.test", f.good}, 0, "OK"},
		{"unreachable", []string{closedAddr(t)}, 2, "UNREACHABLE"},
		{"unparsable target", []string{"https://exa mple.com"}, 3, "invalid target"},
		{"unknown scheme", []string{"gopher://example.com"}, 3, `unknown scheme "gopher"`},
		{"bad port", []string{"example.com:99999"}, 3, "port"},
		{"bad flag", []string{"--no-such-flag", f.good}, 3, "unknown flag"},
		{"bad duration", []string{"--timeout", "3 seconds", f.good}, 3, "timeout"},
		{"missing CA file", []string{"--ca-file", "/nonexistent/ca.pem", f.good}, 3, "/nonexistent/ca.pem"},
		{"bad output", []string{"--output", "yaml", f.good}, 3, "yaml"},
		{"bad revocation", []string{"--revocation", "maybe", f.good}, 3, "--revocation"},
		{"bad starttls", []string{"--starttls", "gopher", f.good}, 3, "gopher"},
		{"no targets", nil, 3, "no targets"},
		{"crit above warn", []string{"--crit-days", "40", f.good}, 3, "--crit-days"},
		{"client cert without key", []string{"--client-cert", f.clientCert, f.good}, 3, "go together"},
		{"missing targets file", []string{"--file", "/nonexistent/targets.txt"}, 3, "/nonexistent/targets.txt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"check", "--revocation", "off", "--timeout", "3s", "--retries", "0"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--ca-file") {
				args = append(args, "--ca-file", f.caFile)
			}
			code, out, stderr := runCLI(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, stderr)
			}
			if !strings.Contains(out+stderr, tc.want) {
				t.Errorf("output lacks %q\nstdout: %s\nstderr: %s", tc.want, out, stderr)
			}
		})
	}
}

// closedAddr is a loopback port with nothing listening.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func sha256hex(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

func x509Pool(t *testing.T, pemData []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("bad PEM")
	}
	return p
}

func TestCheckFileStreamsAndReportsBadLines(t *testing.T) {
	f := newFixture(t)
	list := filepath.Join(t.TempDir(), "targets.txt")
	write(t, list, []byte("# production\n"+f.good+"   # the good one\n\n"+f.soon+"\nnot a target!\n"))
	code, out, stderr := runCLI(t, "check", "--revocation", "off", "--ca-file", f.caFile, "--file", list, "--output", "json")
	if code != 3 {
		t.Errorf("exit %d, want 3 for the bad line (stderr %s)", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d results, want 3:\n%s", len(lines), out)
	}
	statuses := map[string]string{}
	for _, l := range lines {
		var r struct {
			Target, Status string
			Error          *string
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		statuses[r.Target] = r.Status
		if r.Status == "UNKNOWN" && (r.Error == nil || !strings.Contains(*r.Error, "targets.txt:5")) {
			t.Errorf("bad line's error does not name file and line: %v", r.Error)
		}
	}
	if statuses[f.good] != "OK" || statuses[f.soon] != "WARNING" || statuses["not a target!"] != "UNKNOWN" {
		t.Errorf("statuses %v", statuses)
	}
}

func TestCheckCSVAndNagios(t *testing.T) {
	f := newFixture(t)
	code, out, _ := runCLI(t, "check", "--revocation", "off", "--ca-file", f.caFile, "--output", "csv", f.good, f.soon)
	if code != 1 {
		t.Errorf("csv exit %d", code)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("csv: %v, %d rows\n%s", err, len(rows), out)
	}
	if rows[0][0] != "target" || rows[0][4] != "status" {
		t.Errorf("header %v", rows[0])
	}

	code, out, _ = runCLI(t, "check", "--revocation", "off", "--ca-file", f.caFile, "--output", "nagios", f.soon)
	if code != 1 {
		t.Errorf("nagios exit %d", code)
	}
	if !regexp.MustCompile(`^CERTMON WARNING - .*EXPIRING|expires.* \| days=10;30;7\n$`).MatchString(out) {
		t.Errorf("nagios line %q", out)
	}
	if strings.Count(out, "\n") != 1 {
		t.Errorf("nagios output must be one line: %q", out)
	}
}

func TestCheckClientCertificate(t *testing.T) {
	f := newFixture(t)
	caPEM, _ := os.ReadFile(f.caFile)
	pool := x509Pool(t, caPEM)
	leaf := certtest.SelfSigned([]string{"127.0.0.1"})
	srv := certtest.ServeTLS(t, &tls.Config{
		Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	code, out, stderr := runCLI(t, "check", "--revocation", "off", "--output", "json",
		"--client-cert", f.clientCert, "--client-key", f.clientKey, srv.Addr)
	if !strings.Contains(out, `"client_auth_requested":true`) || !strings.Contains(out, `"TLS 1.3"`) {
		t.Errorf("mTLS not completed (exit %d): %s %s", code, out, stderr)
	}
}
