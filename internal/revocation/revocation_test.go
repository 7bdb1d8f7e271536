package revocation

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/certmon/certmon/internal/certtest"
)

var now = certtest.Now

type pkiFixture struct {
	root, ca *certtest.CA
	pki      *certtest.PKI
}

func newFixture(t *testing.T) *pkiFixture {
	t.Helper()
	root := certtest.NewRootCA("Revocation Root")
	return &pkiFixture{root: root, ca: root.Intermediate("Revocation CA"), pki: certtest.NewPKI(t)}
}

func newFetcher(t *testing.T) *Fetcher {
	t.Helper()
	return NewFetcher(Options{Timeout: 500 * time.Millisecond})
}

func TestCheck(t *testing.T) {
	type setup struct {
		leaf     *certtest.Cert
		staple   []byte
		noIssuer bool
	}
	tests := []struct {
		name string
		// build mints the leaf (and whatever else) against fx.
		build      func(t *testing.T, fx *pkiFixture) setup
		want       State
		wantSource string
		// wantReason must appear in Status.Reason.
		wantReason string
		// wantHits are request counts on the fixture's PKI server.
		wantHits map[string]int
	}{
		{
			name: "OCSP good",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				return setup{leaf: leaf}
			},
			want: Good, wantSource: "OCSP", wantHits: map[string]int{"ocsp-get": 1},
		},
		{
			name: "OCSP revoked",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Revoked, wantSource: "OCSP", wantReason: "keyCompromise",
		},
		{
			name: "OCSP by delegated responder",
			build: func(t *testing.T, fx *pkiFixture) setup {
				fx.pki.Delegate(fx.ca, fx.ca.OCSPResponder())
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				fx.pki.Revoke(leaf, 4)
				return setup{leaf: leaf}
			},
			want: Revoked, wantSource: "OCSP", wantReason: "superseded",
		},
		{
			name: "OCSP by responder without OCSPSigning is ignored",
			build: func(t *testing.T, fx *pkiFixture) setup {
				fx.pki.Delegate(fx.ca, fx.ca.Leaf([]string{"not-a-responder.test"}))
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Unknown, wantReason: "not authorised for OCSP signing",
		},
		{
			name: "stapled good needs no fetch",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				return setup{leaf: leaf, staple: certtest.OCSPResponse(fx.ca, nil, leaf.Cert, ocsp.Response{Status: ocsp.Good})}
			},
			want: Good, wantSource: "stapled OCSP", wantHits: map[string]int{"ocsp": 0},
		},
		{
			name: "stapled revoked",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"})
				return setup{leaf: leaf, staple: certtest.OCSPResponse(fx.ca, nil, leaf.Cert,
					ocsp.Response{Status: ocsp.Revoked, RevokedAt: now.Add(-time.Hour), RevocationReason: ocsp.KeyCompromise})}
			},
			want: Revoked, wantSource: "stapled OCSP",
		},
		{
			name: "staple signed by another CA falls back to OCSP",
			build: func(t *testing.T, fx *pkiFixture) setup {
				other := certtest.NewRootCA("Other CA")
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				forged := certtest.OCSPResponse(other, nil, leaf.Cert, ocsp.Response{Status: ocsp.Revoked, RevokedAt: now})
				return setup{leaf: leaf, staple: forged}
			},
			want: Good, wantSource: "OCSP", wantHits: map[string]int{"ocsp": 1},
		},
		{
			name: "stale staple falls back to OCSP",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				stale := certtest.OCSPResponse(fx.ca, nil, leaf.Cert, ocsp.Response{Status: ocsp.Good,
					ThisUpdate: now.Add(-10 * 24 * time.Hour), NextUpdate: now.Add(-3 * 24 * time.Hour)})
				return setup{leaf: leaf, staple: stale}
			},
			want: Good, wantSource: "OCSP", wantHits: map[string]int{"ocsp": 1},
		},
		{
			name: "stale staple alone is unknown",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"})
				stale := certtest.OCSPResponse(fx.ca, nil, leaf.Cert, ocsp.Response{Status: ocsp.Good,
					ThisUpdate: now.Add(-10 * 24 * time.Hour), NextUpdate: now.Add(-3 * 24 * time.Hour)})
				return setup{leaf: leaf, staple: stale}
			},
			want: Unknown, wantReason: "stale",
		},
		{
			name: "CRL lists the serial",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithCRL(fx.pki.CRLURL(fx.ca)))
				fx.pki.Revoke(leaf, 5)
				return setup{leaf: leaf}
			},
			want: Revoked, wantSource: "CRL", wantReason: "cessationOfOperation", wantHits: map[string]int{"crl": 1},
		},
		{
			name: "CRL does not list the serial",
			build: func(t *testing.T, fx *pkiFixture) setup {
				other := fx.ca.Leaf([]string{"other.test"})
				fx.pki.Revoke(other, 1)
				return setup{leaf: fx.ca.Leaf([]string{"a.test"}, certtest.WithCRL(fx.pki.CRLURL(fx.ca)))}
			},
			want: Good, wantSource: "CRL",
		},
		{
			name: "CRL signed by another CA is not believed",
			build: func(t *testing.T, fx *pkiFixture) setup {
				other := certtest.NewRootCA("Other CA")
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithCRL(fx.pki.CRLURL(other)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Unknown, wantReason: "CRL is issued by",
		},
		{
			name: "OCSP responder failing, CRL answers",
			build: func(t *testing.T, fx *pkiFixture) setup {
				broken := certtest.NewPKI(t)
				broken.Fail(certtest.FailStatus)
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(broken.OCSPURL(fx.ca)), certtest.WithCRL(fx.pki.CRLURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Revoked, wantSource: "CRL",
		},
		{
			name: "responder returns 500",
			build: func(t *testing.T, fx *pkiFixture) setup {
				fx.pki.Fail(certtest.FailStatus)
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)), certtest.WithCRL(fx.pki.CRLURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Unknown, wantReason: "HTTP status 500",
		},
		{
			name: "responder answers garbage",
			build: func(t *testing.T, fx *pkiFixture) setup {
				fx.pki.Fail(certtest.FailGarbage)
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)), certtest.WithCRL(fx.pki.CRLURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Unknown,
		},
		{
			name: "responder hangs",
			build: func(t *testing.T, fx *pkiFixture) setup {
				fx.pki.Fail(certtest.FailHang)
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				fx.pki.Revoke(leaf, 1)
				return setup{leaf: leaf}
			},
			want: Unknown, wantReason: "no response within",
		},
		{
			name: "ldap CRL is skipped",
			build: func(t *testing.T, fx *pkiFixture) setup {
				return setup{leaf: fx.ca.Leaf([]string{"a.test"}, certtest.WithCRL("ldap://ldap.test/cn=CA?certificateRevocationList"))}
			},
			want: Unknown, wantReason: "only http://",
		},
		{
			name: "no source",
			build: func(t *testing.T, fx *pkiFixture) setup {
				return setup{leaf: fx.ca.Leaf([]string{"a.test"})}
			},
			want: Unknown, wantReason: "names no OCSP responder or CRL",
		},
		{
			name: "no issuer",
			build: func(t *testing.T, fx *pkiFixture) setup {
				leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
				return setup{leaf: leaf, noIssuer: true}
			},
			want: Unknown, wantReason: "issuer certificate not available",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			s := tt.build(t, fx)
			issuer := fx.ca.Cert.Cert
			if s.noIssuer {
				issuer = nil
			}
			start := time.Now()
			st := newFetcher(t).Check(context.Background(), s.leaf.Cert, issuer, s.staple, now)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Check took %s", d)
			}
			if st.State != tt.want {
				t.Fatalf("state %q, want %q (reason %q)", st.State, tt.want, st.Reason)
			}
			if tt.wantSource != "" && st.Source != tt.wantSource {
				t.Errorf("source %q, want %q", st.Source, tt.wantSource)
			}
			if !strings.Contains(st.Reason, tt.wantReason) {
				t.Errorf("reason %q lacks %q", st.Reason, tt.wantReason)
			}
			for kind, n := range tt.wantHits {
				if got := fx.pki.Hits(kind); got != n {
					t.Errorf("%s hits %d, want %d", kind, got, n)
				}
			}
		})
	}
}

