package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// checkTeamsPayload checks what a Teams Workflows / incoming webhook
// checks of an Adaptive Card message.
func checkTeamsPayload(body []byte) error {
	if len(body) >= 28*1000 {
		return fmt.Errorf("payload of %d bytes, over the 28 KB limit", len(body))
	}
	var p struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string          `json:"contentType"`
			ContentURL  *string         `json:"contentUrl"`
			Content     json.RawMessage `json:"content"`
		} `json:"attachments"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if p.Type != "message" {
		return fmt.Errorf("type %q, want message", p.Type)
	}
	if len(p.Attachments) != 1 {
		return fmt.Errorf("%d attachments, want 1", len(p.Attachments))
	}
	a := p.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" {
		return fmt.Errorf("contentType %q", a.ContentType)
	}
	var card struct {
		Type    string           `json:"type"`
		Version string           `json:"version"`
		Body    []map[string]any `json:"body"`
		Actions []map[string]any `json:"actions"`
	}
	if err := json.Unmarshal(a.Content, &card); err != nil {
		return fmt.Errorf("content: %v", err)
	}
	if card.Type != "AdaptiveCard" {
		return fmt.Errorf("content.type %q", card.Type)
	}
	if card.Version == "" || card.Version > "1.5" || len(card.Version) != 3 {
		return fmt.Errorf("content.version %q, want <= 1.5", card.Version)
	}
	if len(card.Body) == 0 {
		return errors.New("empty body")
	}
	var element func(e map[string]any) error
	element = func(e map[string]any) error {
		switch e["type"] {
		case "TextBlock":
			if s, _ := e["text"].(string); s == "" {
				return errors.New("TextBlock without text")
			}
		case "FactSet":
			facts, _ := e["facts"].([]any)
			if len(facts) == 0 {
				return errors.New("FactSet without facts")
			}
			for _, f := range facts {
				m, _ := f.(map[string]any)
				title, ok1 := m["title"].(string)
				value, ok2 := m["value"].(string)
				if !ok1 || !ok2 || title == "" || value == "" {
					return fmt.Errorf("fact %v is not title+value strings", f)
				}
			}
		case "Container":
			items, _ := e["items"].([]any)
			if len(items) == 0 {
				return errors.New("empty Container")
			}
			for _, it := range items {
				m, _ := it.(map[string]any)
				if err := element(m); err != nil {
					return err
				}
			}
		case "ColumnSet":
		default:
			return fmt.Errorf("unknown element type %v", e["type"])
		}
		return nil
	}
	for _, e := range card.Body {
		if err := element(e); err != nil {
			return err
		}
	}
	for _, act := range card.Actions {
		if act["type"] != "Action.OpenUrl" {
			return fmt.Errorf("action type %v", act["type"])
		}
		if u, _ := act["url"].(string); !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return fmt.Errorf("Action.OpenUrl without url: %v", act)
		}
	}
	return nil
}

func TestTeamsSend(t *testing.T) {
	// Workflows answer 202 Accepted.
	f := newFakeReceiver(t, checkTeamsPayload, "", http.StatusAccepted)
	s, err := NewSender(TypeTeams, ChannelConfig{URL: f.URL + "/workflows/abc/triggers/manual/paths/invoke?sig=XYZ"}, testSenderOptions())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ans, err := s.Send(ctx, Message{Key: "k", Items: []Item{expiredItem()}})
	if err != nil || ans.Code != http.StatusAccepted {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	body, _ := f.last(t)
	for _, want := range []string{`"color":"attention"`, `"title":"Days left","value":"-2"`, `"title":"Expires","value":"2026-06-13T12:00:00Z"`,
		`"url":"https://certmon.example.com/monitors/7"`, `"title":"Problems"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("card lacks %s:\n%s", want, body)
		}
	}

	// Recovered is "good".
	rec := reminderItem(1)
	rec.Kind, rec.Severity = kindRecovered, "info"
	if _, err := s.Send(ctx, Message{Key: "r", Items: []Item{rec}}); err != nil {
		t.Fatal(err)
	}
	if body, _ := f.last(t); !strings.Contains(string(body), `"color":"good"`) {
		t.Errorf("recovered card not good:\n%s", body)
	}

	// A group: one container per item up to 25, "and N more", and
	// always under 28 KB even with long texts.
	var items []Item
	for i := range 60 {
		it := reminderItem(i)
		it.Text = strings.Repeat("very long text ", 100)
		items = append(items, it)
	}
	if _, err := s.Send(ctx, Message{Key: "g", Items: items}); err != nil {
		t.Fatalf("group: %v", err)
	}
	body, _ = f.last(t)
	if n := strings.Count(string(body), `"type":"Container"`); n == 0 || n > teamsMaxItems {
		t.Errorf("%d containers", n)
	}
	if !strings.Contains(string(body), fmt.Sprintf("and %d more", 60-strings.Count(string(body), `"type":"Container"`))) {
		t.Errorf("group card lacks the remainder count")
	}
	if !strings.Contains(string(body), "60 alerts: 60 warning") {
		t.Errorf("group card lacks the heading")
	}
}

func TestTeamsLegacyFailure(t *testing.T) {
	// The old connectors answer 200 and put the failure in the text.
	for _, tt := range []struct {
		body      string
		wantErr   bool
		permanent bool
	}{
		{"1", false, false},
		{"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429 with ContextId abc", true, false},
		{"Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 413 with ContextId abc", true, true},
	} {
		f := newFakeReceiver(t, checkTeamsPayload, tt.body, http.StatusOK)
		s, _ := NewSender(TypeTeams, ChannelConfig{URL: f.URL + "/webhookb2/x"}, testSenderOptions())
		_, err := s.Send(context.Background(), Message{Key: "k", Items: []Item{reminderItem(0)}})
		if (err != nil) != tt.wantErr || Permanent(err) != tt.permanent {
			t.Errorf("body %q: err %v (permanent %v)", tt.body, err, Permanent(err))
		}
	}
}
