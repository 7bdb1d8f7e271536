// Package output writes check results as they finish: a text table, JSON
// Lines, CSV or a Nagios plugin line. Writers stream; none holds results
// back, so memory stays flat however many targets are checked.
package output

import (
	"fmt"
	"io"
	"strings"

	"github.com/certmon/certmon/internal/assess"
)

// Formats lists the accepted --output values.
var Formats = []string{"text", "json", "csv", "nagios"}

// Writer receives results one at a time, then Close once.
type Writer interface {
	Write(r *assess.Result) error
	// Close writes any trailer (the Nagios line, a summary).
	Close() error
}

// Options tune a Writer.
type Options struct {
	// Color enables ANSI colour in the text table (only on a terminal).
	Color              bool
	WarnDays, CritDays int
}

// New returns the Writer for format.
func New(format string, w io.Writer, o Options) (Writer, error) {
	switch format {
	case "text":
		return newText(w, o), nil
	case "json":
		return newJSON(w), nil
	case "csv":
		return newCSV(w), nil
	case "nagios":
		return newNagios(w, o), nil
	}
	return nil, fmt.Errorf("unknown output format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// Leaf returns the first certificate of the chain, if any.
func Leaf(r *assess.Result) *assess.Certificate {
	if len(r.Chain) == 0 {
		return nil
	}
	return &r.Chain[0]
}

// ProblemCodes joins the problem codes, e.g. "EXPIRING,INCOMPLETE_CHAIN".
func ProblemCodes(r *assess.Result) string {
	codes := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		codes[i] = p.Code
	}
	return strings.Join(codes, ",")
}

// summary is the running tally every writer that needs a trailer keeps.
type summary struct {
	total  int
	counts map[assess.Status]int
	worst  assess.Status
}

func (s *summary) add(r *assess.Result) {
	if s.counts == nil {
		s.counts = map[assess.Status]int{}
		s.worst = assess.OK
	}
	s.total++
	s.counts[r.Status]++
	s.worst = assess.Worse(s.worst, r.Status)
}

func (s *summary) String() string {
	return fmt.Sprintf("%d checked: %d ok, %d warning, %d critical, %d unknown",
		s.total, s.counts[assess.OK], s.counts[assess.Warning], s.counts[assess.Critical], s.counts[assess.Unknown])
}
