package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// Slack Block Kit limits (characters unless said otherwise).
const (
	slackMaxBlocks    = 50
	slackHeaderLen    = 150
	slackSectionLen   = 3000
	slackFieldLen     = 2000
	slackMaxFields    = 10
	slackContextElems = 10
	slackButtonLen    = 75
	slackURLLen       = 3000
	// slackMaxItems keeps a group's message readable and well under the
	// total text Slack accepts in one message (which is less than the
	// sum of the per-block limits).
	slackMaxItems = 20
)

type slackSender struct {
	post *poster
	opt  SenderOptions
}

func (s *slackSender) Send(ctx context.Context, m Message) (Answer, error) {
	body, err := json.Marshal(slackPayload(m, s.opt))
	if err != nil {
		return Answer{}, &SendError{Permanent: true, Err: fmt.Errorf("encoding the slack message: %v", err)}
	}
	return s.post.post(ctx, body, nil)
}

var slackEmoji = map[string]string{"critical": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}

// slackPayload is an incoming-webhook message: "text" is the fallback
// for notifications and old clients, "blocks" what people see.
func slackPayload(m Message, opt SenderOptions) obj {
	head := heading(m)
	blocks := []any{slackHeader(slackEmoji[worst(m.Items)] + " " + head)}
	if m.Test {
		blocks = append(blocks, slackContext("This is a test message from certmon: the channel works."))
	}
	switch len(m.Items) {
	case 0:
	case 1:
		blocks = append(blocks, slackItem(viewOf(m.Items[0]))...)
	default:
		n := min(len(m.Items), slackMaxItems)
		for _, it := range m.Items[:n] {
			blocks = append(blocks, slackGroupItem(viewOf(it)))
		}
		if more := len(m.Items) - n; more > 0 {
			blocks = append(blocks, slackContext(fmt.Sprintf("… and %d more", more)))
		}
	}
	if link := groupLink(m, opt); link != "" && len(link) <= slackURLLen {
		blocks = append(blocks, obj{"type": "actions", "elements": []any{slackButton("Open in certmon", link)}})
	}
	if len(blocks) > slackMaxBlocks { // cannot happen with the caps above; keep the promise anyway
		blocks = blocks[:slackMaxBlocks]
	}
	return obj{"text": clip(slackEscape(head), slackSectionLen), "blocks": blocks}
}

func slackHeader(text string) obj {
	return obj{"type": "header", "text": obj{"type": "plain_text", "text": clip(orDash(strings.TrimSpace(text)), slackHeaderLen), "emoji": true}}
}

func slackContext(text string) obj {
	return obj{"type": "context", "elements": []any{slackMrkdwn(slackEscape(text), slackSectionLen)}}
}

func slackMrkdwn(text string, limit int) obj {
	return obj{"type": "mrkdwn", "text": clip(orDash(text), limit)}
}

func slackButton(label, url string) obj {
	return obj{"type": "button", "text": obj{"type": "plain_text", "text": clip(label, slackButtonLen)}, "url": url}
}

// slackItem is one item in full: text with up to ten fields, problems,
// and any facts past the tenth as context.
func slackItem(v itemView) []any {
	var out []any
	section := obj{"type": "section"}
	if v.Text != "" {
		section["text"] = slackMrkdwn(slackEscape(v.Text), slackSectionLen)
	}
	var fields []any
	var rest []string
	for _, f := range v.Facts {
		if len(fields) < slackMaxFields {
			fields = append(fields, slackMrkdwn("*"+slackEscape(f.Title)+"*\n"+slackEscape(f.Value), slackFieldLen))
		} else {
			rest = append(rest, f.Title+": "+f.Value)
		}
	}
	if len(fields) > 0 {
		section["fields"] = fields
	}
	if len(section) > 1 {
		out = append(out, section)
	}
	if len(v.Problems) > 0 {
		var b strings.Builder
		b.WriteString("*Problems*")
		for _, p := range v.Problems {
			b.WriteString("\n• " + slackEscape(p.line()))
		}
		if v.More > 0 {
			fmt.Fprintf(&b, "\n• and %d more", v.More)
		}
		out = append(out, obj{"type": "section", "text": slackMrkdwn(b.String(), slackSectionLen)})
	}
	if len(rest) > 0 {
		out = append(out, slackContext(strings.Join(rest, " · ")))
	}
	return out
}

// slackGroupItem is one item of a group in a single section: the title,
// its text and the main facts on one line, with a button to it.
func slackGroupItem(v itemView) obj {
	var b strings.Builder
	b.WriteString(slackEmoji[v.Severity] + " *" + slackEscape(v.Title) + "*")
	if v.Text != "" {
		b.WriteString("\n" + slackEscape(v.Text))
	}
	var facts []string
	for _, f := range v.Facts {
		switch f.Title {
		case "Status", "Days left", "Expires", "When":
			facts = append(facts, slackEscape(f.Title+": "+f.Value))
		}
	}
	if len(facts) > 0 {
		b.WriteString("\n" + strings.Join(facts, " · "))
	}
	section := obj{"type": "section", "text": slackMrkdwn(b.String(), slackSectionLen)}
	if v.Link != "" && len(v.Link) <= slackURLLen {
		section["accessory"] = slackButton("Open", v.Link)
	}
	return section
}

// slackEscape escapes the three characters Slack's mrkdwn gives meaning
// to (links, mentions); nothing else is entity-encoded.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
