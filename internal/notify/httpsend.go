package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds on a receiver's answer: what is read, and what is kept.
const (
	maxAnswerRead = 64 << 10
	maxAnswerBody = 512
	// maxRetryAfter caps a receiver's Retry-After: a year-long wait is
	// a broken header, not advice.
	maxRetryAfter = 24 * time.Hour
)

// poster POSTs JSON to one secret URL. Its errors never contain the
// URL: it is the channel's credential and errors end up in logs and the
// API.
type poster struct {
	url    string
	client *http.Client
	now    func() time.Time
}

func newPoster(rawURL string, opt SenderOptions) *poster {
	dialer := opt.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: opt.Timeout, KeepAlive: 30 * time.Second}
	}
	tr := &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs:    opt.RootCAs,
			MinVersion: tls.VersionTLS12,
		},
		// A custom dialer and TLS config turn HTTP/2 off unless asked.
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    opt.Timeout,
		ResponseHeaderTimeout:  opt.Timeout,
		MaxIdleConns:           4,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &poster{
		url: rawURL,
		client: &http.Client{
			Transport: tr,
			Timeout:   opt.Timeout,
			// A webhook that redirects is misconfigured (or hostile):
			// re-POSTing a signed body elsewhere is not ours to decide.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: time.Now,
	}
}

// post sends body and classifies the answer: 2xx is success; 408, 429
// and 5xx are retryable (429/503 with Retry-After); 3xx and other 4xx
// are permanent; no answer (timeout, refused, TLS) is retryable.
func (p *poster) post(ctx context.Context, body []byte, header http.Header) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, &SendError{Permanent: true, Err: errors.New("cannot build the request: invalid url")}
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	// Teams reads a body without a charset as UTF-16 and halves the
	// size limit; say it.
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "certmon")

	resp, err := p.client.Do(req)
	if err != nil {
		return Answer{}, &SendError{Err: p.redact(err)}
	}
	defer resp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswerRead))
	// A receiver echoing the request line must not leak the URL either.
	ans := Answer{Code: resp.StatusCode, Body: scrub(answerBody(raw), p.url)}

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		// The receiver accepted the message; a body cut short after
		// that changes nothing.
		return ans, nil
	case code >= 300 && code < 400:
		return ans, &SendError{Answer: ans, Permanent: true,
			Err: fmt.Errorf("receiver answered %s; redirects are not followed, check the url", statusText(code))}
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		ans.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), p.now())
		return ans, &SendError{Answer: ans, Err: answerError(code, ans.Body)}
	case code == http.StatusRequestTimeout || code >= 500:
		return ans, &SendError{Answer: ans, Err: answerError(code, ans.Body)}
	case code >= 400:
		return ans, &SendError{Answer: ans, Permanent: true, Err: answerError(code, ans.Body)}
	}
	if rerr != nil {
		return ans, &SendError{Answer: ans, Err: p.redact(rerr)}
	}
	return ans, &SendError{Answer: ans, Err: answerError(resp.StatusCode, ans.Body)}
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

func answerError(code int, body string) error {
	if body == "" {
		return fmt.Errorf("receiver answered %s", statusText(code))
	}
	return fmt.Errorf("receiver answered %s: %s", statusText(code), clip(oneLine(body), 200))
}

// answerBody keeps the start of a reply, trimmed, as valid UTF-8.
func answerBody(raw []byte) string {
	s := clipBytes(string(raw), maxAnswerBody+8) // room for trimming
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	return strings.TrimSpace(clipBytes(s, maxAnswerBody))
}

// parseRetryAfter reads delay-seconds or an HTTP date; zero when absent
// or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now).Round(time.Second)
	}
	return min(max(d, 0), maxRetryAfter)
}

// sendFailure is an error whose text has been scrubbed of the URL but
// that still unwraps to the cause (for errors.Is with timeouts).
type sendFailure struct {
	msg   string
	cause error
}

func (e *sendFailure) Error() string { return e.msg }
func (e *sendFailure) Unwrap() error { return e.cause }

// redact turns a client error into one that names the receiver only as
// RedactURL shows it.
func (p *poster) redact(err error) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	what := "no answer"
	var ne net.Error
	switch {
	case errors.Is(cause, context.Canceled):
		what = "cancelled"
	case errors.Is(cause, context.DeadlineExceeded), errors.As(cause, &ne) && ne.Timeout():
		what = "timed out"
	}
	msg := fmt.Sprintf("POST %s: %s: %v", RedactURL(p.url), what, cause)
	msg = scrub(msg, p.url)
	return &sendFailure{msg: msg, cause: cause}
}

// scrub removes the secret URL, and its path and query on their own,
// from s (a belt to redact's braces: causes rarely quote the URL).
func scrub(s, rawURL string) string {
	if rawURL == "" {
		return s
	}
	s = strings.ReplaceAll(s, rawURL, RedactURL(rawURL))
	if u, err := url.Parse(rawURL); err == nil {
		for _, part := range []string{u.RequestURI(), u.EscapedPath(), u.RawQuery} {
			if len(part) >= 8 {
				s = strings.ReplaceAll(s, part, "/…")
			}
		}
	}
	return s
}
