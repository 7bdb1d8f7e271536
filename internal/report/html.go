// Package report renders the scheduled status report: one email listing
// every monitor, most urgent first, as HTML that mail clients including
// Outlook display (tables, inline styles, no CSS classes) and as plain
// text.
package report

import (
	"bytes"
	"fmt"
	"html"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// defaultWarnDays is assess's EXPIRING warning threshold, used for a
// monitor that sets none.
const defaultWarnDays = 30

// maxSANs is how many SANs a row lists before "+N more".
const maxSANs = 3

// maxDetail bounds the problem text under a status so one chatty error
// does not stretch the table.
const maxDetail = 160

// tone is how a row is highlighted.
type tone int

const (
	toneNone tone = iota
	toneCritical
	toneWarning
	toneMuted // paused or never checked: shown, but nothing to act on
)

// rank orders rows, most urgent first.
const (
	rankRed      = iota // CRITICAL and UNKNOWN: days left then puts an expired certificate before an unreachable host
	rankWarning         // WARNING
	rankExpiring        // OK by its last check but inside the warning window now
	rankOK
	rankUnchecked
	rankPaused
)

// row is one monitor as the report shows it.
type row struct {
	ID       int64
	Target   string
	Link     string
	Status   string
	Detail   string
	Expires  string
	DaysLeft string
	Issuer   string
	SANs     string
	Agent    string

	tone    tone
	rank    int
	days    int
	hasDays bool
}

// Styles, fixed strings written into style and bgcolor attributes.
func (r row) rowBG() string {
	switch r.tone {
	case toneCritical:
		return "#fdecea"
	case toneWarning:
		return "#fff4e0"
	}
	return "#ffffff"
}

// cell is the style every cell of the row starts with: the background is
// repeated on cells because some Outlook versions drop a row's bgcolor.
func (r row) cell() string {
	return "background-color:" + r.rowBG() + ";font-family:Arial,Helvetica,sans-serif;border-bottom:1px solid #e5e7eb;"
}

func (r row) accent() string {
	switch r.tone {
	case toneCritical:
		return "border-left:4px solid #c62828;"
	case toneWarning:
		return "border-left:4px solid #f0a000;"
	}
	return "border-left:4px solid #ffffff;"
}

func (r row) statusColor() string {
	switch {
	case r.tone == toneCritical:
		return "color:#b3261e;"
	case r.tone == toneWarning:
		return "color:#8a5300;"
	case r.tone == toneMuted:
		return "color:#6b7280;"
	}
	return "color:#1e7e34;"
}

// counts tallies monitors for the summary and the subject.
type counts struct {
	critical, unknown, warning, ok, unchecked, paused int
}

func (c counts) String() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(c.critical, "critical")
	add(c.unknown, "unknown")
	add(c.warning, "warning")
	// OK is always said, so "0 OK" makes a bad day plain.
	parts = append(parts, fmt.Sprintf("%d OK", c.ok))
	add(c.unchecked, "not checked yet")
	add(c.paused, "paused")
	return strings.Join(parts, ", ")
}

// StatusReport renders the report of monitors at now, dates in loc (UTC
// when nil). Each target links to baseURL/api/v1/monitors/{id} when baseURL is
// set.
func StatusReport(monitors []store.MonitorWithState, now time.Time, loc *time.Location, baseURL string) (subject, html, text string) {
	if loc == nil {
		loc = time.UTC
	}
	base := strings.TrimRight(baseURL, "/")
	rows := make([]row, 0, len(monitors))
	var c counts
	attention := 0
	for _, m := range monitors {
		r := newRow(m, now, loc, base)
		rows = append(rows, r)
		if r.tone == toneCritical || r.tone == toneWarning {
			attention++
		}
		switch {
		case m.Paused:
			c.paused++
		case m.State.Status == assess.Critical:
			c.critical++
		case m.State.Status == assess.Unknown:
			c.unknown++
		case m.State.Status == assess.Warning:
			c.warning++
		case m.State.Status == assess.OK:
			c.ok++
		default:
			c.unchecked++
		}
	}
	slices.SortStableFunc(rows, compareRows)

	summary := c.String()
	if len(monitors) == 0 {
		summary = "no monitors"
	}
	subject = "[certmon] Status report: " + summary
	data := page{
		Title:     "Certificate status report",
		Generated: now.In(loc).Format("Mon, 02 Jan 2006 15:04 MST"),
		Summary:   summary,
		Attention: attentionLine(attention),
		Rows:      rows,
		BaseURL:   base,
	}
	return subject, renderHTML(data), renderText(data)
}

