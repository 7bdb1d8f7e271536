package report

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mon is a monitor whose last check found status with a leaf expiring
// in days (no certificate when days is nil).
func mon(id int64, target string, status assess.Status, days *int, mut ...func(*store.MonitorWithState)) store.MonitorWithState {
	m := store.MonitorWithState{Monitor: store.Monitor{ID: id, Target: target, WarnDays: 30, CritDays: 7, AgentPool: "cloud"}}
	if status != "" {
		res := &assess.Result{Target: target, Status: status, Problems: []assess.Problem{}}
		if days != nil {
			exp := now.Add(time.Duration(*days)*24*time.Hour + time.Hour)
			res.Chain = []assess.Certificate{{
				Subject: "CN=" + target, Issuer: "CN=R3,O=Let's Encrypt,C=US",
				NotAfter: exp.Format(time.RFC3339), SANs: []string{target, "www." + target},
			}}
			m.State.LeafExpires = exp
		} else {
			msg := "dial tcp: connection refused"
			res.Error = &msg
			res.Problems = []assess.Problem{{Code: assess.CodeUnreachable, Severity: assess.SeverityCritical, Message: "connection refused"}}
		}
		m.State.Result = res
		m.State.Status = status
		m.State.LastCheckAt = now.Add(-time.Hour)
	}
	for _, f := range mut {
		f(&m)
	}
	return m
}

func days(n int) *int { return &n }

// rowsOf returns the HTML table rows (header excluded), in order.
func rowsOf(t *testing.T, html string) []string {
	t.Helper()
	var out []string
	for _, tr := range regexp.MustCompile(`(?s)<tr bgcolor="[^"]*">.*?</tr>`).FindAllString(html, -1) {
		if !strings.Contains(tr, "<th") {
			out = append(out, tr)
		}
	}
	return out
}

func TestStatusReportOrderAndHighlight(t *testing.T) {
	ms := []store.MonitorWithState{
		mon(1, "ok-far.example", assess.OK, days(200)),
		mon(2, "warn.example", assess.Warning, days(20)),
		mon(3, "crit.example", assess.Critical, days(3)),
		mon(4, "down.example", assess.Unknown, nil),
		mon(5, "new.example", "", nil),
		mon(6, "paused.example", assess.Critical, days(-2), func(m *store.MonitorWithState) { m.Paused = true }),
		mon(7, "ok-near.example", assess.OK, days(100)),
		mon(8, "expired.example", assess.Critical, days(-5)),
		// OK at its last check but inside its own 60-day window now.
		mon(9, "soon.example", assess.OK, days(45), func(m *store.MonitorWithState) { m.WarnDays = 60 }),
		mon(10, "warn-sooner.example", assess.Warning, days(10)),
	}
	subject, html, text := StatusReport(ms, now, time.UTC, "https://certmon.example/")
	if want := "[certmon] Status report: 2 critical, 1 unknown, 2 warning, 3 OK, 1 not checked yet, 1 paused"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	wantOrder := []string{
		"expired.example", "crit.example", "down.example", // red: fewest days first, no certificate last
		"warn-sooner.example", "warn.example",
		"soon.example",
		"ok-near.example", "ok-far.example",
		"new.example",
		"paused.example",
	}
	rows := rowsOf(t, html)
	if len(rows) != len(wantOrder) {
		t.Fatalf("%d rows, want %d:\n%s", len(rows), len(wantOrder), html)
	}
	for i, target := range wantOrder {
		if !strings.Contains(rows[i], ">"+target+"<") {
			t.Errorf("row %d is not %s: %s", i, target, rows[i])
		}
	}
	bg := func(r string) string { return regexp.MustCompile(`bgcolor="([^"]*)"`).FindStringSubmatch(r)[1] }
	for i, want := range []string{"#fdecea", "#fdecea", "#fdecea", "#fff4e0", "#fff4e0", "#fff4e0", "#ffffff", "#ffffff", "#ffffff", "#ffffff"} {
		if got := bg(rows[i]); got != want {
			t.Errorf("%s: background %s, want %s", wantOrder[i], got, want)
		}
	}
	if !strings.Contains(rows[8], "not checked yet") {
		t.Errorf("never-checked row: %s", rows[8])
	}
	if !strings.Contains(rows[9], ">paused<") || strings.Contains(rows[9], "CRITICAL") {
		t.Errorf("paused row should say paused, not its last status: %s", rows[9])
	}
	if !strings.Contains(rows[2], "connection refused") {
		t.Errorf("unknown row lacks the error: %s", rows[2])
	}
	if !strings.Contains(rows[0], "expired 5 days ago") || !strings.Contains(rows[5], "expires in 45 days") {
		t.Errorf("expiring OK row lacks why it is highlighted: %s", rows[5])
	}
	if !strings.Contains(html, "2 critical, 1 unknown, 2 warning, 3 OK") || !strings.Contains(html, "6 monitors need attention") {
		t.Error("summary missing from HTML")
	}

	// The text part has the same rows in the same order, marked.
	var textRows []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, ".example ") {
			textRows = append(textRows, l)
		}
	}
	if len(textRows) != len(wantOrder) {
		t.Fatalf("text has %d rows, want %d:\n%s", len(textRows), len(wantOrder), text)
	}
	for i, target := range wantOrder {
		if !strings.Contains(textRows[i], " "+target+" ") {
			t.Errorf("text row %d is not %s: %q", i, target, textRows[i])
		}
	}
	if !strings.HasPrefix(textRows[0], "!!") || !strings.HasPrefix(textRows[3], "! ") || !strings.HasPrefix(textRows[7], "  ") {
		t.Errorf("text marks:\n%s", text)
	}
	if !strings.Contains(text, "https://certmon.example/api/v1/monitors/8") || !strings.Contains(text, "2 critical, 1 unknown") {
		t.Errorf("text lacks links or summary:\n%s", text)
	}
}

