package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// FuzzChannelPayloads renders hostile event text for every channel: the
// Slack and Teams payloads must stay within what those services accept,
// the webhook body must be JSON carrying every item, and the email HTML
// must never carry markup from the input.
func FuzzChannelPayloads(f *testing.F) {
	f.Add("example.com:443", "certificate expired", "<script>alert(1)</script>", uint8(1))
	f.Add("\x00\xff\xfe", strings.Repeat("x", 5000), "", uint8(60))
	f.Add("a\nb\r\nc", "*bold* _it_ <!here>", "&amp;", uint8(3))
	f.Fuzz(func(t *testing.T, target, text, problem string, n uint8) {
		count := int(n%80) + 1
		// Markers make the input findable in the output.
		target, text, problem = "ZQ"+target+"QZ", "ZQ"+text+"QZ", "ZQ"+problem+"QZ"
		m := Message{Key: "k"}
		for i := range count {
			m.Items = append(m.Items, Item{Key: target + text, Kind: "invalid", Severity: "critical", Status: assess.Critical,
				At: time.Unix(1700000000, 0), Text: text, Target: target, Tags: []string{problem},
				NotAfter: time.Unix(1800000000, 0), DaysLeft: i - 3,
				Problems: []assess.Problem{{Code: "UNTRUSTED", Severity: assess.SeverityCritical, Message: problem}},
				Data:     map[string]any{"target": target}, Link: "https://certmon.example/api/v1/monitors/1"})
		}
		opt := SenderOptions{BaseURL: "https://certmon.example"}
		slack, err := json.Marshal(slackPayload(m, opt))
		if err != nil {
			t.Fatal(err)
		}
		if err := checkSlackPayload(slack); err != nil {
			t.Fatalf("slack: %v", err)
		}
		if err := checkTeamsPayload(teamsPayload(m, opt)); err != nil {
			t.Fatalf("teams: %v", err)
		}
		hook, err := json.Marshal(webhookPayload(m, time.Unix(1700000000, 0)))
		if err != nil {
			t.Fatal(err)
		}
		var back WebhookPayload
		if err := json.Unmarshal(hook, &back); err != nil || len(back.Items) != count {
			t.Fatalf("webhook body: %v, %d of %d items", err, len(back.Items), count)
		}
		html := renderHTML(m)
		for _, s := range []string{target, text, problem} {
			if strings.ContainsAny(s, "<>\"") && strings.Contains(html, s) {
				t.Fatalf("email HTML carries %q unescaped", s)
			}
		}
	})
}

// FuzzParseRetryAfter: whatever a receiver answers, the wait is between
// zero and the cap.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "-1", "0", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", " 3 "} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		if d := parseRetryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("Retry-After %q gave %v", v, d)
		}
	})
}
