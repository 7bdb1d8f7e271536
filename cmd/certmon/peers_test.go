package main

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/certmon/certmon/internal/certtest"
)

// TestCheckRealPeers runs `certmon check` end to end against the real
// Debian daemons of ../shared/peers/peers.sh and expects each to be judged
// as peers.json says: OK, EXPIRED or HOSTNAME_MISMATCH.
func TestCheckRealPeers(t *testing.T) {
	dir, peers := certtest.Peers(t)
	for _, p := range peers {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			target := p.Protocol + "://" + p.Address
			code, out, stderr := runCLI(t, "check", "--ca-file", filepath.Join(dir, "ca.pem"), "--sni", p.SNI,
				"--revocation", "off", "--timeout", "5s", "--output", "json", target)
			var r struct {
				Status   string
				Problems []struct{ Code string }
				Chain    []struct{ SHA256 string }
				TLS      *struct{ Version string }
			}
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("exit %d, output %q, stderr %q: %v", code, out, stderr, err)
			}
			if len(r.Chain) == 0 || r.Chain[0].SHA256 != p.SHA256 || r.TLS == nil {
				t.Fatalf("chain or TLS missing: %s", out)
			}
			switch p.Expected {
			case "OK":
				if r.Status != "OK" || code != 0 {
					t.Errorf("want OK, got %s (exit %d): %s", r.Status, code, out)
				}
			default:
				if r.Status != "CRITICAL" || code != 2 || len(r.Problems) != 1 || r.Problems[0].Code != p.Expected {
					t.Errorf("want CRITICAL with only %s, got %s %v (exit %d)", p.Expected, r.Status, r.Problems, code)
				}
			}
		})
	}
}
