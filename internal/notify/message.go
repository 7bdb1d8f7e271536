// Package notify tells people: it owns the channel types (email, Microsoft
// Teams, Slack, generic webhook), how a message looks on each, and the
// workers that deliver the store's outbox with retries, rate limits and
// grouping.
package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// Item is one event as a channel shows it.
type Item struct {
	// Key is the delivery's dedupe key: a receiver that sees one twice
	// (a resend after a crash) may drop the second.
	Key       string
	EventID   int64
	Kind      string // expiry_reminder, expired, invalid, unreachable, recovered, certificate_changed, agent_offline, ...
	Severity  string // info, warning, critical
	Status    assess.Status
	At        time.Time
	Text      string // one line, human readable
	MonitorID int64  // 0 for agent events
	Target    string
	Tags      []string
	// DaysLeft and NotAfter describe the current leaf; NotAfter is zero
	// without one (DaysLeft is then meaningless).
	DaysLeft int
	NotAfter time.Time
	Problems []assess.Problem
	Data     map[string]any
	// Link opens the monitor (or the events list) in certmon.
	Link string
}

// Message is what one send carries: one item, or a group of items for the
// same destination (a burst, a digest, a rate-limited backlog).
type Message struct {
	// Key identifies the message for idempotent receivers: the item's key
	// for one item, a digest of the items' keys for a group.
	Key   string
	Items []Item
	// Test marks "send test message" from the API.
	Test bool
	// Subject overrides the generated title (digests, reports).
	Subject string
	// Prepared, when set, is sent as is instead of rendering Items (the
	// status report); only email channels send it.
	Prepared *Prepared
}

// Prepared is a message already rendered.
type Prepared struct {
	HTML string
	Text string
}

// Answer is what the receiver said to a send.
type Answer struct {
	// Code is the HTTP status or the SMTP reply code (0: no answer).
	Code int `json:"code"`
	// Body is the start of the receiver's reply, for the API and logs.
	Body string `json:"body,omitempty"`
	// RetryAfter is the receiver's Retry-After, zero when absent.
	RetryAfter time.Duration `json:"-"`
}

// Sender sends messages to one destination.
type Sender interface {
	Send(ctx context.Context, m Message) (Answer, error)
}

// SendError is a failed send. Permanent failures (a 4xx other than 408 and
// 429, an SMTP 5xx, a bad configuration) are not retried.
type SendError struct {
	Answer    Answer
	Permanent bool
	Err       error
}

func (e *SendError) Error() string {
	if e.Answer.Code != 0 {
		return fmt.Sprintf("%v (answer %d)", e.Err, e.Answer.Code)
	}
	return e.Err.Error()
}

func (e *SendError) Unwrap() error { return e.Err }

// Permanent reports whether err says retrying cannot help.
func Permanent(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Permanent
}
