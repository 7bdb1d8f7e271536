package output

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/certmon/certmon/internal/assess"
)

// jsonWriter writes JSON Lines: one Result object per line.
type jsonWriter struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func newJSON(w io.Writer) *jsonWriter {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &jsonWriter{bw: bw, enc: enc}
}

func (j *jsonWriter) Write(r *assess.Result) error {
	if err := j.enc.Encode(r); err != nil {
		return err
	}
	// Flush per line so a consumer reading a pipe sees each result as it
	// finishes.
	return j.bw.Flush()
}

func (j *jsonWriter) Close() error { return j.bw.Flush() }

// CSVHeader is the column list of --output csv.
var CSVHeader = []string{
	"target", "protocol", "address", "sni", "status", "problems", "days_left", "not_after",
	"subject", "issuer", "sans", "sha256", "key_type", "key_bits", "signature_algorithm",
	"tls_version", "cipher", "trusted", "hostname_match", "chain_complete", "revocation", "error",
}

type csvWriter struct {
	cw     *csv.Writer
	header bool
}

func newCSV(w io.Writer) *csvWriter { return &csvWriter{cw: csv.NewWriter(w)} }

func (c *csvWriter) Write(r *assess.Result) error {
	if !c.header {
		c.header = true
		if err := c.cw.Write(CSVHeader); err != nil {
			return err
		}
	}
	row := []string{r.Target, r.Protocol, r.Address, r.SNI, string(r.Status), ProblemCodes(r)}
	if l := Leaf(r); l != nil {
		row = append(row, strconv.Itoa(l.DaysLeft), l.NotAfter, l.Subject, l.Issuer, strings.Join(l.SANs, " "),
			l.SHA256, l.KeyType, strconv.Itoa(l.KeyBits), l.SignatureAlgorithm)
	} else {
		row = append(row, "", "", "", "", "", "", "", "", "")
	}
	if r.TLS != nil {
		row = append(row, r.TLS.Version, r.TLS.Cipher)
	} else {
		row = append(row, "", "")
	}
	v := r.Verification
	row = append(row, strconv.FormatBool(v.Trusted), strconv.FormatBool(v.HostnameMatch),
		strconv.FormatBool(v.ChainComplete), v.Revocation, deref(r.Error))
	for i, f := range row {
		row[i] = csvSafe(f)
	}
	if err := c.cw.Write(row); err != nil {
		return err
	}
	c.cw.Flush()
	return c.cw.Error()
}

func (c *csvWriter) Close() error {
	c.cw.Flush()
	return c.cw.Error()
}

// csvSafe defuses spreadsheet formula injection: a certificate subject is
// attacker-controlled text and CSV files are opened in Excel.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return s // a negative number such as days_left -3
		}
		return "'" + s
	}
	return s
}

// nagiosWriter prints one plugin line when closed:
// "CERTMON CRITICAL - 1 critical ... | days=5;30;7".
type nagiosWriter struct {
	w        io.Writer
	o        Options
	sum      summary
	minDays  *int
	worstMsg string
	perf     []string
}

func newNagios(w io.Writer, o Options) *nagiosWriter { return &nagiosWriter{w: w, o: o} }

func (n *nagiosWriter) Write(r *assess.Result) error {
	before := n.sum.worst
	n.sum.add(r)
	if l := Leaf(r); l != nil {
		if n.minDays == nil || l.DaysLeft < *n.minDays {
			d := l.DaysLeft
			n.minDays = &d
		}
		// Per-target perfdata only while it stays short; plugin output
		// beyond a few KiB is cut by most monitoring systems.
		if len(n.perf) < 50 {
			n.perf = append(n.perf, fmt.Sprintf("'%s'=%d;%d;%d", perfLabel(r.Target), l.DaysLeft, n.o.WarnDays, n.o.CritDays))
		}
	}
	if n.worstMsg == "" || r.Status != assess.OK && assess.Worse(before, r.Status) != before {
		n.worstMsg = describe(r)
	}
	return nil
}

func (n *nagiosWriter) Close() error {
	status := n.sum.worst
	if n.sum.total == 0 {
		status = assess.Unknown
		n.worstMsg = "no targets"
	}
	line := fmt.Sprintf("CERTMON %s - %s", status, n.worstMsg)
	if n.sum.total > 1 {
		line += " (" + n.sum.String() + ")"
	}
	var perf []string
	if n.minDays != nil {
		perf = append(perf, fmt.Sprintf("days=%d;%d;%d", *n.minDays, n.o.WarnDays, n.o.CritDays))
	}
	if n.sum.total > 1 {
		perf = append(perf, n.perf...)
	}
	if len(perf) > 0 {
		line += " | " + strings.Join(perf, " ")
	}
	_, err := fmt.Fprintln(n.w, line)
	return err
}

// describe is a one-line account of a result for the Nagios line.
func describe(r *assess.Result) string {
	var b strings.Builder
	b.WriteString(r.Target)
	if len(r.Problems) > 0 {
		b.WriteString(": ")
		for i, p := range r.Problems {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p.Message)
		}
	} else if l := Leaf(r); l != nil {
		fmt.Fprintf(&b, ": certificate valid for %d days (until %s)", l.DaysLeft, l.NotAfter)
	} else if r.Error != nil {
		b.WriteString(": " + *r.Error)
	}
	// '|' would start the perfdata; control characters come from servers.
	return clean(strings.ReplaceAll(b.String(), "|", "/"))
}

func perfLabel(s string) string {
	return strings.NewReplacer("'", "", "=", "_", " ", "_").Replace(s) + "_days"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
