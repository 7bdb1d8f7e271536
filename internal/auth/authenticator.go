package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/certmon/certmon/internal/store"
)

// ErrUnauthorized means no valid credential was presented. Callers answer
// 401 without saying which part was wrong.
var ErrUnauthorized = errors.New("auth: missing or invalid token")

// TokenStore finds tokens by the hash of their secret.
type TokenStore interface {
	TokenByHash(ctx context.Context, secretHash []byte) (store.Token, error)
}

var _ TokenStore = (*store.Store)(nil)

// Principal is who a request acts as.
type Principal struct {
	TeamID  int64
	TokenID int64
	Role    string
}

// Authenticator resolves bearer tokens.
type Authenticator struct {
	tokens TokenStore
}

// NewAuthenticator returns an Authenticator over tokens.
func NewAuthenticator(tokens TokenStore) *Authenticator {
	return &Authenticator{tokens: tokens}
}

// Authenticate resolves an Authorization header value ("Bearer SECRET").
// It returns ErrUnauthorized for a missing, malformed or unknown token, and
// a wrapped store error when the store could not answer, so a database
// outage is not reported to clients as a bad credential.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string) (Principal, error) {
	scheme, secret, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrUnauthorized
	}
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return Principal{}, ErrUnauthorized
	}
	tok, err := a.tokens.TokenByHash(ctx, Hash(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrUnauthorized
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: look up token: %w", err)
	}
	return Principal{TeamID: tok.TeamID, TokenID: tok.ID, Role: tok.Role}, nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by WithPrincipal.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
