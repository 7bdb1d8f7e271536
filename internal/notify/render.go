package notify

import (
	"fmt"
	"html"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/certmon/certmon/internal/assess"
)

// Event kinds as they reach channels (package monitor and agentlink
// write them; repeated here so notify does not import the producers).
const (
	kindExpiryReminder     = "expiry_reminder"
	kindExpired            = "expired"
	kindInvalid            = "invalid"
	kindUnreachable        = "unreachable"
	kindRecovered          = "recovered"
	kindCertificateChanged = "certificate_changed"
	kindAgentOffline       = "agent_offline"
	kindAgentOnline        = "agent_online"
	kindAgentKeyExpiring   = "agent_key_expiring"
)

// Bounds on what one item contributes, so a runaway problem message or
// Data value cannot push a message over a channel's size limit.
const (
	maxTitle        = 300
	maxValue        = 500
	maxProblems     = 10
	maxEmailItems   = 100
	maxTags         = 20
	maxProblemValue = 300
)

// fact is one labelled value of an item (a row in email, a Teams fact, a
// Slack field).
type fact struct {
	Title string
	Value string
}

// problemView is a problem reduced to one clipped line.
type problemView struct {
	Severity string
	Code     string
	Message  string
}

// itemView is an Item as every channel shows it: one-line, clipped,
// control characters removed. Renderers only use views.
type itemView struct {
	Label    string // CRITICAL, WARNING, INFO, RECOVERED
	Severity string // critical, warning, info
	Title    string // "CRITICAL example.com:443 — certificate expired"
	Text     string // the event's own line, when it says more than Title
	Facts    []fact
	Problems []problemView
	More     int    // problems left out
	Link     string // http(s) only, else empty
}

func viewOf(it Item) itemView {
	v := itemView{Severity: severityOf(it)}
	v.Label = strings.ToUpper(v.Severity)
	if it.Kind == kindRecovered {
		v.Label = "RECOVERED"
	}
	target := clip(oneLine(it.Target), 200)
	sum := summary(it)
	switch {
	case target != "" && !isAgentKind(it.Kind):
		v.Title = v.Label + " " + target + " — " + sum
	default:
		v.Title = v.Label + " " + sum
	}
	v.Title = clip(v.Title, maxTitle)
	// Event texts often read "target: what happened"; the title already
	// says both, so the text only shows when it adds something.
	t := clip(oneLine(it.Text), maxValue)
	if target != "" {
		t = strings.TrimPrefix(t, target+": ")
	}
	if t != "" && t != sum && !strings.Contains(v.Title, t) {
		v.Text = t
	}
	v.Facts = factsOf(it)
	for i, p := range it.Problems {
		if i == maxProblems {
			v.More = len(it.Problems) - maxProblems
			break
		}
		v.Problems = append(v.Problems, problemView{
			Severity: clip(oneLine(string(p.Severity)), 20),
			Code:     clip(oneLine(p.Code), 60),
			Message:  clip(oneLine(p.Message), maxProblemValue),
		})
	}
	v.Link = safeLink(it.Link)
	return v
}

func isAgentKind(k string) bool { return strings.HasPrefix(k, "agent_") }

// severityOf normalises the item's severity, falling back on its status.
func severityOf(it Item) string {
	switch s := strings.ToLower(strings.TrimSpace(it.Severity)); s {
	case "critical", "warning", "info":
		return s
	}
	switch it.Status {
	case assess.Critical, assess.Unknown:
		return "critical"
	case assess.Warning:
		return "warning"
	}
	return "info"
}

