package assess

import (
	"crypto/x509"
	"sort"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"
)

// ZLint runs every zlint lint on the leaf and reports each finding of
// status Warn (as a warning), Error or Fatal (as critical) under code LINT.
// It is a Config.Linter.
func ZLint(leaf *x509.Certificate) []Problem {
	c, err := zx509.ParseCertificate(leaf.Raw)
	if err != nil {
		return []Problem{{Code: CodeLint, Severity: SeverityWarning, Lint: "zlint",
			Message: "zlint cannot parse the certificate: " + err.Error()}}
	}
	rs := zlint.LintCertificate(c)
	names := make([]string, 0, len(rs.Results))
	for n := range rs.Results {
		names = append(names, n)
	}
	sort.Strings(names) // map order is random; output must not be
	var out []Problem
	for _, n := range names {
		res := rs.Results[n]
		var sev Severity
		switch res.Status {
		case lint.Warn:
			sev = SeverityWarning
		case lint.Error, lint.Fatal:
			sev = SeverityCritical
		default:
			continue
		}
		msg := res.LintMetadata.Description
		if res.Details != "" {
			msg += " (" + res.Details + ")"
		}
		out = append(out, Problem{Code: CodeLint, Severity: sev, Lint: n, Message: msg})
	}
	return out
}
