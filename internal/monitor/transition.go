package monitor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// Event kinds written by the state machine.
const (
	EventFirstCheck         = "first_check"
	EventStatusChanged      = "status_changed"
	EventCertificateChanged = "certificate_changed"
)

// Alert event kinds: what notifications are about. The state machine
// writes them once per thing that matters (see alerts.go).
const (
	EventExpiryReminder = "expiry_reminder"
	EventExpired        = "expired"
	EventInvalid        = "invalid"
	EventUnreachable    = "unreachable"
	EventRecovered      = "recovered"
)

// NotifiableKinds are the event kinds routed to channels and recipients.
func NotifiableKinds() []string {
	return []string{EventExpiryReminder, EventExpired, EventInvalid, EventUnreachable, EventRecovered,
		EventCertificateChanged, EventAgentOffline, EventAgentOnline, EventAgentKeyExpiring}
}

// Event kinds written by the agent hub (package agentlink); they belong
// to no monitor (monitor ID 0).
const (
	EventAgentOffline     = "agent_offline"
	EventAgentOnline      = "agent_online"
	EventAgentKeyExpiring = "agent_key_expiring"
)

// Outcome is a finished check as the state machine needs it.
type Outcome struct {
	Result *assess.Result
	// ChainDER is the chain as sent, parallel to Result.Chain.
	ChainDER [][]byte
	At       time.Time
}

// failed reports a check that got no certificate at all (DNS, refused,
// timeout, handshake before any certificate): the kind worth one retry.
func (o Outcome) failed() bool {
	return len(o.Result.Chain) == 0
}

// Transition computes the store record for a claimed check: the new state,
// and history, events and certificates only when something changed.
//
// A check that failed to reach the server, on a monitor that was reaching
// it, is not believed at once: the state is kept, Failures counts it and
// the monitor is retried after retryDelay, so one lost packet pages nobody.
func Transition(c store.Claim, o Outcome, sched Schedule, retryDelay time.Duration, alerting AlertPolicy) store.CheckRecord {
	prev := c.State
	rec := store.CheckRecord{Claim: c}
	if o.failed() && prev.Failures == 0 && retryDelay > 0 {
		st := prev
		st.Failures = 1
		st.NextCheckAt = o.At.Add(retryDelay)
		rec.State = st
		return rec
	}

	st := store.State{
		MonitorID:   c.Monitor.ID,
		Result:      o.Result,
		Status:      o.Result.Status,
		LastCheckAt: o.At,
		NextCheckAt: sched.Next(o.At, c.Monitor.ID),
	}
	if o.failed() {
		st.Failures = prev.Failures + 1
	}
	if len(o.Result.Chain) > 0 {
		leaf := o.Result.Chain[0]
		st.LeafSHA256 = leaf.SHA256
		st.LeafExpires, _ = time.Parse(time.RFC3339, leaf.NotAfter)
	} else {
		// Unreachable: keep knowing which certificate was served last,
		// so a recovery with the same one is not a "change".
		st.LeafSHA256, st.LeafExpires = prev.LeafSHA256, prev.LeafExpires
	}
	alertEvents := alerts(c, prev, &st, o, alerting)
	rec.State = st

	var changes []string
	first := prev.Status == ""
	if first {
		changes = append(changes, "first_check")
	} else {
		if prev.Status != st.Status {
			changes = append(changes, "status")
		}
		if !sameProblems(prev.Result, o.Result) {
			changes = append(changes, "problems")
		}
	}
	if st.LeafSHA256 != prev.LeafSHA256 && st.LeafSHA256 != "" {
		changes = append(changes, "certificate")
		rec.Certificates = certificates(o)
	} else if first || !sameChain(prev.Result, o.Result) && len(o.ChainDER) > 0 {
		rec.Certificates = certificates(o)
	}
	if len(changes) == 0 {
		rec.Events = alertEvents
		return rec
	}
	rec.History = &store.HistoryEntry{
		MonitorID:  c.Monitor.ID,
		At:         o.At,
		Status:     st.Status,
		Problems:   o.Result.Problems,
		LeafSHA256: st.LeafSHA256,
		Change:     changes,
	}
	rec.Events = append(events(c, prev, st, o, first), alertEvents...)
	return rec
}