// summary is what happened, in a few words, by kind.
func summary(it Item) string {
	text := clip(oneLine(it.Text), maxValue)
	or := func(s string) string {
		if text != "" {
			return text
		}
		return s
	}
	switch it.Kind {
	case kindExpiryReminder:
		if it.NotAfter.IsZero() {
			return or("certificate expires soon")
		}
		return "certificate " + expiresIn(it.DaysLeft)
	case kindExpired:
		return "certificate expired"
	case kindInvalid:
		if m := problemList(it.Problems, true); m != "" {
			return "certificate invalid: " + m
		}
		return "certificate invalid"
	case kindUnreachable:
		if m := problemList(it.Problems, false); m != "" {
			return "unreachable: " + m
		}
		return "unreachable"
	case kindRecovered:
		if it.Status != "" {
			return "recovered, status " + clip(oneLine(string(it.Status)), 20)
		}
		return "recovered"
	case kindCertificateChanged:
		change := dataString(it.Data, "change")
		if change != "renewed" && change != "replaced" {
			change = "changed"
		}
		s := "certificate " + change
		newNA, oldNA := dataDay(it.Data, "new_not_after"), dataDay(it.Data, "old_not_after")
		switch {
		case newNA != "" && oldNA != "":
			s += " (expires " + newNA + ", was " + oldNA + ")"
		case newNA != "":
			s += " (expires " + newNA + ")"
		}
		return s
	case kindAgentOffline:
		return or("agent " + orDash(dataString(it.Data, "agent_id")) + " offline")
	case kindAgentOnline:
		return or("agent " + orDash(dataString(it.Data, "agent_id")) + " online again")
	case kindAgentKeyExpiring:
		return or("key of agent " + orDash(dataString(it.Data, "agent_id")) + " expiring")
	}
	if text != "" {
		return text
	}
	if k := clip(oneLine(it.Kind), 60); k != "" {
		return strings.ReplaceAll(k, "_", " ")
	}
	return "event"
}

func expiresIn(days int) string {
	switch {
	case days < 0:
		return "expired"
	case days == 0:
		return "expires in less than a day"
	case days == 1:
		return "expires in 1 day"
	}
	return "expires in " + strconv.Itoa(days) + " days"
}

// problemList joins the problems' messages (only the critical ones when
// criticalOnly and there are any), at most three.
func problemList(ps []assess.Problem, criticalOnly bool) string {
	var msgs []string
	for _, p := range ps {
		if !criticalOnly || p.Severity == assess.SeverityCritical {
			if m := clip(oneLine(p.Message), 150); m != "" {
				msgs = append(msgs, m)
			}
		}
	}
	if criticalOnly && len(msgs) == 0 {
		return problemList(ps, false)
	}
	s := strings.Join(msgs[:min(3, len(msgs))], "; ")
	if len(msgs) > 3 {
		s += fmt.Sprintf(" and %d more", len(msgs)-3)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// factsOf lists what a reader wants next to the title.
func factsOf(it Item) []fact {
	var fs []fact
	add := func(title, value string) {
		if value = clip(oneLine(value), maxValue); value != "" {
			fs = append(fs, fact{title, value})
		}
	}
	add("Target", it.Target)
	add("Status", string(it.Status))
	if !it.NotAfter.IsZero() {
		add("Days left", strconv.Itoa(it.DaysLeft))
		add("Expires", it.NotAfter.UTC().Format(time.RFC3339))
	}
	switch it.Kind {
	case kindCertificateChanged:
		add("Change", dataString(it.Data, "change"))
		add("Previous expiry", dataTime(it.Data, "old_not_after"))
		add("New expiry", dataTime(it.Data, "new_not_after"))
	case kindAgentOffline, kindAgentOnline, kindAgentKeyExpiring:
		add("Agent", dataString(it.Data, "agent_id"))
		add("Pool", dataString(it.Data, "pool"))
		add("Last seen", dataTime(it.Data, "last_seen"))
		add("Offline since", dataTime(it.Data, "offline_since"))
		add("Key expires", dataTime(it.Data, "key_expires_at"))
	}
	if len(it.Tags) > 0 {
		tags := it.Tags[:min(len(it.Tags), maxTags)]
		clean := make([]string, 0, len(tags))
		for _, t := range tags {
			if t = clip(oneLine(t), 60); t != "" {
				clean = append(clean, t)
			}
		}
		add("Tags", strings.Join(clean, ", "))
	}
	if !it.At.IsZero() {
		add("When", it.At.UTC().Format(time.RFC3339))
	}
	return fs
}

// dataString is Data[k] when it is a string (or prints as one).
func dataString(d map[string]any, k string) string {
	v, ok := d[k]
	if !ok || v == nil {
		return ""
	}
	switch x := v.(type) {
	case string:
		return clip(oneLine(x), maxValue)
	case fmt.Stringer:
		return clip(oneLine(safeString(x)), maxValue)
	case bool, int, int32, int64, float64, uint, uint32, uint64:
		return fmt.Sprint(x)
	}
	return ""
}

// safeString calls String, which a nil pointer in an interface can make
// panic; a notification must never crash the sender.
func safeString(s fmt.Stringer) (out string) {
	defer func() {
		if recover() != nil {
			out = ""
		}
	}()
	return s.String()
}

// dataTime is Data[k] as RFC 3339 UTC: a time.Time, or a string that
// parses as one (Data went through JSON), else the string as is.
func dataTime(d map[string]any, k string) string {
	if t, ok := d[k].(time.Time); ok {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	s := dataString(d, k)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339)
	}
	return s
}

// dataDay is dataTime reduced to the date, for titles.
func dataDay(d map[string]any, k string) string {
	s := dataTime(d, k)
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.Format("2006-01-02")
	}
	return s
}

