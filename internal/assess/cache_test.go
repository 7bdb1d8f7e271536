package assess

import (
	"context"
	"crypto/x509"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
)

// countingIssuers serves one certificate for every AIA URL and counts calls.
type countingIssuers struct {
	calls atomic.Int64
	cert  *x509.Certificate
	delay time.Duration
}

func (f *countingIssuers) FetchIssuer(ctx context.Context, url string) ([]*x509.Certificate, error) {
	f.calls.Add(1)
	time.Sleep(f.delay) // keep concurrent callers overlapping
	return []*x509.Certificate{f.cert}, nil
}

func TestCacheSharesVerification(t *testing.T) {
	root := certtest.NewRootCA("Cache Root")
	inter := root.Intermediate("Cache Intermediate")
	leaf := inter.Leaf([]string{"a.test"}, certtest.WithIssuerURL("http://aia.invalid/inter.cer"))
	issuers := &countingIssuers{cert: inter.Cert.Cert, delay: 20 * time.Millisecond}
	a := New(Config{Roots: certtest.Pool(root), Issuers: issuers})
	obs := observe(certtest.Chain(leaf))
	pol := Policy{Hostname: "a.test"}

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r := a.Assess(context.Background(), obs, pol, now)
			if r.Status != Warning || len(r.Problems) != 1 || r.Problems[0].Code != CodeIncompleteChain {
				t.Errorf("status %s problems %+v", r.Status, r.Problems)
			}
		})
	}
	wg.Wait()
	if n := a.verifies.Load(); n != 1 {
		t.Errorf("50 concurrent assessments of one chain verified it %d times, want 1", n)
	}
	if n := issuers.calls.Load(); n != 1 {
		t.Errorf("AIA fetched %d times, want 1", n)
	}

	// Later, and even after the leaf expired, the verdict still holds:
	// trust is judged at an instant inside the leaf's validity.
	for _, at := range []time.Time{now.Add(time.Hour), now.AddDate(0, 0, 60), now.AddDate(1, 0, 0)} {
		r := a.Assess(context.Background(), obs, pol, at)
		if !r.Verification.Trusted {
			t.Errorf("at %s: untrusted", at)
		}
	}
	if n := a.verifies.Load(); n != 1 {
		t.Errorf("verified %d times, want 1", n)
	}
}

func TestCacheUntrustedIsShortLived(t *testing.T) {
	rogue := certtest.NewRootCA("Rogue")
	obs := observe(certtest.Chain(rogue.Leaf([]string{"a.test"}), &rogue.Cert))
	a := New(Config{Roots: x509.NewCertPool()})
	for _, at := range []time.Time{now, now.Add(time.Minute), now.Add(10 * time.Minute)} {
		if r := a.Assess(context.Background(), obs, Policy{}, at); r.Verification.Trusted {
			t.Fatal("trusted")
		}
	}
	if n := a.verifies.Load(); n != 2 {
		t.Errorf("verified %d times, want 2 (reused within %s, then again)", n, shortTTL)
	}
}

func TestCacheBoundedAndDisabled(t *testing.T) {
	root := certtest.NewRootCA("Cache Root")
	var chains [][][]byte
	for range 3 {
		chains = append(chains, certtest.Chain(root.Leaf([]string{"a.test"})))
	}
	a := New(Config{Roots: certtest.Pool(root), CacheSize: 2})
	for _, c := range chains {
		a.Assess(context.Background(), observe(c), Policy{}, now)
	}
	if n := a.cache.len(); n != 2 {
		t.Errorf("cache holds %d chains, want 2", n)
	}
	off := New(Config{Roots: certtest.Pool(root), CacheSize: -1})
	for range 3 {
		if r := off.Assess(context.Background(), observe(chains[0]), Policy{}, now); r.Status != OK {
			t.Fatalf("status %s %+v", r.Status, r.Problems)
		}
	}
	if n := off.verifies.Load(); n != 3 {
		t.Errorf("without a cache: %d verifications, want 3", n)
	}
}

func benchmarkAssess(b *testing.B, cacheSize int) {
	root := certtest.NewRootCA("Bench Root")
	inter := root.Intermediate("Bench Intermediate")
	obs := observe(certtest.Chain(inter.Leaf([]string{"a.test"}), &inter.Cert))
	a := New(Config{Roots: certtest.Pool(root), CacheSize: cacheSize})
	pol := Policy{Hostname: "a.test"}
	if r := a.Assess(context.Background(), obs, pol, now); r.Status != OK {
		b.Fatalf("status %s %+v", r.Status, r.Problems)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Assess(context.Background(), obs, pol, now)
		}
	})
}

// BenchmarkAssessSharedChain is many endpoints serving one chain: parsed and
// verified once, then served from the cache.
func BenchmarkAssessSharedChain(b *testing.B) { benchmarkAssess(b, 0) }

// BenchmarkAssessColdCache parses and verifies on every call.
func BenchmarkAssessColdCache(b *testing.B) { benchmarkAssess(b, -1) }