func TestStatusReportColumns(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	m := mon(42, "shop.example", assess.OK, days(89), func(m *store.MonitorWithState) {
		m.AgentPool = "dc-west"
		// 23:30 UTC is the next day in Berlin.
		m.State.LeafExpires = time.Date(2026, 5, 29, 23, 30, 0, 0, time.UTC)
		m.State.Result.Chain[0].SANs = []string{"shop.example", "a.shop.example", "b.shop.example", "c.shop.example", "d.shop.example"}
		m.State.Result.Chain[0].Issuer = `CN=Example\, Inc. CA,O=Example,C=DE`
	})
	_, html, text := StatusReport([]store.MonitorWithState{m}, now, berlin, "https://certmon.example")
	rows := rowsOf(t, html)
	if len(rows) != 1 {
		t.Fatalf("rows: %d", len(rows))
	}
	for _, want := range []string{
		`<a href="https://certmon.example/api/v1/monitors/42"`,
		">shop.example</a>",
		">OK<",
		">2026-05-30<",
		">89<",
		">Example, Inc. CA<",
		">shop.example, a.shop.example, b.shop.example &#43;2<",
		">dc-west<",
	} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("row lacks %s:\n%s", want, rows[0])
		}
	}
	for _, h := range []string{"Target", "Status", "Expires", "Days left", "Issuer", "SANs", "Agent"} {
		if !strings.Contains(html, ">"+h+"</th>") {
			t.Errorf("no column %s", h)
		}
	}
	for _, want := range []string{"TARGET", "DAYS LEFT", "2026-05-30", "Example, Inc. CA", "b.shop.example +2", "dc-west"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %s:\n%s", want, text)
		}
	}
	if !strings.Contains(html, "CET") && !strings.Contains(html, "CEST") {
		t.Error("generated time not in the report's zone")
	}

	// Without a base URL there are no links.
	_, html, text = StatusReport([]store.MonitorWithState{m}, now, nil, "")
	if strings.Contains(html, "/monitors/") || strings.Contains(text, "/monitors/") || strings.Contains(text, "LINK") {
		t.Error("links without a base URL")
	}
	if !strings.Contains(html, ">2026-05-29<") {
		t.Error("nil location is not UTC")
	}
}