// safeLink keeps only absolute http(s) links: a link is rendered as a
// button or href, and a javascript: URL there would be an injection.
func safeLink(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxURLLen {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return u.String()
}

// heading is the message's title without the "[certmon]" prefix: the
// item's title, or a count by severity for a group.
func heading(m Message) string {
	if s := clip(oneLine(m.Subject), maxTitle); s != "" {
		return s
	}
	var h string
	switch len(m.Items) {
	case 0:
		h = "notification"
	case 1:
		h = viewOf(m.Items[0]).Title
	default:
		h = groupHeading(m.Items)
	}
	if m.Test {
		h = "TEST " + h
	}
	return h
}

// groupHeading is "12 alerts: 3 critical, 9 warning".
func groupHeading(items []Item) string {
	counts := map[string]int{}
	for _, it := range items {
		counts[severityOf(it)]++
	}
	var parts []string
	for _, s := range []string{"critical", "warning", "info"} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	return fmt.Sprintf("%d alerts: %s", len(items), strings.Join(parts, ", "))
}

// emailSubject is the Subject header; Message.Subject replaces it whole.
func emailSubject(m Message) string {
	if s := clip(oneLine(m.Subject), maxTitle); s != "" {
		return s
	}
	return "[certmon] " + heading(m)
}

// worst is the highest severity among items (for colours).
func worst(items []Item) string {
	w := "info"
	for _, it := range items {
		switch severityOf(it) {
		case "critical":
			return "critical"
		case "warning":
			w = "warning"
		}
	}
	return w
}

// groupLink is where a message's button points: the item's link for
// one item, the certmon server for a group.
func groupLink(m Message, opt SenderOptions) string {
	if len(m.Items) == 1 {
		if l := safeLink(m.Items[0].Link); l != "" {
			return l
		}
	}
	if l := safeLink(opt.BaseURL); l != "" {
		return l
	}
	for _, it := range m.Items {
		if l := safeLink(it.Link); l != "" {
			return l
		}
	}
	return ""
}

// renderText is the plain-text body of an email.
func renderText(m Message) string {
	var b strings.Builder
	views, more := emailViews(m.Items)
	if m.Test {
		b.WriteString("This is a test message from certmon: the channel works.\n\n")
	}
	if len(m.Items) > 1 {
		b.WriteString(heading(m) + "\n\n")
	}
	for i, v := range views {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(v.Title + "\n")
		if v.Text != "" {
			b.WriteString(v.Text + "\n")
		}
		width := 0
		for _, f := range v.Facts {
			width = max(width, utf8.RuneCountInString(f.Title))
		}
		for _, f := range v.Facts {
			fmt.Fprintf(&b, "  %s:%s %s\n", f.Title, strings.Repeat(" ", width-utf8.RuneCountInString(f.Title)), f.Value)
		}
		if len(v.Problems) > 0 {
			b.WriteString("  Problems:\n")
			for _, p := range v.Problems {
				fmt.Fprintf(&b, "    - %s\n", p.line())
			}
			if v.More > 0 {
				fmt.Fprintf(&b, "    - and %d more\n", v.More)
			}
		}
		if v.Link != "" {
			b.WriteString("  Open: " + v.Link + "\n")
		}
	}
	if more > 0 {
		fmt.Fprintf(&b, "\n… and %d more.\n", more)
	}
	b.WriteString("\n-- \ncertmon\n")
	return b.String()
}

func (p problemView) line() string {
	var parts []string
	if p.Severity != "" {
		parts = append(parts, "["+p.Severity+"]")
	}
	if p.Code != "" {
		parts = append(parts, p.Code+":")
	}
	return strings.Join(append(parts, p.Message), " ")
}

func emailViews(items []Item) ([]itemView, int) {
	n := min(len(items), maxEmailItems)
	views := make([]itemView, n)
	for i := range n {
		views[i] = viewOf(items[i])
	}
	return views, len(items) - n
}

// colours by severity, for the HTML part (inline: mail clients drop
// style sheets).
var severityColour = map[string]string{"critical": "#b00020", "warning": "#9a5b00", "info": "#2e7d32"}

func colour(sev string) string {
	if c, ok := severityColour[sev]; ok {
		return c
	}
	return "#333333"
}

// renderHTML is the HTML body of an email. Every value goes through
// html.EscapeString, so a target or problem message cannot inject markup.
// It is written out by hand rather than with html/template: executing a
// template anywhere in the binary keeps every exported method alive in
// the linker (reflection by name) and costs certmon megabytes.
func renderHTML(m Message) string {
	views, more := emailViews(m.Items)
	esc := html.EscapeString
	var b strings.Builder
	heading := esc(heading(m))
	b.WriteString(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>` + heading + `</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222;margin:0;padding:16px;">`)
	if m.Test {
		b.WriteString("\n" + `<p style="background:#e8f0fe;padding:8px;border-radius:4px;">This is a test message from certmon: the channel works.</p>`)
	}
	if len(m.Items) > 1 {
		b.WriteString("\n" + `<h2 style="margin:0 0 12px 0;font-size:18px;">` + heading + `</h2>`)
	}
	for _, v := range views {
		c := colour(v.Severity)
		b.WriteString("\n" + `<div style="border-left:4px solid ` + c + `;padding:4px 12px;margin:0 0 16px 0;">`)
		b.WriteString("\n" + `<h3 style="margin:0 0 6px 0;font-size:16px;color:` + c + `;">` + esc(v.Title) + `</h3>`)
		if v.Text != "" {
			b.WriteString("\n" + `<p style="margin:0 0 6px 0;">` + esc(v.Text) + `</p>`)
		}
		b.WriteString("\n" + `<table cellpadding="2" cellspacing="0" style="border-collapse:collapse;font-size:13px;">`)
		for _, f := range v.Facts {
			b.WriteString("\n" + `<tr><td style="color:#666;padding-right:12px;vertical-align:top;">` + esc(f.Title) + `</td><td>` + esc(f.Value) + `</td></tr>`)
		}
		b.WriteString("\n</table>")
		if len(v.Problems) > 0 {
			b.WriteString("\n" + `<ul style="margin:6px 0;padding-left:20px;font-size:13px;">`)
			for _, p := range v.Problems {
				b.WriteString("\n<li>")
				if p.Severity != "" {
					b.WriteString("<b>" + esc(p.Severity) + "</b> ")
				}
				if p.Code != "" {
					b.WriteString("<code>" + esc(p.Code) + "</code> ")
				}
				b.WriteString(esc(p.Message) + "</li>")
			}
			if v.More > 0 {
				fmt.Fprintf(&b, "\n<li>and %d more</li>", v.More)
			}
			b.WriteString("\n</ul>")
		}
		if v.Link != "" {
			b.WriteString("\n" + `<p style="margin:6px 0 0 0;"><a href="` + esc(v.Link) + `">Open in certmon</a></p>`)
		}
		b.WriteString("\n</div>")
	}
	if more > 0 {
		fmt.Fprintf(&b, "\n<p>… and %d more.</p>", more)
	}
	b.WriteString("\n" + `<p style="color:#888;font-size:12px;">certmon</p>` + "\n</body></html>\n")
	return b.String()
}

// oneLine replaces control characters (line breaks included) with
// spaces, collapses runs of spaces, and drops invalid UTF-8: titles,
// headers and table cells are one line.
func oneLine(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "")
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || r == '\u2028' || r == '\u2029' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// clip shortens s to at most n runes, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return "…"
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// clipBytes shortens s to at most n bytes on a rune boundary.
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
