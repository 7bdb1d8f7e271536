package agentlink

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Agent credentials: a public ID and a secret key shown once. Only the
// key's SHA-256 is stored (a random 256-bit key needs no slow hash, and
// lookups by ID then compare hashes in constant time).
const (
	AgentIDPrefix = "agt_"
	KeyPrefix     = "cmk_"

	// MaxKeyTTL is the longest a key lives; DefaultKeyTTL applies when
	// creation or rotation names none.
	MaxKeyTTL     = 180 * 24 * time.Hour
	DefaultKeyTTL = MaxKeyTTL
	// DefaultRotationOverlap is how long the previous key keeps working
	// after a rotation, so a running agent never drops while the new key
	// is deployed.
	DefaultRotationOverlap = 24 * time.Hour
)

// NewAgentID returns "agt_" and 16 random hex digits.
func NewAgentID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (see crypto/rand.Read)
	return AgentIDPrefix + hex.EncodeToString(b)
}

// NewKey returns a secret key ("cmk_" + 32 random bytes, base64url) and the
// hash to store.
func NewKey() (key string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, HashKey(key)
}

// HashKey is the stored form of a key.
func HashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// ValidAgentID tells whether id has the shape NewAgentID makes, so a
// malformed header is refused before the store is asked.
func ValidAgentID(id string) bool {
	rest, ok := strings.CutPrefix(id, AgentIDPrefix)
	if !ok || len(rest) != 16 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

// KeyTTL turns a requested lifetime in days into a duration: 0 is the
// default, 1 to 180 are allowed.
func KeyTTL(days int) (time.Duration, error) {
	switch {
	case days == 0:
		return DefaultKeyTTL, nil
	case days < 0 || time.Duration(days)*24*time.Hour > MaxKeyTTL:
		return 0, fmt.Errorf("must be between 1 and %d days", int(MaxKeyTTL/(24*time.Hour)))
	}
	return time.Duration(days) * 24 * time.Hour, nil
}
