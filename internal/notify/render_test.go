package notify

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

var fixtureAt = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

// expiredItem is a critical item whose target and text try to inject
// markup, so every renderer's escaping is exercised.
func expiredItem() Item {
	return Item{
		Key: "evt-1:chan-1", EventID: 1, Kind: kindExpired, Severity: "critical", Status: assess.Critical,
		At: fixtureAt, Text: `example.com:443 <script>alert("x")</script> expired 2 days ago`,
		MonitorID: 7, Target: "<script>alert(1)</script>.example.com:443", Tags: []string{"prod", "web"},
		DaysLeft: -2, NotAfter: fixtureAt.AddDate(0, 0, -2),
		Problems: []assess.Problem{{Code: assess.CodeExpired, Severity: assess.SeverityCritical, Message: "certificate expired 2 days ago"}},
		Link:     "https://certmon.example.com/monitors/7",
	}
}

func reminderItem(i int) Item {
	return Item{
		Key: fmt.Sprintf("evt-%d", 100+i), EventID: int64(100 + i), Kind: kindExpiryReminder, Severity: "warning", Status: assess.Warning,
		At: fixtureAt, Text: fmt.Sprintf("host%d.example.com:443: certificate expires in 14 days", i),
		MonitorID: int64(100 + i), Target: fmt.Sprintf("host%d.example.com:443", i),
		DaysLeft: 14, NotAfter: fixtureAt.AddDate(0, 0, 14),
		Link: fmt.Sprintf("https://certmon.example.com/monitors/%d", 100+i),
	}
}

