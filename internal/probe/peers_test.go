package probe_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

// TestRealPeers probes real Debian daemons: every one must complete TLS
// (judging EXPIRED or HOSTNAME_MISMATCH peers is package assess's job) and
// serve the leaf peers.sh gave it.
func TestRealPeers(t *testing.T) {
	_, peers := certtest.Peers(t)
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
