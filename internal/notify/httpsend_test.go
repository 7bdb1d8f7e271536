package notify

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// secretPath is the credential part of a webhook URL: no error may show it.
const secretPath = "/services/T000/B000/SECRETSECRETSECRET"

func sendTo(t *testing.T, typ, rawURL string, opt SenderOptions) (Answer, time.Duration, error) {
	t.Helper()
	s, err := NewSender(typ, ChannelConfig{URL: rawURL}, opt)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ans, err := s.Send(context.Background(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	return ans, time.Since(start), err
}

func assertNoSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "SECRETSECRET") {
		t.Errorf("error shows the secret URL: %v", err)
	}
}

func TestHTTPStatusClassification(t *testing.T) {
	retryDate := time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case strings.HasPrefix(r.URL.Path, "/429"):
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, "rate_limited")
		case strings.HasPrefix(r.URL.Path, "/503"):
			w.Header().Set("Retry-After", retryDate)
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(r.URL.Path, "/500"):
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "  internal error \n")
		case strings.HasPrefix(r.URL.Path, "/408"):
			w.WriteHeader(http.StatusRequestTimeout)
		case strings.HasPrefix(r.URL.Path, "/400"):
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, "invalid_payload")
		case strings.HasPrefix(r.URL.Path, "/410"):
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, "channel_is_archived")
		default:
			io.WriteString(w, "ok")
		}
	}))
	defer srv.Close()

	tests := []struct {
		path       string
		code       int
		wantErr    bool
		permanent  bool
		body       string
		retryAfter time.Duration // exact, or approximate for the date
	}{
		{"/200", 200, false, false, "ok", 0},
		{"/429", 429, true, false, "rate_limited", 7 * time.Second},
		{"/503", 503, true, false, "", 90 * time.Second},
		{"/500", 500, true, false, "internal error", 0},
		{"/408", 408, true, false, "", 0},
		{"/400", 400, true, true, "invalid_payload", 0},
		{"/410", 410, true, true, "channel_is_archived", 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			ans, _, err := sendTo(t, TypeSlack, srv.URL+tt.path+secretPath, testSenderOptions())
			if (err != nil) != tt.wantErr || Permanent(err) != tt.permanent {
				t.Fatalf("err = %v (permanent %v), want error %v permanent %v", err, Permanent(err), tt.wantErr, tt.permanent)
			}
			if ans.Code != tt.code || ans.Body != tt.body {
				t.Errorf("answer %+v, want code %d body %q", ans, tt.code, tt.body)
			}
			var se *SendError
			if err != nil && (!errors.As(err, &se) || se.Answer.Code != tt.code) {
				t.Errorf("error %v does not carry the answer", err)
			}
			if d := ans.RetryAfter - tt.retryAfter; d < -2*time.Second || d > 2*time.Second {
				t.Errorf("RetryAfter = %v, want %v", ans.RetryAfter, tt.retryAfter)
			}
			assertNoSecret(t, err)
		})
	}
}

func TestHTTPNoAnswerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Never answers. Reading the body lets the server notice the
		// client hanging up; release frees it in any case.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	opt := testSenderOptions()
	opt.Timeout = 300 * time.Millisecond
	ans, took, err := sendTo(t, TypeWebhook, srv.URL+secretPath, opt)
	if err == nil || Permanent(err) || ans.Code != 0 {
		t.Fatalf("Send = %+v, %v; want a retryable error without answer", ans, err)
	}
	if took > 2*time.Second {
		t.Errorf("took %v with a 300ms timeout", took)
	}
	if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q does not say it timed out", err)
	}
	assertNoSecret(t, err)
}

func TestHTTPHugeAnswerIsBounded(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		chunk := []byte(strings.Repeat("x", 4096))
		// An endless answer, a little at a time: only a bounded read
		// lets Send return before the receiver stops (it never does).
		for r.Context().Err() == nil && written.Load() < 64<<20 {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(time.Millisecond)
		}
	}))
	defer srv.Close()
	opt := testSenderOptions()
	opt.Timeout = 10 * time.Second
	ans, took, err := sendTo(t, TypeSlack, srv.URL+secretPath, opt)
	if err == nil || Permanent(err) || ans.Code != 500 {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	if len(ans.Body) > maxAnswerBody {
		t.Errorf("answer body of %d bytes kept", len(ans.Body))
	}
	if took > 5*time.Second {
		t.Errorf("took %v: the read was not bounded", took)
	}

	// A trickling answer is cut by the timeout instead.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		for r.Context().Err() == nil {
			if _, err := w.Write([]byte("y")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	}))
	defer slow.Close()
	opt.Timeout = 300 * time.Millisecond
	_, took, err = sendTo(t, TypeSlack, slow.URL+secretPath, opt)
	if err == nil || took > 2*time.Second {
		t.Errorf("slow answer: err %v after %v", err, took)
	}
}

func TestHTTPRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Add(1)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	ans, _, err := sendTo(t, TypeWebhook, srv.URL+secretPath, testSenderOptions())
	if !Permanent(err) || ans.Code != http.StatusTemporaryRedirect {
		t.Fatalf("Send = %+v, %v; want a permanent failure with the 307", ans, err)
	}
	if followed.Load() != 0 {
		t.Error("the redirect was followed")
	}
	assertNoSecret(t, err)
}

func TestHTTPConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ans, _, err := sendTo(t, TypeTeams, "http://"+addr+secretPath, testSenderOptions())
	if err == nil || Permanent(err) || ans.Code != 0 {
		t.Fatalf("Send = %+v, %v; want retryable", ans, err)
	}
	if !strings.Contains(err.Error(), "http://"+addr+"/…") {
		t.Errorf("error %q does not name the receiver in redacted form", err)
	}
	assertNoSecret(t, err)
}

func TestHTTPTLSAndDialer(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()

	// Not trusted without the test CA.
	_, _, err := sendTo(t, TypeSlack, srv.URL+secretPath, testSenderOptions())
	if err == nil || Permanent(err) {
		t.Fatalf("untrusted receiver: %v", err)
	}
	assertNoSecret(t, err)

	// Trusted through RootCAs, dialled through opt.Dialer.
	var dials atomic.Int32
	opt := testSenderOptions()
	opt.RootCAs = x509Pool(srv)
	opt.Dialer = &net.Dialer{Control: func(string, string, syscall.RawConn) error { dials.Add(1); return nil }}
	ans, _, err := sendTo(t, TypeSlack, srv.URL+secretPath, opt)
	if err != nil || ans.Body != "ok" {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	if dials.Load() == 0 {
		t.Error("opt.Dialer was not used")
	}
}

func x509Pool(srv *httptest.Server) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(srv.Certificate())
	return p
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"7", 7 * time.Second}, {" 120 ", 2 * time.Minute}, {"0", 0}, {"-5", 0}, {"soon", 0},
		{"99999999999999", maxRetryAfter},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.AddDate(1, 0, 0).Format(http.TimeFormat), maxRetryAfter},
	} {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
