package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

func TestWebhookSend(t *testing.T) {
	const secret = "whsec-test"
	type received struct {
		body   []byte
		header http.Header
		verr   error
	}
	got := make(chan received, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		verr := VerifySignature(secret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature), time.Now(), time.Minute)
		got <- received{body, r.Header.Clone(), verr}
		if verr != nil {
			http.Error(w, verr.Error(), http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	s, err := NewSender(TypeWebhook, ChannelConfig{URL: srv.URL + "/hook", Secret: secret}, testSenderOptions())
	if err != nil {
		t.Fatal(err)
	}
	agent := Item{Key: "evt-9", EventID: 9, Kind: kindAgentOffline, Severity: "critical", Status: assess.Unknown, At: fixtureAt,
		Text: "agent a (pool p) offline", Data: map[string]any{"agent_id": "agt_1", "bad": func() {}}}
	m := Message{Key: "msg-key-1", Items: []Item{expiredItem(), agent}}
	ans, err := s.Send(context.Background(), m)
	if err != nil || ans.Code != http.StatusNoContent {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	r := <-got
	if r.verr != nil {
		t.Fatalf("signature: %v", r.verr)
	}
	if r.header.Get(HeaderKey) != "msg-key-1" || r.header.Get("User-Agent") != "certmon" ||
		r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("headers %v", r.header)
	}
	if ts, err := strconv.ParseInt(r.header.Get(HeaderTimestamp), 10, 64); err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
		t.Errorf("timestamp %q", r.header.Get(HeaderTimestamp))
	}

	// The documented schema, field by field.
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p["version"] != 1.0 || p["type"] != "certmon.notification" || p["key"] != "msg-key-1" || p["test"] != false {
		t.Errorf("envelope %v", p)
	}
	if _, err := time.Parse(time.RFC3339, p["sent_at"].(string)); err != nil {
		t.Errorf("sent_at: %v", err)
	}
	items := p["items"].([]any)
	if len(items) != 2 {
		t.Fatalf("%d items", len(items))
	}
	first := items[0].(map[string]any)
	for k, want := range map[string]any{"key": "evt-1:chan-1", "event_id": 1.0, "kind": "expired", "severity": "critical",
		"status": "CRITICAL", "at": "2026-06-15T12:00:00Z", "days_left": -2.0, "not_after": "2026-06-13T12:00:00Z"} {
		if first[k] != want {
			t.Errorf("items[0].%s = %v, want %v", k, first[k], want)
		}
	}
	mon := first["monitor"].(map[string]any)
	if mon["id"] != 7.0 || mon["target"] != "<script>alert(1)</script>.example.com:443" || mon["link"] != "https://certmon.example.com/monitors/7" {
		t.Errorf("monitor %v", mon)
	}
	if probs := first["problems"].([]any); len(probs) != 1 || probs[0].(map[string]any)["code"] != "EXPIRED" {
		t.Errorf("problems %v", probs)
	}
	second := items[1].(map[string]any)
	for _, k := range []string{"monitor", "days_left", "not_after"} {
		if v, ok := second[k]; !ok || v != nil {
			t.Errorf("agent item %s = %v (present %v), want null", k, v, ok)
		}
	}
	data := second["data"].(map[string]any)
	if data["agent_id"] != "agt_1" || data["bad"] != "(func(), not encodable)" {
		t.Errorf("data %v", data)
	}
	if probs, ok := second["problems"].([]any); !ok || len(probs) != 0 {
		t.Errorf("problems of an item without any = %v, want []", second["problems"])
	}

	// Without a secret there is no signature header.
	s2, _ := NewSender(TypeWebhook, ChannelConfig{URL: srv.URL + "/hook"}, testSenderOptions())
	_, err = s2.Send(context.Background(), Message{Key: "k2", Test: true})
	r = <-got
	if r.header.Get(HeaderSignature) != "" || !errors.Is(r.verr, ErrMissingSignature) {
		t.Errorf("unsigned send: signature %q, verify %v", r.header.Get(HeaderSignature), r.verr)
	}
	if !Permanent(err) {
		t.Errorf("401 should be permanent, got %v", err)
	}
	var unsigned map[string]any
	_ = json.Unmarshal(r.body, &unsigned)
	if unsigned["test"] != true || len(unsigned["items"].([]any)) != 0 {
		t.Errorf("test message %s", r.body)
	}
}

func TestVerifySignature(t *testing.T) {
	now := time.Unix(1_781_000_000, 0)
	body := []byte(`{"version":1}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Sign("k", ts, body)
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	tests := []struct {
		name    string
		secret  string
		ts      string
		body    []byte
		header  string
		tol     time.Duration
		wantErr error
	}{
		{"valid", "k", ts, body, sig, time.Minute, nil},
		{"default tolerance", "k", ts, body, sig, 0, nil},
		{"wrong secret", "other", ts, body, sig, time.Minute, ErrBadSignature},
		{"changed body", "k", ts, []byte(`{"version":2}`), sig, time.Minute, ErrBadSignature},
		{"changed timestamp", "k", strconv.FormatInt(now.Unix()+1, 10), body, sig, time.Minute, ErrBadSignature},
		{"stale", "k", old, body, Sign("k", old, body), time.Minute, ErrStaleTimestamp},
		{"future", "k", strconv.FormatInt(now.Add(time.Hour).Unix(), 10), body, Sign("k", strconv.FormatInt(now.Add(time.Hour).Unix(), 10), body), time.Minute, ErrStaleTimestamp},
		{"no prefix", "k", ts, body, strings.TrimPrefix(sig, "sha256="), time.Minute, ErrMissingSignature},
		{"not hex", "k", ts, body, "sha256=zz", time.Minute, ErrMissingSignature},
		{"short", "k", ts, body, sig[:20], time.Minute, ErrMissingSignature},
		{"empty header", "k", ts, body, "", time.Minute, ErrMissingSignature},
		{"bad timestamp", "k", "yesterday", body, Sign("k", "yesterday", body), time.Minute, ErrBadTimestamp},
		{"negative timestamp", "k", "-9223372036854775808", body, Sign("k", "-9223372036854775808", body), time.Minute, ErrBadTimestamp},
		{"huge timestamp", "k", "9223372036854775807", body, Sign("k", "9223372036854775807", body), time.Minute, ErrStaleTimestamp},
		{"no secret", "", ts, body, sig, time.Minute, ErrNoSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.secret, tt.ts, tt.body, tt.header, now, tt.tol)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tt.wantErr)
			}
		})
	}
	// A fixed vector, so docs/webhooks.md's openssl example stays true.
	if got, want := Sign("secret", "1700000000", []byte(`{"version":1}`)), fmt.Sprintf("sha256=%s", knownHMAC); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// knownHMAC is `printf '%s' '1700000000.{"version":1}' | openssl dgst -sha256 -hmac secret`.
const knownHMAC = "6c49492c841520e805df0f6652ac4859b2bf8a94b97b7fe2664f0c02e62d2c85"
