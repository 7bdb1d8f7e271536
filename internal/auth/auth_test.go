package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/certmon/certmon/internal/store"
)

func TestGenerateToken(t *testing.T) {
	s1, h1 := GenerateToken()
	s2, _ := GenerateToken()
	if s1 == s2 {
		t.Fatal("two tokens are equal")
	}
	if !strings.HasPrefix(s1, TokenPrefix) {
		t.Fatalf("secret %q lacks prefix %q", s1, TokenPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s1, TokenPrefix))
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret body: %d bytes, %v; want 32 bytes of base64url", len(raw), err)
	}
	want := sha256.Sum256([]byte(s1))
	if !bytes.Equal(h1, want[:]) || !bytes.Equal(Hash(s1), want[:]) {
		t.Fatal("hash is not the SHA-256 of the secret")
	}
}

// fakeTokens records the hashes it was asked for.
type fakeTokens struct {
	byHash map[string]store.Token
	err    error
	asked  [][]byte
}

func (f *fakeTokens) TokenByHash(_ context.Context, h []byte) (store.Token, error) {
	f.asked = append(f.asked, h)
	if f.err != nil {
		return store.Token{}, f.err
	}
	tok, ok := f.byHash[string(h)]
	if !ok {
		return store.Token{}, store.ErrNotFound
	}
	return tok, nil
}

func TestAuthenticate(t *testing.T) {
	secret, hash := GenerateToken()
	fake := &fakeTokens{byHash: map[string]store.Token{string(hash): {ID: 7, TeamID: 3, Role: "admin"}}}
	a := NewAuthenticator(fake)
	ctx := context.Background()

	for _, h := range []string{"Bearer " + secret, "bearer " + secret, "  Bearer   " + secret + " "} {
		p, err := a.Authenticate(ctx, h)
		if err != nil {
			t.Fatalf("%q: %v", h, err)
		}
		if p != (Principal{TeamID: 3, TokenID: 7, Role: "admin"}) {
			t.Fatalf("%q: principal %+v", h, p)
		}
	}
	for _, h := range []string{"", "Bearer", "Bearer ", "Basic " + secret, secret, "Bearer cm_wrong"} {
		if _, err := a.Authenticate(ctx, h); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%q: err = %v, want ErrUnauthorized", h, err)
		}
	}

	fake.err = errors.New("database is down")
	_, err := a.Authenticate(ctx, "Bearer "+secret)
	if err == nil || errors.Is(err, ErrUnauthorized) || !errors.Is(err, fake.err) {
		t.Fatalf("store failure: err = %v, want the wrapped store error", err)
	}
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context has a principal")
	}
	p := Principal{TeamID: 1, TokenID: 2, Role: "admin"}
	got, ok := FromContext(WithPrincipal(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("got %+v %v", got, ok)
	}
}
