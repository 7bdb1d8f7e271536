package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Webhook headers; docs/webhooks.md documents them for receivers.
const (
	HeaderKey       = "X-Certmon-Key"
	HeaderTimestamp = "X-Certmon-Timestamp"
	HeaderSignature = "X-Certmon-Signature"
)

// WebhookVersion is the payload's schema version; a change that breaks
// receivers bumps it.
const WebhookVersion = 1

// DefaultSignatureTolerance is how old a signed timestamp may be when
// VerifySignature is given no tolerance.
const DefaultSignatureTolerance = 5 * time.Minute

// WebhookPayload is the JSON body of a webhook POST.
type WebhookPayload struct {
	Version int           `json:"version"`
	Type    string        `json:"type"` // "certmon.notification"
	Key     string        `json:"key"`
	Test    bool          `json:"test"`
	SentAt  string        `json:"sent_at"` // RFC 3339 UTC
	Items   []WebhookItem `json:"items"`
}

// WebhookItem is one event of a webhook payload.
type WebhookItem struct {
	Key      string           `json:"key"`
	EventID  int64            `json:"event_id"`
	Kind     string           `json:"kind"`
	Severity string           `json:"severity"`
	Status   string           `json:"status"`
	At       string           `json:"at"` // RFC 3339 UTC
	Text     string           `json:"text"`
	Monitor  *WebhookMonitor  `json:"monitor"`   // null for agent events
	DaysLeft *int             `json:"days_left"` // null without a leaf
	NotAfter *string          `json:"not_after"` // null without a leaf
	Problems []WebhookProblem `json:"problems"`
	Data     map[string]any   `json:"data"`
}

// WebhookMonitor is the monitor an item is about.
type WebhookMonitor struct {
	ID     int64    `json:"id"`
	Target string   `json:"target"`
	Tags   []string `json:"tags"`
	Link   string   `json:"link"`
}

// WebhookProblem is one finding of the monitor's assessment.
type WebhookProblem struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

type webhookSender struct {
	post   *poster
	secret string
	now    func() time.Time
}

func (s *webhookSender) Send(ctx context.Context, m Message) (Answer, error) {
	now := s.now()
	body, err := json.Marshal(webhookPayload(m, now))
	if err != nil {
		// webhookPayload sanitises Data, so this is a bug, not input.
		return Answer{}, &SendError{Permanent: true, Err: fmt.Errorf("encoding the webhook payload: %v", err)}
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	h := http.Header{}
	h.Set(HeaderKey, oneLine(m.Key))
	h.Set(HeaderTimestamp, ts)
	if s.secret != "" {
		h.Set(HeaderSignature, Sign(s.secret, ts, body))
	}
	return s.post.post(ctx, body, h)
}

// webhookPayload maps a message to the documented schema. Every item is
// included: receivers dedupe on items[].key, so none may go missing.
func webhookPayload(m Message, now time.Time) WebhookPayload {
	p := WebhookPayload{
		Version: WebhookVersion,
		Type:    "certmon.notification",
		Key:     m.Key,
		Test:    m.Test,
		SentAt:  now.UTC().Format(time.RFC3339),
		Items:   make([]WebhookItem, 0, len(m.Items)),
	}
	for _, it := range m.Items {
		w := WebhookItem{
			Key:      it.Key,
			EventID:  it.EventID,
			Kind:     it.Kind,
			Severity: it.Severity,
			Status:   string(it.Status),
			Text:     it.Text,
			Problems: make([]WebhookProblem, 0, len(it.Problems)),
			Data:     jsonSafe(it.Data),
		}
		if !it.At.IsZero() {
			w.At = it.At.UTC().Format(time.RFC3339)
		}
		if it.MonitorID != 0 {
			tags := it.Tags
			if tags == nil {
				tags = []string{}
			}
			w.Monitor = &WebhookMonitor{ID: it.MonitorID, Target: it.Target, Tags: tags, Link: it.Link}
		}
		if !it.NotAfter.IsZero() {
			days, na := it.DaysLeft, it.NotAfter.UTC().Format(time.RFC3339)
			w.DaysLeft, w.NotAfter = &days, &na
		}
		for _, pr := range it.Problems {
			w.Problems = append(w.Problems, WebhookProblem{Code: pr.Code, Severity: string(pr.Severity), Message: pr.Message})
		}
		p.Items = append(p.Items, w)
	}
	return p
}

// jsonSafe returns d as something json.Marshal accepts: values it cannot
// encode (channels, functions, NaN, cycles) become their printed form
// rather than failing the whole notification. Never nil.
func jsonSafe(d map[string]any) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		if _, err := json.Marshal(v); err != nil {
			v = safePrint(v)
		}
		out[k] = v
	}
	return out
}

func safePrint(v any) (s string) {
	defer func() {
		if recover() != nil {
			s = "(unprintable)"
		}
	}()
	switch x := v.(type) {
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64) // NaN, ±Inf
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	// Printing a composite could recurse forever (a map holding itself
	// is exactly what json refuses); its type is enough to debug with.
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct, reflect.Pointer, reflect.Interface,
		reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Sprintf("(%T, not encodable)", v)
	}
	return clip(fmt.Sprint(v), maxValue)
}

// Sign is the X-Certmon-Signature value of body sent at timestamp (unix
// seconds, as in X-Certmon-Timestamp): "sha256=" and the hex
// HMAC-SHA256 of timestamp + "." + body under secret.
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Errors of VerifySignature.
var (
	ErrNoSecret         = errors.New("no signing secret configured")
	ErrBadSignature     = errors.New("signature does not match")
	ErrBadTimestamp     = errors.New("timestamp is not unix seconds")
	ErrStaleTimestamp   = errors.New("timestamp is outside the allowed window (replayed or clock skew)")
	ErrMissingSignature = errors.New("signature header is missing or not sha256=<hex>")
)

// VerifySignature is the receiver's check of a webhook POST, and the
// reference implementation for docs/webhooks.md: header is the
// X-Certmon-Signature value, timestamp the X-Certmon-Timestamp value,
// body the raw request body. The signature is compared in constant time;
// a timestamp further than tolerance from now (either way) is refused,
// which limits replays. tolerance <= 0 means DefaultSignatureTolerance.
func VerifySignature(secret string, timestamp string, body []byte, header string, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return ErrNoSecret
	}
	if tolerance <= 0 {
		tolerance = DefaultSignatureTolerance
	}
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return ErrMissingSignature
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return ErrMissingSignature
	}
	ts, err := strconv.ParseInt(strings.TrimSpace(timestamp), 10, 64)
	if err != nil || ts < 0 || strings.TrimSpace(timestamp) != timestamp {
		return ErrBadTimestamp
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	// Compare in seconds: converting a hostile int64 to a time.Time
	// and subtracting could overflow.
	age := now.Unix() - ts
	limit := int64(tolerance / time.Second)
	if age > limit || age < -limit {
		return ErrStaleTimestamp
	}
	return nil
}
