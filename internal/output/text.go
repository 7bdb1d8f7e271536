package output

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/certmon/certmon/internal/assess"
)

// textWriter prints a fixed-width table, a row per target as it finishes,
// with its problems indented below, and a summary line at the end.
type textWriter struct {
	bw     *bufio.Writer
	o      Options
	sum    summary
	header bool
}

func newText(w io.Writer, o Options) *textWriter {
	return &textWriter{bw: bufio.NewWriter(w), o: o}
}

const rowFormat = "%-8s  %-40s  %-22s  %5s  %-10s  %s\n"

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiYellow = "\x1b[33m"
	ansiGreen  = "\x1b[32m"
	ansiGrey   = "\x1b[90m"
)

func (t *textWriter) color(s assess.Status) string {
	if !t.o.Color {
		return ""
	}
	switch s {
	case assess.OK:
		return ansiGreen
	case assess.Warning:
		return ansiYellow
	case assess.Critical:
		return ansiRed
	}
	return ansiGrey
}

func (t *textWriter) Write(r *assess.Result) error {
	if !t.header {
		t.header = true
		fmt.Fprintf(t.bw, rowFormat, "STATUS", "TARGET", "ADDRESS", "DAYS", "EXPIRES", "SUBJECT / ISSUER")
	}
	t.sum.add(r)
	days, expires, who := "-", "-", ""
	if l := Leaf(r); l != nil {
		days = fmt.Sprint(l.DaysLeft)
		expires = l.NotAfter[:min(10, len(l.NotAfter))]
		who = shorten(l.Subject, 40) + " / " + shorten(l.Issuer, 40)
	}
	status := string(r.Status)
	pad := strings.Repeat(" ", max(0, 8-len(status)))
	if c := t.color(r.Status); c != "" {
		status = c + status + ansiReset
	}
	fmt.Fprintf(t.bw, "%s%s  %-40s  %-22s  %5s  %-10s  %s\n", status, pad,
		clean(shorten(r.Target, 40)), shorten(r.Address, 22), days, expires, clean(who))
	for _, p := range r.Problems {
		fmt.Fprintf(t.bw, "          %-8s %s: %s\n", p.Severity, p.Code, clean(p.Message))
	}
	if r.Error != nil && len(r.Problems) == 0 {
		fmt.Fprintf(t.bw, "          error: %s\n", clean(*r.Error))
	}
	return t.bw.Flush()
}

func (t *textWriter) Close() error {
	if t.sum.total > 1 {
		fmt.Fprintln(t.bw, t.sum.String())
	}
	return t.bw.Flush()
}

func shorten(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}

// clean strips control characters: subjects and error text come from the
// server and must not drive the terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
