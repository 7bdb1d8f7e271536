// Package auth turns API bearer tokens into principals. Tokens are random
// secrets shown once; only their SHA-256 is stored, so a stolen database
// holds no usable credential.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// TokenPrefix starts every generated secret, so a leaked token is easy to
// recognise (secret scanners, logs).
const TokenPrefix = "cm_"

// GenerateToken returns a new secret ("cm_" + 32 random bytes, base64url)
// and the hash to store.
func GenerateToken() (secret string, hash []byte) {
	b := make([]byte, 32)
	// crypto/rand.Read never returns an error (it aborts the program if the
	// OS cannot supply randomness), so there is nothing to handle.
	_, _ = rand.Read(b)
	secret = TokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, Hash(secret)
}

// Hash returns the SHA-256 of a secret, the form tokens are stored and
// looked up in. The secrets are high-entropy, so a fast unsalted hash is
// enough, and lookup by hash means no secret is ever compared byte by byte
// (no timing side channel).
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
