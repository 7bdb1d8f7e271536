package probe_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

// peer is one line of peers.json written by ../shared/peers/peers.sh.
type peer struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	SNI      string `json:"sni"`
	Expected string `json:"expected"`
	SHA256   string `json:"sha256"`
}

// loadPeers reads peers.json, skipping the test when the real peers are
// not set up unless CERTMON_REQUIRE_PEERS=1 (CI) makes that a failure.
func loadPeers(t *testing.T) []peer {
	t.Helper()
	dir := os.Getenv("CERTMON_PEERS_DIR")
	if dir == "" {
		dir = "/tmp/certmon-peers"
	}
	data, err := os.ReadFile(filepath.Join(dir, "peers.json"))
	if errors.Is(err, fs.ErrNotExist) {
		const msg = "real peers not running: run ../shared/peers/peers.sh and set CERTMON_PEERS_DIR"
		if os.Getenv("CERTMON_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatal(err)
	}
	var peers []peer
	if err := json.Unmarshal(data, &peers); err != nil {
		t.Fatalf("%s/peers.json: %v", dir, err)
	}
	if len(peers) == 0 {
		t.Fatalf("%s/peers.json lists no peers", dir)
	}
	return peers
}

// TestRealPeers probes real Debian daemons: every one must complete TLS
// (judging EXPIRED or HOSTNAME_MISMATCH peers is package assess's job) and
// serve the leaf peers.sh gave it.
func TestRealPeers(t *testing.T) {
	peers := loadPeers(t)
	p := probe.New(probe.Options{Timeout: 5 * time.Second})
	for _, pr := range peers {
		t.Run(pr.Name, func(t *testing.T) {
			t.Parallel()
			tgt, err := target.Parse(pr.Protocol+"://"+pr.Address, "")
			if err != nil {
				t.Fatal(err)
			}
			// The XMPP stream asks for the SNI name, which is prosody's
			// VirtualHost in peers.sh.
			obs := p.Probe(context.Background(), probe.Request{Target: tgt, SNI: pr.SNI})
			if obs.Err != nil {
				t.Fatalf("%s (%s, expected %s): %v", pr.Address, pr.Protocol, pr.Expected, obs.Err)
			}
			if len(obs.Chain) == 0 {
				t.Fatal("no certificate recorded")
			}
			sum := sha256.Sum256(obs.Chain[0])
			if got := hex.EncodeToString(sum[:]); got != pr.SHA256 {
				t.Errorf("leaf sha256 %s, want %s", got, pr.SHA256)
			}
			if obs.Version != tls.VersionTLS13 && obs.Version != tls.VersionTLS12 {
				t.Errorf("negotiated %s, want TLS 1.2 or 1.3", probe.VersionName(obs.Version))
			}
		})
	}
}