func TestItemTitles(t *testing.T) {
	changed := reminderItem(1)
	changed.Kind, changed.Severity, changed.Status = kindCertificateChanged, "info", assess.OK
	changed.Data = map[string]any{"change": "renewed", "old_not_after": "2026-07-01T00:00:00Z", "new_not_after": time.Date(2026, 9, 29, 0, 0, 0, 0, time.UTC)}

	invalid := reminderItem(2)
	invalid.Kind, invalid.Severity, invalid.Status = kindInvalid, "critical", assess.Critical
	invalid.Problems = []assess.Problem{
		{Code: "WEAK_KEY", Severity: assess.SeverityWarning, Message: "RSA key is 1024 bits"},
		{Code: "UNTRUSTED", Severity: assess.SeverityCritical, Message: "chain does not verify"},
		{Code: "HOSTNAME", Severity: assess.SeverityCritical, Message: "name mismatch"},
	}

	unreachable := reminderItem(3)
	unreachable.Kind, unreachable.Severity, unreachable.Status = kindUnreachable, "critical", assess.Unknown
	unreachable.NotAfter = time.Time{}
	unreachable.Problems = []assess.Problem{{Code: "CONNECT", Severity: assess.SeverityCritical, Message: "connection refused"}}

	recovered := reminderItem(4)
	recovered.Kind, recovered.Severity, recovered.Status = kindRecovered, "info", assess.OK

	offline := Item{Kind: kindAgentOffline, Severity: "critical", Status: assess.Unknown, At: fixtureAt,
		Text: "agent berlin-1 (pool eu) offline since 2026-06-15T11:00:00Z",
		Data: map[string]any{"agent_id": "agt_1", "pool": "eu", "last_seen": "2026-06-15T11:00:00Z"}}
	keyExp := Item{Kind: kindAgentKeyExpiring, Severity: "warning", Data: map[string]any{"agent_id": "agt_2", "key_expires_at": "2026-07-01T00:00:00Z"}}
	online := Item{Kind: kindAgentOnline, Severity: "info", Data: map[string]any{"agent_id": "agt_3"}}

	tomorrow := reminderItem(5)
	tomorrow.DaysLeft = 1

	tests := []struct {
		item  Item
		title string
		fact  string // a "Title: value" that must be among the facts
	}{
		{expiredItem(), "CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired", "Expires: 2026-06-13T12:00:00Z"},
		{reminderItem(0), "WARNING host0.example.com:443 — certificate expires in 14 days", "Days left: 14"},
		{tomorrow, "WARNING host5.example.com:443 — certificate expires in 1 day", ""},
		{changed, "INFO host1.example.com:443 — certificate renewed (expires 2026-09-29, was 2026-07-01)", "Previous expiry: 2026-07-01T00:00:00Z"},
		{invalid, "CRITICAL host2.example.com:443 — certificate invalid: chain does not verify; name mismatch", "Status: CRITICAL"},
		{unreachable, "CRITICAL host3.example.com:443 — unreachable: connection refused", "Status: UNKNOWN"},
		{recovered, "RECOVERED host4.example.com:443 — recovered, status OK", ""},
		{offline, "CRITICAL agent berlin-1 (pool eu) offline since 2026-06-15T11:00:00Z", "Pool: eu"},
		{keyExp, "WARNING key of agent agt_2 expiring", "Key expires: 2026-07-01T00:00:00Z"},
		{online, "INFO agent agt_3 online again", "Agent: agt_3"},
		{Item{}, "INFO event", ""},
		{Item{Kind: "something_new", Status: assess.Warning}, "WARNING something new", ""},
	}
	for _, tt := range tests {
		t.Run(tt.title, func(t *testing.T) {
			v := viewOf(tt.item)
			if v.Title != tt.title {
				t.Errorf("title = %q\nwant    %q", v.Title, tt.title)
			}
			if tt.fact == "" {
				return
			}
			var facts []string
			for _, f := range v.Facts {
				facts = append(facts, f.Title+": "+f.Value)
			}
			if !strings.Contains(strings.Join(facts, "\n"), tt.fact) {
				t.Errorf("facts %q lack %q", facts, tt.fact)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	one := Message{Key: "k", Items: []Item{expiredItem()}}
	if got, want := emailSubject(one), "[certmon] CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired"; got != want {
		t.Errorf("subject = %q, want %q", got, want)
	}
	var items []Item
	for i := range 9 {
		items = append(items, reminderItem(i))
	}
	items = append(items, expiredItem(), expiredItem(), expiredItem())
	group := Message{Key: "g", Items: items}
	if got, want := emailSubject(group), "[certmon] 12 alerts: 3 critical, 9 warning"; got != want {
		t.Errorf("group subject = %q, want %q", got, want)
	}
	if got := emailSubject(Message{Subject: "Weekly report\r\nBcc: evil@example.com", Items: items}); got != "Weekly report Bcc: evil@example.com" {
		t.Errorf("override subject = %q (must be one line)", got)
	}
	if got := emailSubject(Message{Test: true, Items: []Item{reminderItem(0)}}); !strings.HasPrefix(got, "[certmon] TEST WARNING") {
		t.Errorf("test subject = %q", got)
	}
}

func TestRenderEmailBodies(t *testing.T) {
	m := Message{Key: "k", Items: []Item{expiredItem()}}
	html := renderHTML(m)
	if strings.Contains(html, "<script>") {
		t.Fatalf("HTML contains unescaped markup:\n%s", html)
	}
	if !strings.Contains(html, "&lt;script&gt;alert(1)&lt;/script&gt;.example.com:443") {
		t.Errorf("HTML lacks the escaped target:\n%s", html)
	}
	if !strings.Contains(html, `href="https://certmon.example.com/monitors/7"`) {
		t.Errorf("HTML lacks the link")
	}
	text := renderText(m)
	for _, want := range []string{"CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired", "Days left: -2",
		"Expires:   2026-06-13T12:00:00Z", "[critical] EXPIRED: certificate expired 2 days ago", "Open: https://certmon.example.com/monitors/7"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// A javascript: link is dropped, not rendered.
	bad := expiredItem()
	bad.Link = "javascript:alert(1)"
	if h := renderHTML(Message{Items: []Item{bad}}); strings.Contains(h, "javascript") {
		t.Errorf("HTML keeps a javascript: link")
	}

	// A big group is cut with a count.
	var items []Item
	for i := range maxEmailItems + 5 {
		items = append(items, reminderItem(i))
	}
	if text := renderText(Message{Items: items}); !strings.Contains(text, "… and 5 more.") {
		t.Errorf("group text lacks the remainder count")
	}
}

// TestRenderHostileInput feeds every renderer input that could break it:
// nothing may panic, every payload must be valid JSON within its limits.
func TestRenderHostileInput(t *testing.T) {
	var nilURL *url.URL // a fmt.Stringer whose String panics
	weird := Item{
		Kind: kindCertificateChanged, Severity: "\x00", Status: "\xff\xfe",
		Text:   strings.Repeat("long \r\n line ", 5000),
		Target: "a\u2028b\x1b[31mred",
		Tags:   make([]string, 500),
		Data: map[string]any{
			"fn": func() {}, "ch": make(chan int), "nan": math.NaN(), "inf": math.Inf(1),
			"change": 42, "old_not_after": []int{1}, "new_not_after": nilURL, "nil": nil,
			"nested": map[string]any{"bad": func() {}},
		},
		Problems: make([]assess.Problem, 1000),
		Link:     "https://" + strings.Repeat("x", 5000),
		DaysLeft: math.MinInt, NotAfter: time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
	}
	self := map[string]any{}
	self["self"] = self // json refuses it; printing it must not recurse
	weird.Data["cycle"] = self
	var items []Item
	for range 300 {
		items = append(items, weird)
	}
	for _, m := range []Message{{}, {Test: true}, {Items: []Item{weird}}, {Items: items, Subject: strings.Repeat("s", 10000)}} {
		_ = renderText(m)
		_ = renderHTML(m)
		if b := teamsPayload(m, SenderOptions{BaseURL: "https://certmon.example.com"}); len(b) > teamsMaxBytes || !json.Valid(b) {
			t.Errorf("teams payload: %d bytes, valid %v", len(b), json.Valid(b))
		}
		sb, err := json.Marshal(slackPayload(m, SenderOptions{}))
		if err != nil {
			t.Fatalf("slack payload: %v", err)
		}
		if err := checkSlackPayload(sb); err != nil {
			t.Errorf("slack payload: %v", err)
		}
		if _, err := json.Marshal(webhookPayload(m, fixtureAt)); err != nil {
			t.Errorf("webhook payload: %v", err)
		}
	}
}