func TestStatusReportEscapes(t *testing.T) {
	evil := `<script>alert("x")</script>.example`
	m := mon(1, evil, assess.Critical, days(2), func(m *store.MonitorWithState) {
		m.AgentPool = `<b>pool</b>`
		m.State.Result.Chain[0].Issuer = `CN=<img src=x onerror=alert(1)>`
		m.State.Result.Problems = []assess.Problem{{Code: "EXPIRING", Message: `<i>soon</i>`}}
	})
	_, html, text := StatusReport([]store.MonitorWithState{m}, now, time.UTC, "https://certmon.example")
	for _, bad := range []string{"<script>", "<img", "<b>pool", "<i>soon"} {
		if strings.Contains(html, bad) {
			t.Errorf("HTML contains unescaped %s", bad)
		}
	}
	if !strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, "&lt;img src=x") {
		t.Errorf("escaped values missing:\n%s", html)
	}
	// The text part is plain: the value as it is.
	if !strings.Contains(text, evil) {
		t.Errorf("text lacks the target:\n%s", text)
	}
	// Control characters cannot break the text layout.
	m.Target = "a.example\nFAKE  ROW"
	_, _, text = StatusReport([]store.MonitorWithState{m}, now, time.UTC, "")
	if slices.ContainsFunc(strings.Split(text, "\n"), func(l string) bool { return strings.HasPrefix(l, "FAKE") }) {
		t.Errorf("newline in target split the row:\n%s", text)
	}
}

func TestStatusReportEmpty(t *testing.T) {
	subject, html, text := StatusReport(nil, now, time.UTC, "")
	if subject != "[certmon] Status report: no monitors" || !strings.Contains(html, "No monitors.") || !strings.Contains(text, "No monitors.") {
		t.Errorf("empty report: %q\n%s\n%s", subject, html, text)
	}
}

func TestNeedsAttention(t *testing.T) {
	paused := func(m *store.MonitorWithState) { m.Paused = true }
	for _, c := range []struct {
		name string
		ms   []store.MonitorWithState
		want bool
	}{
		{"none", nil, false},
		{"all OK", []store.MonitorWithState{mon(1, "a", assess.OK, days(90)), mon(2, "b", assess.OK, days(31))}, false},
		{"never checked", []store.MonitorWithState{mon(1, "a", "", nil)}, false},
		{"warning", []store.MonitorWithState{mon(1, "a", assess.OK, days(90)), mon(2, "b", assess.Warning, days(20))}, true},
		{"critical", []store.MonitorWithState{mon(1, "a", assess.Critical, days(2))}, true},
		{"unknown", []store.MonitorWithState{mon(1, "a", assess.Unknown, nil)}, true},
		{"OK but inside warn days now", []store.MonitorWithState{mon(1, "a", assess.OK, days(29))}, true},
		{"default warn days", []store.MonitorWithState{mon(1, "a", assess.OK, days(29), func(m *store.MonitorWithState) { m.WarnDays = 0 })}, true},
		{"paused critical", []store.MonitorWithState{mon(1, "a", assess.Critical, days(-1), paused)}, false},
	} {
		if got := NeedsAttention(c.ms, now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestIssuerName(t *testing.T) {
	for dn, want := range map[string]string{
		"CN=R3,O=Let's Encrypt,C=US":          "R3",
		"O=Let's Encrypt,C=US":                "Let's Encrypt",
		`CN=Acme\, Inc.+OU=Ops,C=US`:          "Acme, Inc.",
		`CN=Caf\C3\A9 CA`:                     "Café CA",
		"C=US":                                "C=US",
		"":                                    "",
		"SERIALNUMBER=1,CN=Sectigo RSA DV CA": "Sectigo RSA DV CA",
	} {
		if got := issuerName(dn); got != want {
			t.Errorf("issuerName(%q) = %q, want %q", dn, got, want)
		}
	}
}