func TestOCSPPost(t *testing.T) {
	fx := newFixture(t)
	leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
	f := newFetcher(t)
	f.getLimit = 0 // every request is "too long" for GET
	if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now); st.State != Good {
		t.Fatalf("state %q (%s)", st.State, st.Reason)
	}
	if fx.pki.Hits("ocsp-post") != 1 || fx.pki.Hits("ocsp-get") != 0 {
		t.Errorf("post %d get %d", fx.pki.Hits("ocsp-post"), fx.pki.Hits("ocsp-get"))
	}
}

func TestOCSPCacheAndConcurrency(t *testing.T) {
	fx := newFixture(t)
	leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
	f := newFetcher(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now); st.State != Good {
				t.Errorf("state %q (%s)", st.State, st.Reason)
			}
		})
	}
	wg.Wait()
	if n := fx.pki.Hits("ocsp"); n != 1 {
		t.Errorf("20 concurrent checks made %d requests, want 1", n)
	}
	// The response is good until its nextUpdate (Now+24h) only.
	if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now.Add(25*time.Hour)); st.State != Unknown {
		t.Errorf("after nextUpdate: state %q, want a refetch whose answer is stale", st.State)
	}
	if n := fx.pki.Hits("ocsp"); n != 2 {
		t.Errorf("after nextUpdate: %d requests, want 2", n)
	}
}

func TestCRLCache(t *testing.T) {
	fx := newFixture(t)
	f := newFetcher(t)
	for i := range 3 {
		leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithCRL(fx.pki.CRLURL(fx.ca)))
		if i == 2 {
			fx.pki.Revoke(leaf, 1) // too late: the cached CRL does not list it
		}
		if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now); st.State != Good {
			t.Fatalf("state %q (%s)", st.State, st.Reason)
		}
	}
	if n := fx.pki.Hits("crl"); n != 1 {
		t.Errorf("3 checks fetched the CRL %d times, want 1", n)
	}
}

func TestDeadResponderIsSkippedForAWhile(t *testing.T) {
	fx := newFixture(t)
	fx.pki.Fail(certtest.FailHang)
	clock := now
	f := NewFetcher(Options{Timeout: 200 * time.Millisecond, Now: func() time.Time { return clock }})
	leaf := fx.ca.Leaf([]string{"a.test"}, certtest.WithOCSPServer(fx.pki.OCSPURL(fx.ca)))
	for range 3 {
		if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now); st.State != Unknown {
			t.Fatalf("state %q", st.State)
		}
	}
	if n := fx.pki.Hits("ocsp"); n != 1 {
		t.Errorf("a hanging responder was asked %d times within the back-off, want 1", n)
	}
	clock = clock.Add(downTTL + time.Second)
	fx.pki.Fail(certtest.Healthy)
	if st := f.Check(context.Background(), leaf.Cert, fx.ca.Cert.Cert, nil, now); st.State != Good {
		t.Errorf("after the back-off: state %q (%s)", st.State, st.Reason)
	}
}
