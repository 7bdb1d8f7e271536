package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// checkSlackPayload checks what Slack checks of an incoming-webhook
// message with blocks (the limits of Block Kit).
func checkSlackPayload(body []byte) error {
	var p struct {
		Text   string           `json:"text"`
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if strings.TrimSpace(p.Text) == "" {
		return errors.New("text (the fallback) is missing")
	}
	if len(p.Blocks) == 0 || len(p.Blocks) > 50 {
		return fmt.Errorf("%d blocks, want 1..50", len(p.Blocks))
	}
	textObj := func(v any, limit int, types ...string) error {
		o, ok := v.(map[string]any)
		if !ok {
			return errors.New("text object missing")
		}
		typ, _ := o["type"].(string)
		if !slices.Contains(types, typ) {
			return fmt.Errorf("text type %q", typ)
		}
		s, _ := o["text"].(string)
		if s == "" || utf8.RuneCountInString(s) > limit {
			return fmt.Errorf("text of %d characters, want 1..%d", utf8.RuneCountInString(s), limit)
		}
		return nil
	}
	button := func(v any) error {
		b, _ := v.(map[string]any)
		if b["type"] != "button" {
			return fmt.Errorf("element type %v", b["type"])
		}
		if err := textObj(b["text"], 75, "plain_text"); err != nil {
			return fmt.Errorf("button: %v", err)
		}
		if u, _ := b["url"].(string); u == "" || len(u) > 3000 {
			return fmt.Errorf("button url of %d characters", len(u))
		}
		return nil
	}
	for i, b := range p.Blocks {
		var err error
		switch b["type"] {
		case "header":
			err = textObj(b["text"], 150, "plain_text")
		case "section":
			if b["text"] == nil && b["fields"] == nil {
				err = errors.New("section without text or fields")
			}
			if b["text"] != nil && err == nil {
				err = textObj(b["text"], 3000, "mrkdwn", "plain_text")
			}
			if fs, ok := b["fields"].([]any); ok && err == nil {
				if len(fs) > 10 {
					err = fmt.Errorf("%d fields", len(fs))
				}
				for _, f := range fs {
					if err == nil {
						err = textObj(f, 2000, "mrkdwn", "plain_text")
					}
				}
			}
			if a := b["accessory"]; a != nil && err == nil {
				err = button(a)
			}
		case "context":
			els, _ := b["elements"].([]any)
			if len(els) == 0 || len(els) > 10 {
				err = fmt.Errorf("context with %d elements", len(els))
			}
			for _, e := range els {
				if err == nil {
					err = textObj(e, 3000, "mrkdwn", "plain_text")
				}
			}
		case "actions":
			els, _ := b["elements"].([]any)
			if len(els) == 0 || len(els) > 25 {
				err = fmt.Errorf("actions with %d elements", len(els))
			}
			for _, e := range els {
				if err == nil {
					err = button(e)
				}
			}
		case "divider":
		default:
			err = fmt.Errorf("unknown type %v", b["type"])
		}
		if err != nil {
			return fmt.Errorf("block %d (%v): %v", i, b["type"], err)
		}
	}
	return nil
}

// fakeReceiver is an httptest server on loopback that validates each
// POST with check and keeps the bodies it accepted.
type fakeReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
}

func newFakeReceiver(t *testing.T, check func(body []byte) error, okBody string, okCode int) *fakeReceiver {
	t.Helper()
	f := &fakeReceiver{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			http.Error(w, "invalid_request", http.StatusBadRequest)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read error", http.StatusBadRequest)
			return
		}
		if err := check(body); err != nil {
			t.Errorf("receiver refused the payload: %v\n%s", err, body)
			http.Error(w, "invalid_payload", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.bodies = append(f.bodies, body)
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		w.WriteHeader(okCode)
		io.WriteString(w, okBody)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeReceiver) last(t *testing.T) ([]byte, http.Header) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("receiver got nothing")
	}
	return f.bodies[len(f.bodies)-1], f.headers[len(f.headers)-1]
}

func testSenderOptions() SenderOptions {
	return SenderOptions{Timeout: 5 * time.Second, BaseURL: "https://certmon.example.com"}
}

func TestSlackSend(t *testing.T) {
	f := newFakeReceiver(t, checkSlackPayload, "ok", http.StatusOK)
	s, err := NewSender(TypeSlack, ChannelConfig{URL: f.URL + "/services/T000/B000/XXXXXXXXXXXX"}, testSenderOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	ans, err := s.Send(ctx, Message{Key: "k1", Items: []Item{expiredItem()}})
	if err != nil || ans.Code != 200 || ans.Body != "ok" {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	body, h := f.last(t)
	if h.Get("User-Agent") != "certmon" {
		t.Errorf("User-Agent %q", h.Get("User-Agent"))
	}
	var p struct {
		Text   string           `json:"text"`
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Text, "&lt;script&gt;") || strings.Contains(p.Text, "<script>") {
		t.Errorf("fallback text not escaped: %q", p.Text)
	}
	if !strings.Contains(string(body), `"url":"https://certmon.example.com/monitors/7"`) {
		t.Errorf("no button to the monitor: %s", body)
	}
	if p.Blocks[0]["type"] != "header" {
		t.Errorf("first block %v, want header", p.Blocks[0]["type"])
	}

	// A big group: the first items and "and N more", within 50 blocks.
	var items []Item
	for i := range 120 {
		items = append(items, reminderItem(i))
	}
	if _, err := s.Send(ctx, Message{Key: "g", Items: items}); err != nil {
		t.Fatalf("group Send: %v", err)
	}
	body, _ = f.last(t)
	if !strings.Contains(string(body), "and 100 more") {
		t.Errorf("group message lacks the remainder count")
	}
	if !strings.Contains(string(body), "120 alerts: 120 warning") {
		t.Errorf("group message lacks the heading")
	}

	// A test message with no items is still a valid message.
	if _, err := s.Send(ctx, Message{Key: "t", Test: true}); err != nil {
		t.Fatalf("test Send: %v", err)
	}
}

func TestSlackErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/no_service":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no_service")
		case "/forbidden":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "action_prohibited")
		}
	}))
	defer srv.Close()
	for _, path := range []string{"/no_service", "/forbidden"} {
		s, err := NewSender(TypeSlack, ChannelConfig{URL: srv.URL + path}, testSenderOptions())
		if err != nil {
			t.Fatal(err)
		}
		ans, err := s.Send(context.Background(), Message{Key: "k", Items: []Item{reminderItem(0)}})
		if !Permanent(err) || ans.Body != strings.TrimPrefix(path, "/") && ans.Body != "action_prohibited" {
			t.Errorf("%s: Send = %+v, %v; want permanent with body", path, ans, err)
		}
	}
}
