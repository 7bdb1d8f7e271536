package report

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// The report must not pull text/template or html/template into the
// binary: executing a template disables the linker's dead-method
// elimination.
func TestNoTemplateDependency(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "template") {
			t.Errorf("report depends on %s", p)
		}
	}
}

// One row, byte for byte as html/template rendered it.
func TestStatusReportRowMarkup(t *testing.T) {
	m := mon(3, "crit.example", assess.Critical, days(3), func(m *store.MonitorWithState) {
		m.State.Result.Problems = []assess.Problem{{Code: "EXPIRING", Message: `expires in 3 days & "soon"`}}
	})
	_, html, _ := StatusReport([]store.MonitorWithState{m}, now, time.UTC, "https://certmon.example/")
	rows := rowsOf(t, html)
	if len(rows) != 1 {
		t.Fatalf("rows: %d", len(rows))
	}
	const cell = `background-color:#fdecea;font-family:Arial,Helvetica,sans-serif;border-bottom:1px solid #e5e7eb;`
	want := `<tr bgcolor="#fdecea">
<td style="` + cell + `border-left:4px solid #c62828;font-size:13px;"><a href="https://certmon.example/api/v1/monitors/3" style="color:#1d4ed8;text-decoration:underline;">crit.example</a></td>
<td style="` + cell + `color:#b3261e;font-size:13px;font-weight:bold;">CRITICAL<br><span style="font-weight:normal;font-size:11px;color:#374151;">expires in 3 days &amp; &#34;soon&#34;</span></td>
<td style="` + cell + `font-size:13px;white-space:nowrap;">2026-03-04</td>
<td align="right" style="` + cell + `font-size:13px;">3</td>
<td style="` + cell + `font-size:13px;">R3</td>
<td style="` + cell + `font-size:12px;">crit.example, www.crit.example</td>
<td style="` + cell + `font-size:13px;">cloud</td>
</tr>`
	if rows[0] != want {
		t.Errorf("row:\n%s\nwant:\n%s", rows[0], want)
	}
	if !strings.Contains(html, `warning days. <a href="https://certmon.example" style="color:#1d4ed8;">Open certmon</a></td></tr>`) {
		t.Errorf("no link to certmon:\n%s", html)
	}
}

func TestStatusReportEmptyMarkup(t *testing.T) {
	_, html, _ := StatusReport(nil, now, time.UTC, "")
	for _, want := range []string{
		"<!DOCTYPE html>\n<html>\n<head>\n",
		"<title>Certificate status report</title>",
		">certmon: Certificate status report</td></tr>",
		">Sun, 01 Mar 2026 12:00 UTC</td></tr>",
		">no monitors</td></tr>",
		">Nothing needs attention.</td></tr>",
		">Agent</th>\n</tr>\n<tr><td colspan=\"7\" style=\"font-family:Arial,Helvetica,sans-serif;font-size:13px;color:#6b7280;\">No monitors.</td></tr>\n</table>\n",
		"within the monitor's warning days.</td></tr>\n</table>\n</td></tr>\n</table>\n</body>\n</html>\n",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("empty report lacks %q:\n%s", want, html)
		}
	}
}

func TestStatusReportLinkEscaping(t *testing.T) {
	m := mon(7, "a.example", assess.OK, days(90))
	for _, c := range []struct{ base, href string }{
		{"https://certmon.example/", "https://certmon.example"},
		// Quotes and brackets cannot end the attribute; & and + are
		// HTML-escaped, valid %XX escapes kept, other bytes encoded.
		{`https://x.example/a b?q="'<>&+%41%zz`, `https://x.example/a%20b?q=%22%27%3c%3e&amp;&#43;%41%25zz`},
		{"https://bücher.example", "https://b%c3%bccher.example"},
		// No script or data URLs.
		{"javascript:alert(1)", "#ZgotmplZ"},
		{"JavaScript:alert(1)//", "#ZgotmplZ"},
		{"data:text/html,<b>x</b>", "#ZgotmplZ"},
	} {
		_, html, text := StatusReport([]store.MonitorWithState{m}, now, time.UTC, c.base)
		row := rowsOf(t, html)[0]
		link := c.href
		if link != "#ZgotmplZ" {
			link += "/api/v1/monitors/7"
		}
		if !strings.Contains(row, `<a href="`+link+`" style=`) {
			t.Errorf("%q: row link is not %q:\n%s", c.base, link, row)
		}
		if !strings.Contains(html, `<a href="`+c.href+`" style="color:#1d4ed8;">Open certmon</a>`) {
			t.Errorf("%q: footer link is not %q:\n%s", c.base, c.href, html)
		}
		if strings.Contains(strings.ToLower(html), "javascript:") || strings.Contains(html, "data:") {
			t.Errorf("%q: unsafe URL in HTML:\n%s", c.base, html)
		}
		// The text part shows the link as it is.
		if !strings.Contains(text, strings.TrimRight(c.base, "/")+"/api/v1/monitors/7") {
			t.Errorf("%q: text link:\n%s", c.base, text)
		}
	}
}

func TestEscapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		"":                    "",
		"plain.example":       "plain.example",
		`<a href="x">'&'</a>`: "&lt;a href=&#34;x&#34;&gt;&#39;&amp;&#39;&lt;/a&gt;",
		"+2":                  "&#43;2",
		"a\x00b":              "a\uFFFDb",
		"café\xff":            "café\xff",
	} {
		if got := escapeHTML(in); got != want {
			t.Errorf("escapeHTML(%q) = %q, want %q", in, got, want)
		}
	}
}