// NeedsAttention reports whether the report would highlight any row: a
// monitor, not paused, whose last check was not OK or whose certificate
// expires within its warning days.
func NeedsAttention(monitors []store.MonitorWithState, now time.Time) bool {
	for _, m := range monitors {
		if r := newRow(m, now, time.UTC, ""); r.tone == toneCritical || r.tone == toneWarning {
			return true
		}
	}
	return false
}

func attentionLine(n int) string {
	switch n {
	case 0:
		return "Nothing needs attention."
	case 1:
		return "1 monitor needs attention (highlighted below)."
	}
	return strconv.Itoa(n) + " monitors need attention (highlighted below)."
}

func warnDays(m store.MonitorWithState) int {
	if m.WarnDays > 0 {
		return m.WarnDays
	}
	return defaultWarnDays
}

// daysLeft is floor((notAfter-now)/24h), as the rest of certmon counts.
func daysLeft(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days--
	}
	return days
}

// leaf is the served certificate of the last check, nil without one.
func leaf(m store.MonitorWithState) *assess.Certificate {
	if m.State.Result == nil || len(m.State.Result.Chain) == 0 {
		return nil
	}
	return &m.State.Result.Chain[0]
}

// expiry is the current leaf's notAfter: the state's column, else the
// last result's.
func expiry(m store.MonitorWithState) (time.Time, bool) {
	if !m.State.LeafExpires.IsZero() {
		return m.State.LeafExpires, true
	}
	if l := leaf(m); l != nil && l.NotAfter != "" {
		if t, err := time.Parse(time.RFC3339, l.NotAfter); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func newRow(m store.MonitorWithState, now time.Time, loc *time.Location, base string) row {
	r := row{ID: m.ID, Target: clean(m.Target), Agent: clean(m.AgentPool)}
	if base != "" {
		r.Link = base + "/api/v1/monitors/" + strconv.FormatInt(m.ID, 10)
	}
	if exp, ok := expiry(m); ok {
		r.days, r.hasDays = daysLeft(exp, now), true
		r.Expires = exp.In(loc).Format("2006-01-02")
		r.DaysLeft = strconv.Itoa(r.days)
	}
	if l := leaf(m); l != nil {
		r.Issuer = clean(issuerName(l.Issuer))
		r.SANs = clean(sanList(l.SANs))
	}
	expiring := r.hasDays && r.days < warnDays(m)
	switch st := m.State.Status; {
	case m.Paused:
		r.Status, r.tone, r.rank = "paused", toneMuted, rankPaused
	case st == "":
		r.Status, r.tone, r.rank = "not checked yet", toneMuted, rankUnchecked
	case st == assess.Critical || st == assess.Unknown:
		r.Status, r.tone, r.rank = string(st), toneCritical, rankRed
	case st == assess.Warning:
		r.Status, r.tone, r.rank = string(st), toneWarning, rankWarning
	case expiring:
		r.Status, r.tone, r.rank = string(st), toneWarning, rankExpiring
	default:
		r.Status, r.tone, r.rank = string(st), toneNone, rankOK
	}
	if r.tone == toneCritical || r.tone == toneWarning {
		r.Detail = detail(m, r, expiring)
	}
	return r
}

// detail says why a row is highlighted: the last check's problems or
// error, or the coming expiry.
func detail(m store.MonitorWithState, r row, expiring bool) string {
	var parts []string
	if res := m.State.Result; res != nil {
		for _, p := range res.Problems {
			if p.Message != "" {
				parts = append(parts, p.Message)
			} else {
				parts = append(parts, p.Code)
			}
		}
		if len(parts) == 0 && res.Error != nil {
			parts = append(parts, *res.Error)
		}
	}
	if len(parts) == 0 && expiring {
		parts = append(parts, expiresIn(r.days))
	}
	s := clean(strings.Join(parts, "; "))
	if len([]rune(s)) > maxDetail {
		s = string([]rune(s)[:maxDetail-1]) + "…"
	}
	return s
}

func expiresIn(days int) string {
	switch {
	case days < -1:
		return fmt.Sprintf("expired %d days ago", -days)
	case days == -1:
		return "expired yesterday"
	case days == 0:
		return "expires today"
	case days == 1:
		return "expires tomorrow"
	}
	return fmt.Sprintf("expires in %d days", days)
}

// compareRows sorts by urgency, then fewest days left (rows without a
// certificate last), then target.
func compareRows(a, b row) int {
	if a.rank != b.rank {
		return a.rank - b.rank
	}
	if a.hasDays != b.hasDays {
		if a.hasDays {
			return -1
		}
		return 1
	}
	if a.days != b.days {
		return a.days - b.days
	}
	if c := strings.Compare(a.Target, b.Target); c != 0 {
		return c
	}
	return int(a.ID - b.ID)
}

// issuerName is the issuer's common name from a DN as crypto/x509 prints
// it ("CN=R3,O=Let's Encrypt,C=US"), else its organization, else the DN.
func issuerName(dn string) string {
	attrs := map[string]string{}
	for _, rdn := range splitDN(dn) {
		k, v, ok := strings.Cut(rdn, "=")
		if !ok {
			continue
		}
		k = strings.ToUpper(strings.TrimSpace(k))
		if _, seen := attrs[k]; !seen {
			attrs[k] = unescapeDN(strings.TrimSpace(v))
		}
	}
	for _, k := range []string{"CN", "O"} {
		if v := attrs[k]; v != "" {
			return v
		}
	}
	return dn
}

// splitDN splits at the commas and pluses RFC 4514 does not escape.
func splitDN(dn string) []string {
	var (
		out []string
		cur strings.Builder
	)
	for i := 0; i < len(dn); i++ {
		switch c := dn[i]; {
		case c == '\\' && i+1 < len(dn):
			cur.WriteByte(c)
			cur.WriteByte(dn[i+1])
			i++
		case c == ',' || c == '+':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// unescapeDN undoes RFC 4514 escapes: "\," and hex pairs such as "\2C".
func unescapeDN(v string) string {
	if !strings.Contains(v, `\`) {
		return v
	}
	var b []byte
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' || i+1 >= len(v) {
			b = append(b, v[i])
			continue
		}
		if i+2 < len(v) {
			if n, err := strconv.ParseUint(v[i+1:i+3], 16, 8); err == nil {
				b = append(b, byte(n))
				i += 2
				continue
			}
		}
		b = append(b, v[i+1])
		i++
	}
	return string(b)
}

func sanList(sans []string) string {
	if len(sans) <= maxSANs {
		return strings.Join(sans, ", ")
	}
	return strings.Join(sans[:maxSANs], ", ") + fmt.Sprintf(" +%d", len(sans)-maxSANs)
}

// clean drops control characters so a value cannot break the text
// layout (the HTML escapes every value anyway).
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

type page struct {
	Title, Generated, Summary, Attention string
	Rows                                 []row
	BaseURL                              string
}

// dash shows an empty cell.
func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// escapeHTML escapes s for HTML text and quoted attribute values. Beyond
// html.EscapeString it writes '+' as "&#43;" and NUL as U+FFFD, as
// html/template did, so the report reads byte for byte as before.
func escapeHTML(s string) string {
	return escapeExtra.Replace(html.EscapeString(s))
}

var escapeExtra = strings.NewReplacer("+", "&#43;", "\x00", "\uFFFD")

// escapeURL is an href value: a URL with a scheme other than http,
// https or mailto (javascript:, data:, ...) becomes "#ZgotmplZ", bytes
// that do not belong in a URL are percent-encoded (valid %XX escapes are
// kept) and the result is HTML-escaped; an http(s) URL is otherwise
// used as given. This is what html/template did with these links.
func escapeURL(s string) string {
	if !safeURL(s) {
		return "#ZgotmplZ"
	}
	return escapeHTML(normalizeURL(s))
}

// safeURL reports whether s is relative or has an http, https or mailto
// scheme.
func safeURL(s string) bool {
	scheme, _, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(scheme, "/") {
		return true
	}
	return strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "mailto")
}

// normalizeURL percent-encodes every byte of s but RFC 3986's unreserved
// and reserved characters (except the quote and parentheses) and valid
// %XX escapes.
func normalizeURL(s string) string {
	var b strings.Builder
	written := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!#$&*+,/:;=?@[]", c) >= 0:
			continue
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			continue
		}
		if written == 0 {
			b.Grow(len(s) + 16)
		}
		b.WriteString(s[written:i])
		fmt.Fprintf(&b, "%%%02x", c)
		written = i + 1
	}
	if written == 0 {
		return s
	}
	b.WriteString(s[written:])
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// The HTML keeps to what Outlook's Word engine renders: nested tables,
// bgcolor attributes beside inline styles, fonts set on every cell.
const (
	htmlHead = `<!DOCTYPE html>
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`
	htmlTitle = `</title>
</head>
<body style="margin:0;padding:0;background-color:#f3f4f6;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f3f4f6" style="background-color:#f3f4f6;">
<tr><td align="center" style="padding:16px;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff" style="max-width:1100px;background-color:#ffffff;border:1px solid #d1d5db;">
<tr><td style="padding:16px 16px 4px 16px;font-family:Arial,Helvetica,sans-serif;font-size:18px;font-weight:bold;color:#111827;">certmon: `
	htmlGenerated = `</td></tr>
<tr><td style="padding:0 16px 8px 16px;font-family:Arial,Helvetica,sans-serif;font-size:12px;color:#6b7280;">`
	htmlSummary = `</td></tr>
<tr><td style="padding:0 16px 4px 16px;font-family:Arial,Helvetica,sans-serif;font-size:14px;font-weight:bold;color:#111827;">`
	htmlAttention = `</td></tr>
<tr><td style="padding:0 16px 12px 16px;font-family:Arial,Helvetica,sans-serif;font-size:13px;color:#374151;">`
	htmlTableHead = `</td></tr>
<tr><td style="padding:0 16px 16px 16px;">
<table width="100%" cellpadding="6" cellspacing="0" border="0" style="border-collapse:collapse;font-family:Arial,Helvetica,sans-serif;font-size:13px;color:#111827;">
<tr bgcolor="#e5e7eb">
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;border-left:4px solid #e5e7eb;">Target</th>
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">Status</th>
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">Expires</th>
<th align="right" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">Days left</th>
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">Issuer</th>
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">SANs</th>
<th align="left" style="font-family:Arial,Helvetica,sans-serif;font-size:12px;border-bottom:1px solid #9ca3af;">Agent</th>
</tr>`
	htmlNoRows = `
<tr><td colspan="7" style="font-family:Arial,Helvetica,sans-serif;font-size:13px;color:#6b7280;">No monitors.</td></tr>`
	htmlLegend = `
</table>
</td></tr>
<tr><td style="padding:0 16px 16px 16px;font-family:Arial,Helvetica,sans-serif;font-size:11px;color:#6b7280;">Red: critical or unknown. Amber: warning, or the certificate expires within the monitor's warning days.`
	htmlFoot = `</td></tr>
</table>
</td></tr>
</table>
</body>
</html>
`
)

// renderHTML is the HTML part. Every value from the monitors, the clock
// or the configuration goes through escapeHTML or, in an href, escapeURL.
func renderHTML(p page) string {
	var b strings.Builder
	b.Grow(4096 + 2048*len(p.Rows))
	b.WriteString(htmlHead)
	b.WriteString(escapeHTML(p.Title))
	b.WriteString(htmlTitle)
	b.WriteString(escapeHTML(p.Title))
	b.WriteString(htmlGenerated)
	b.WriteString(escapeHTML(p.Generated))
	b.WriteString(htmlSummary)
	b.WriteString(escapeHTML(p.Summary))
	b.WriteString(htmlAttention)
	b.WriteString(escapeHTML(p.Attention))
	b.WriteString(htmlTableHead)
	for _, r := range p.Rows {
		writeRow(&b, r)
	}
	if len(p.Rows) == 0 {
		b.WriteString(htmlNoRows)
	}
	b.WriteString(htmlLegend)
	if p.BaseURL != "" {
		b.WriteString(` <a href="`)
		b.WriteString(escapeURL(p.BaseURL))
		b.WriteString(`" style="color:#1d4ed8;">Open certmon</a>`)
	}
	b.WriteString(htmlFoot)
	return b.String()
}

// writeRow writes one monitor's table row.
func writeRow(b *strings.Builder, r row) {
	// The styles are fixed strings; escaping them changes nothing but
	// keeps every attribute value on the same path.
	cell := escapeHTML(r.cell())
	td := func(align, style, content string) {
		b.WriteString("\n<td ")
		if align != "" {
			b.WriteString(`align="` + align + `" `)
		}
		b.WriteString(`style="`)
		b.WriteString(cell)
		b.WriteString(style)
		b.WriteString(`">`)
		b.WriteString(content)
		b.WriteString("</td>")
	}

	b.WriteString("\n<tr bgcolor=\"")
	b.WriteString(escapeHTML(r.rowBG()))
	b.WriteString(`">`)

	target := escapeHTML(r.Target)
	if r.Link != "" {
		target = `<a href="` + escapeURL(r.Link) + `" style="color:#1d4ed8;text-decoration:underline;">` + target + "</a>"
	}
	td("", escapeHTML(r.accent())+"font-size:13px;", target)

	status := escapeHTML(r.Status)
	if r.Detail != "" {
		status += `<br><span style="font-weight:normal;font-size:11px;color:#374151;">` + escapeHTML(r.Detail) + "</span>"
	}
	td("", escapeHTML(r.statusColor())+"font-size:13px;font-weight:bold;", status)

	td("", "font-size:13px;white-space:nowrap;", escapeHTML(dash(r.Expires)))
	td("right", "font-size:13px;", escapeHTML(dash(r.DaysLeft)))
	td("", "font-size:13px;", escapeHTML(dash(r.Issuer)))
	td("", "font-size:12px;", escapeHTML(dash(r.SANs)))
	td("", "font-size:13px;", escapeHTML(r.Agent))
	b.WriteString("\n</tr>")
}

// renderText is the plain-text part: the same rows in aligned columns.
func renderText(p page) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "certmon: %s\n%s\n\n%s\n%s\n\n", p.Title, p.Generated, p.Summary, p.Attention)
	if len(p.Rows) == 0 {
		b.WriteString("No monitors.\n")
		return b.String()
	}
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	header := "  \tTARGET\tSTATUS\tEXPIRES\tDAYS LEFT\tISSUER\tSANS\tAGENT"
	if p.BaseURL != "" {
		header += "\tLINK"
	}
	fmt.Fprintln(w, header)
	for _, r := range p.Rows {
		// The mark column stands in for the highlight.
		mark := " "
		switch r.tone {
		case toneCritical:
			mark = "!!"
		case toneWarning:
			mark = "!"
		}
		line := strings.Join([]string{mark, r.Target, r.Status, orDash(r.Expires), orDash(r.DaysLeft),
			orDash(r.Issuer), orDash(r.SANs), r.Agent}, "\t")
		if p.BaseURL != "" {
			line += "\t" + r.Link
		}
		fmt.Fprintln(w, line)
	}
	w.Flush()
	first := true
	for _, r := range p.Rows {
		if r.Detail == "" {
			continue
		}
		if first {
			b.WriteString("\nDetails:\n")
			first = false
		}
		fmt.Fprintf(&b, "- %s: %s\n", r.Target, r.Detail)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