func events(c store.Claim, prev, st store.State, o Outcome, first bool) []store.Event {
	m := c.Monitor
	base := store.Event{TeamID: m.TeamID, MonitorID: m.ID, At: o.At, Status: st.Status, Severity: severity(st.Status)}
	var out []store.Event
	if first {
		e := base
		e.Kind = EventFirstCheck
		e.Message = fmt.Sprintf("%s: first check %s%s", m.Target, st.Status, problemSummary(o.Result))
		e.Data = map[string]any{"problems": o.Result.Problems}
		return append(out, e)
	}
	if prev.Status != st.Status {
		e := base
		e.Kind = EventStatusChanged
		e.Message = fmt.Sprintf("%s: %s → %s%s", m.Target, prev.Status, st.Status, problemSummary(o.Result))
		e.Data = map[string]any{"old_status": prev.Status, "new_status": st.Status, "problems": o.Result.Problems}
		out = append(out, e)
	}
	if st.LeafSHA256 != prev.LeafSHA256 && st.LeafSHA256 != "" && prev.LeafSHA256 != "" {
		e := base
		e.Kind = EventCertificateChanged
		e.Notify = true
		newLeaf := o.Result.Chain[0]
		data := map[string]any{
			"new_sha256": newLeaf.SHA256, "new_serial": newLeaf.Serial,
			"new_not_before": newLeaf.NotBefore, "new_not_after": newLeaf.NotAfter,
			"old_sha256": prev.LeafSHA256,
		}
		change := "replaced"
		if old := leafOf(prev.Result); old != nil {
			data["old_serial"], data["old_not_before"], data["old_not_after"] = old.Serial, old.NotBefore, old.NotAfter
			if newLeaf.NotAfter > old.NotAfter { // RFC 3339 UTC strings order as times
				change = "renewed"
			}
		}
		data["change"] = change
		e.Data = data
		e.Message = fmt.Sprintf("%s: certificate %s (now expires %s)", m.Target, change, newLeaf.NotAfter)
		out = append(out, e)
	}
	return out
}

func severity(s assess.Status) string {
	switch s {
	case assess.Critical, assess.Unknown:
		return "critical"
	case assess.Warning:
		return "warning"
	}
	return "info"
}

func problemSummary(r *assess.Result) string {
	if len(r.Problems) == 0 {
		return ""
	}
	msgs := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		msgs[i] = p.Message
	}
	return ": " + strings.Join(msgs, "; ")
}

func leafOf(r *assess.Result) *assess.Certificate {
	if r == nil || len(r.Chain) == 0 {
		return nil
	}
	return &r.Chain[0]
}

// sameProblems compares problem codes and severities; messages carry
// "expires in N days" and change every day without anything happening.
func sameProblems(a, b *assess.Result) bool {
	key := func(r *assess.Result) []string {
		if r == nil {
			return nil
		}
		out := make([]string, len(r.Problems))
		for i, p := range r.Problems {
			out[i] = p.Code + "/" + string(p.Severity) + "/" + p.Lint
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}

func sameChain(a, b *assess.Result) bool {
	if a == nil || b == nil || len(a.Chain) != len(b.Chain) {
		return false
	}
	for i := range a.Chain {
		if a.Chain[i].SHA256 != b.Chain[i].SHA256 {
			return false
		}
	}
	return true
}

func certificates(o Outcome) []store.Certificate {
	if len(o.ChainDER) != len(o.Result.Chain) {
		return nil
	}
	out := make([]store.Certificate, len(o.ChainDER))
	for i, der := range o.ChainDER {
		info := o.Result.Chain[i]
		na, _ := time.Parse(time.RFC3339, info.NotAfter)
		out[i] = store.Certificate{SHA256: info.SHA256, DER: der, Info: info, NotAfter: na, FirstSeen: o.At}
	}
	return out
}
