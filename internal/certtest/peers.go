package certtest

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// Peer is one real Debian daemon started by ../shared/peers/peers.sh, as
// its peers.json describes it.
type Peer struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Address  string `json:"address"`
	SNI      string `json:"sni"`
	// Expected is how certmon must judge it: OK, EXPIRED or HOSTNAME_MISMATCH.
	Expected string `json:"expected"`
	SHA256   string `json:"sha256"`
}

// Peers reads $CERTMON_PEERS_DIR/peers.json (default /tmp/certmon-peers)
// and returns the directory (it holds ca.pem) and the peers. Without it the
// test skips, unless CERTMON_REQUIRE_PEERS=1 (CI) makes that a failure.
func Peers(tb testing.TB) (dir string, peers []Peer) {
	tb.Helper()
	dir = os.Getenv("CERTMON_PEERS_DIR")
	if dir == "" {
		dir = "/tmp/certmon-peers"
	}
	data, err := os.ReadFile(filepath.Join(dir, "peers.json"))
	if errors.Is(err, fs.ErrNotExist) {
		const msg = "real peers not running: run ../shared/peers/peers.sh and set CERTMON_PEERS_DIR"
		if os.Getenv("CERTMON_REQUIRE_PEERS") == "1" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, &peers); err != nil {
		tb.Fatalf("%s/peers.json: %v", dir, err)
	}
	if len(peers) == 0 {
		tb.Fatalf("%s/peers.json lists no peers", dir)
	}
	return dir, peers
}
