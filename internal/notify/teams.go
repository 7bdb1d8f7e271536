package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// Teams limits: a webhook message must stay under 28 KB; cards with many
// containers also get slow to render, so a group shows the first items.
const (
	teamsMaxBytes = 27 * 1000 // under 28 KB, whichever way it is counted
	teamsMaxItems = 25
	// AdaptiveCardVersion is the card schema version sent; Teams
	// webhooks and Workflows render up to 1.5.
	AdaptiveCardVersion = "1.4"
)

type teamsSender struct {
	post *poster
	opt  SenderOptions
}

type obj = map[string]any

func (s *teamsSender) Send(ctx context.Context, m Message) (Answer, error) {
	body := teamsPayload(m, s.opt)
	ans, err := s.post.post(ctx, body, nil)
	if err != nil {
		return ans, err
	}
	return ans, teamsLegacyFailure(ans)
}

// legacyFailure matches how the retired Office 365 connectors report a
// failed delivery: HTTP 200 with the real status in the text.
var legacyFailure = regexp.MustCompile(`(?i)^webhook message delivery failed.*?http error (\d{3})`)

// teamsLegacyFailure turns such a 200 into the error it stands for.
func teamsLegacyFailure(ans Answer) error {
	if !strings.HasPrefix(strings.ToLower(ans.Body), "webhook message delivery failed") {
		return nil
	}
	code := 0
	if sm := legacyFailure.FindStringSubmatch(ans.Body); sm != nil {
		code, _ = strconv.Atoi(sm[1])
	}
	permanent := code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
	return &SendError{Answer: ans, Permanent: permanent, Err: errors.New("teams refused the message: " + clip(oneLine(ans.Body), 200))}
}

// teamsPayload is the Adaptive Card wrapped as a message with one
// attachment, the shape both Workflows webhooks and incoming webhooks
// take. It drops items until the JSON fits Teams' size limit.
func teamsPayload(m Message, opt SenderOptions) []byte {
	n := min(len(m.Items), teamsMaxItems)
	for {
		b, err := json.Marshal(teamsMessage(m, opt, n))
		if err == nil && len(b) <= teamsMaxBytes {
			return b
		}
		if n <= 1 {
			break
		}
		n = min(n-1, n*3/4)
	}
	// One item that cannot fit even alone: the title and the link.
	b, _ := json.Marshal(teamsWrap(teamsCard([]any{
		teamsTitle(clip(heading(m), maxTitle), worst(m.Items), "Large"),
		obj{"type": "TextBlock", "text": "The details are too long for Teams; open certmon to see them.", "wrap": true},
	}, groupLink(m, opt))))
	return b
}

func teamsMessage(m Message, opt SenderOptions, n int) obj {
	var body []any
	if m.Test {
		body = append(body, obj{"type": "TextBlock", "text": "This is a test message from certmon: the channel works.", "wrap": true, "isSubtle": true})
	}
	switch len(m.Items) {
	case 0:
		body = append(body, teamsTitle(heading(m), "info", "Large"))
	case 1:
		v := viewOf(m.Items[0])
		if m.Subject != "" {
			body = append(body, teamsTitle(heading(m), v.Severity, "Large"))
		}
		body = append(body, teamsItem(v, "Large")...)
	default:
		body = append(body, teamsTitle(heading(m), worst(m.Items), "Large"))
		for _, it := range m.Items[:n] {
			body = append(body, obj{
				"type":      "Container",
				"separator": true,
				"spacing":   "Medium",
				"items":     teamsItem(viewOf(it), "Medium"),
			})
		}
		if more := len(m.Items) - n; more > 0 {
			body = append(body, obj{"type": "TextBlock", "text": fmt.Sprintf("… and %d more", more), "wrap": true, "isSubtle": true, "separator": true})
		}
	}
	return teamsWrap(teamsCard(body, groupLink(m, opt)))
}

func teamsWrap(card obj) obj {
	return obj{
		"type": "message",
		"attachments": []any{obj{
			"contentType": "application/vnd.microsoft.card.adaptive",
			"contentUrl":  nil,
			"content":     card,
		}},
	}
}

func teamsCard(body []any, link string) obj {
	card := obj{
		"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
		"type":    "AdaptiveCard",
		"version": AdaptiveCardVersion,
		"body":    body,
		"msteams": obj{"width": "Full"},
	}
	if link != "" {
		card["actions"] = []any{obj{"type": "Action.OpenUrl", "title": "Open in certmon", "url": link}}
	}
	return card
}

var teamsColour = map[string]string{"critical": "attention", "warning": "warning", "info": "good"}

func teamsTitle(text, severity, size string) obj {
	return obj{"type": "TextBlock", "text": orDash(text), "weight": "Bolder", "size": size, "wrap": true, "color": teamsColour[severity]}
}

// teamsItem is an item's title, its text and a FactSet.
func teamsItem(v itemView, size string) []any {
	out := []any{teamsTitle(v.Title, v.Severity, size)}
	if v.Text != "" {
		out = append(out, obj{"type": "TextBlock", "text": v.Text, "wrap": true})
	}
	facts := make([]any, 0, len(v.Facts)+1)
	for _, f := range v.Facts {
		facts = append(facts, obj{"title": f.Title, "value": f.Value})
	}
	if len(v.Problems) > 0 {
		lines := make([]string, 0, len(v.Problems)+1)
		for _, p := range v.Problems {
			lines = append(lines, p.line())
		}
		if v.More > 0 {
			lines = append(lines, fmt.Sprintf("and %d more", v.More))
		}
		facts = append(facts, obj{"title": "Problems", "value": strings.Join(lines, "; ")})
	}
	if len(facts) > 0 {
		out = append(out, obj{"type": "FactSet", "facts": facts})
	}
	return out
}
