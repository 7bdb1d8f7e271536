// Package revocation fetches what judging a chain needs from the network:
// issuer certificates named by AIA caIssuers, OCSP responses and CRLs. Every
// fetch is bounded in time and size and cached; any failure yields
// "unknown", never "revoked".
package revocation

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Size limits per kind of response. Certificates and OCSP responses are a
// few KiB; large public CAs publish CRLs of several MiB.
const (
	maxAIABytes  = 64 << 10
	maxOCSPBytes = 1 << 20
	maxCRLBytes  = 10 << 20
)

// Cache sizes and lifetimes.
const (
	aiaCacheSize  = 1000
	ocspCacheSize = 10000
	// CRLs are big once parsed; few distinct ones serve most certificates.
	crlCacheSize = 32
	aiaTTL       = time.Hour
	// maxTTL caps how long an OCSP response or CRL is reused even when its
	// nextUpdate lies further ahead, so a new revocation shows within a day.
	maxTTL = 24 * time.Hour
	// minTTL is how long a response without (or with a past) nextUpdate is
	// reused, so a stale 10 MiB CRL is not downloaded for every target.
	minTTL = 5 * time.Minute
	// downTTL is how long a URL that failed is skipped, so a dead responder
	// costs one timeout per interval instead of one per certificate.
	downTTL = 30 * time.Second
	// maxURLs bounds how many responder or CRL URLs one certificate may make
	// us try.
	maxURLs = 4
	// ocspGetLimit is RFC 5019's bound for a GET request: the base64 form
	// of the request, before URL escaping.
	ocspGetLimit = 255
	// clockSkew tolerated between us and a responder.
	clockSkew = 5 * time.Minute
)

// Options configure a Fetcher.
type Options struct {
	// Timeout bounds each HTTP exchange, body included (default 10s).
	Timeout time.Duration
	// Transport replaces the HTTP transport; nil uses a clone of
	// http.DefaultTransport (which honours HTTP_PROXY).
	Transport http.RoundTripper
	Logger    *slog.Logger
	// Now is the wall clock for the AIA cache and the back-off from failed
	// URLs (default time.Now). OCSP and CRL freshness use the instant given
	// to Check.
	Now func() time.Time
}

// Fetcher is the network side of assessment: it implements
// assess.IssuerFetcher and assess.RevocationChecker. It is safe for
// concurrent use.
type Fetcher struct {
	client  *http.Client
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
	// getLimit is ocspGetLimit; tests lower it to exercise POST.
	getLimit int

	aia  *cache[[]*x509.Certificate]
	ocsp *cache[*ocspAnswer]
	crl  *cache[*crlInfo]
	down *cache[error]
}

// NewFetcher returns a Fetcher.
func NewFetcher(opts Options) *Fetcher {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rt := opts.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = opts.Timeout
		t.MaxResponseHeaderBytes = 64 << 10
		rt = t
	}
	return &Fetcher{
		client: &http.Client{
			Transport: rt,
			// The per-request context carries the deadline; this is a backstop.
			Timeout: opts.Timeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 {
					return errors.New("too many redirects")
				}
				return nil
			},
		},
		timeout:  opts.Timeout,
		log:      opts.Logger,
		now:      opts.Now,
		getLimit: ocspGetLimit,
		aia:      newCache[[]*x509.Certificate](aiaCacheSize),
		ocsp:     newCache[*ocspAnswer](ocspCacheSize),
		crl:      newCache[*crlInfo](crlCacheSize),
		down:     newCache[error](1000),
	}
}

// errNotHTTP is returned for ldap://, https:// and other URLs: only plain
// HTTP is fetched (revocation data is signed, and fetching it over TLS could
// recurse into the very checks it serves).
var errNotHTTP = errors.New("only http:// URLs are fetched")

// fetch does one bounded HTTP exchange and returns the body. body nil means
// GET, otherwise POST with contentType. Errors do not repeat the URL (a GET
// URL may carry a whole OCSP request); callers name what they asked.
func (f *Fetcher) fetch(ctx context.Context, rawURL string, body []byte, contentType string, limit int64) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, errNotHTTP
	}
	if err, ok := f.down.get(u.Host, f.now()); ok {
		return nil, fmt.Errorf("skipped: %s failed recently: %w", u.Host, err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	method := http.MethodGet
	var rd io.Reader
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "certmon")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no response within %s", f.timeout)
		}
		f.markDown(ctx, u.Host, err)
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		f.markDown(ctx, u.Host, err)
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return data, nil
}

// markDown remembers a host that failed at the transport level, unless the
// failure was our caller giving up.
func (f *Fetcher) markDown(ctx context.Context, host string, err error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	f.down.put(host, err, f.now().Add(downTTL))
	f.log.Debug("revocation fetch failed", "host", host, "err", err)
}

// capTTL bounds until when a response with the given nextUpdate is reused.
func capTTL(now, nextUpdate time.Time) time.Time {
	switch {
	case nextUpdate.IsZero() || nextUpdate.Before(now.Add(minTTL)):
		return now.Add(minTTL)
	case nextUpdate.After(now.Add(maxTTL)):
		return now.Add(maxTTL)
	}
	return nextUpdate
}
