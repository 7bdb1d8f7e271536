package monitor

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// AlertPolicy decides when the state machine writes alert events. The
// zero value is the default policy.
type AlertPolicy struct {
	// ReminderDays are the days-left thresholds of expiry reminders
	// (default 30, 14, 7, 3, 1); TagReminderDays override them for a
	// monitor's tags (its first tag with an entry), and a monitor's own
	// ReminderDays override both.
	ReminderDays    []int
	TagReminderDays map[string][]int
	// UnreachableAfter consecutive failed checks raise an unreachable
	// alert (default 2: one retry, so a lost packet pages nobody).
	UnreachableAfter int
}

// DefaultReminderDays are the expiry reminder thresholds when none are set.
var DefaultReminderDays = []int{30, 14, 7, 3, 1}

// shortLived certificates (ACME profiles of a few days) get thresholds
// scaled to their lifetime: a 30-day reminder for a 6-day certificate would
// fire on the day it is issued.
const (
	shortLived        = 10 * 24 * time.Hour
	referenceLifetime = 90 * 24 * time.Hour
)

// unreachableCode marks the unreachable alert in State.Alerted.
const unreachableCode = assess.CodeUnreachable

// thresholds are the reminder thresholds of m for a leaf valid for
// lifetime, largest first.
func (p AlertPolicy) thresholds(m store.Monitor, lifetime time.Duration) []time.Duration {
	days := p.ReminderDays
	if len(days) == 0 {
		days = DefaultReminderDays
	}
	for _, t := range m.Tags {
		if d, ok := p.TagReminderDays[t]; ok && len(d) > 0 {
			days = d
			break
		}
	}
	if len(m.ReminderDays) > 0 {
		days = m.ReminderDays
	}
	out := make([]time.Duration, 0, len(days))
	for _, d := range days {
		t := time.Duration(d) * 24 * time.Hour
		if lifetime > 0 && lifetime < shortLived {
			t = time.Duration(float64(t) * float64(lifetime) / float64(referenceLifetime))
		}
		if t > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out
}

func (p AlertPolicy) unreachableAfter() int {
	if p.UnreachableAfter > 0 {
		return p.UnreachableAfter
	}
	return 2
}

// alerts computes what a check tells people, updating st.Reminded and
// st.Alerted: one reminder per threshold crossed, one alert per problem
// that appears (expired, invalid, unreachable), one recovery when alerted
// problems clear. Problems already alerted stay quiet until they clear.
func alerts(c store.Claim, prev store.State, st *store.State, o Outcome, p AlertPolicy) []store.Event {
	m := c.Monitor
	failed := o.failed()
	var cur []string
	if failed {
		// Nothing new is known about the certificate; what was alerted
		// still holds, and the server now counts as unreachable once it
		// failed often enough.
		for _, code := range prev.Alerted {
			if code != unreachableCode {
				cur = append(cur, code)
			}
		}
		// Only a probe that failed to reach the server says it is
		// unreachable; a check that could not run (its agent offline,
		// a job refused) says nothing about the server either way.
		probed := slices.ContainsFunc(o.Result.Problems, func(pr assess.Problem) bool {
			return pr.Code == assess.CodeUnreachable || pr.Code == assess.CodeHandshakeFailed
		})
		if probed && st.Failures >= p.unreachableAfter() || !probed && slices.Contains(prev.Alerted, unreachableCode) {
			cur = append(cur, unreachableCode)
		}
	} else {
		for _, pr := range o.Result.Problems {
			if pr.Severity == assess.SeverityCritical && pr.Code != assess.CodeExpiring && !slices.Contains(cur, pr.Code) {
				cur = append(cur, pr.Code)
			}
		}
	}
	slices.Sort(cur)
	st.Alerted = cur

	silenced, why := silence(m, *st, o.At)
	var out []store.Event
	// The snapshot is built only for an alert: most checks tell nothing.
	add := func(kind, severity, msg string, data map[string]any) {
		e := alertBase(m, *st, o)
		e.Kind, e.Severity, e.Message, e.Notify = kind, severity, msg, true
		maps.Copy(e.Data, data)
		if silenced && kind != EventRecovered {
			e.Silenced = true
			e.Data["silenced"] = why
		}
		out = append(out, e)
	}

	appeared := minus(cur, prev.Alerted)
	cleared := minus(prev.Alerted, cur)
	if slices.Contains(appeared, assess.CodeExpired) {
		add(EventExpired, "critical", fmt.Sprintf("%s: certificate expired on %s", m.Target, day(st.LeafExpires)), nil)
	}
	if invalid := minus(appeared, []string{assess.CodeExpired, unreachableCode}); len(invalid) > 0 {
		add(EventInvalid, "critical", fmt.Sprintf("%s: certificate not valid: %s", m.Target, describe(o.Result, invalid)),
			map[string]any{"new_codes": invalid, "codes": cur})
	}
	if slices.Contains(appeared, unreachableCode) {
		reason := "no answer"
		if o.Result.Error != nil {
			reason = *o.Result.Error
		}
		add(EventUnreachable, "critical", fmt.Sprintf("%s: unreachable after %d checks: %s", m.Target, st.Failures, reason),
			map[string]any{"failures": st.Failures, "error": reason})
	}
	if len(cleared) > 0 {
		sev, msg := "info", fmt.Sprintf("%s: recovered, now %s", m.Target, st.Status)
		if len(cur) > 0 {
			sev = severity(st.Status)
			msg = fmt.Sprintf("%s: %s cleared; still %s", m.Target, strings.Join(cleared, ", "), strings.Join(cur, ", "))
		}
		add(EventRecovered, sev, msg, map[string]any{"cleared": cleared, "codes": cur})
	}

	// Reminders count down the current leaf; a new leaf starts over.
	reminded := prev.Reminded
	if st.LeafSHA256 != prev.LeafSHA256 {
		reminded = 0
	}
	if leaf := leafOf(o.Result); !failed && leaf != nil {
		left := st.LeafExpires.Sub(o.At)
		notBefore, _ := time.Parse(time.RFC3339, leaf.NotBefore)
		lifetime := st.LeafExpires.Sub(notBefore)
		if notBefore.IsZero() {
			lifetime = 0
		}
		var crossed time.Duration
		for _, t := range p.thresholds(m, lifetime) {
			if left > 0 && left <= t {
				crossed = t // the list is largest first: the last hit is the smallest
			}
		}
		if crossed > 0 && (reminded == 0 || crossed < reminded) {
			sev := "warning"
			if st.Status == assess.Critical || left <= time.Duration(m.CritDays)*24*time.Hour {
				sev = "critical"
			}
			add(EventExpiryReminder, sev, fmt.Sprintf("%s: certificate expires in %s (%s)", m.Target, humanLeft(left), day(st.LeafExpires)),
				map[string]any{"threshold_days": roundDays(crossed)})
			reminded = crossed
		}
	}
	st.Reminded = reminded
	return out
}

// alertBase is what every alert event of a check carries: a snapshot of
// the monitor and its leaf, so a message can be written long after.
func alertBase(m store.Monitor, st store.State, o Outcome) store.Event {
	data := map[string]any{"target": m.Target, "tags": m.Tags, "problems": o.Result.Problems}
	if !st.LeafExpires.IsZero() {
		data["not_after"] = st.LeafExpires.UTC().Format(time.RFC3339)
		data["days_left"] = int(math.Floor(st.LeafExpires.Sub(o.At).Hours() / 24))
		data["sha256"] = st.LeafSHA256
	}
	if leaf := leafOf(o.Result); leaf != nil {
		data["subject"], data["issuer"] = leaf.Subject, leaf.Issuer
	}
	return store.Event{TeamID: m.TeamID, MonitorID: m.ID, At: o.At, Status: st.Status, Data: data}
}

// silence says whether the monitor's alerts are snoozed or acknowledged.
func silence(m store.Monitor, st store.State, now time.Time) (bool, string) {
	if m.SnoozedUntil.After(now) {
		return true, "snoozed"
	}
	if m.AckedSHA256 != "" && m.AckedSHA256 == AckKey(st.LeafSHA256) {
		return true, "acknowledged"
	}
	return false, ""
}

// AckKey is what an acknowledgement records for a monitor serving leaf:
// the leaf, or "-" for a monitor that never served one.
func AckKey(leafSHA256 string) string {
	if leafSHA256 == "" {
		return "-"
	}
	return leafSHA256
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// describe lists the problems with the given codes.
func describe(r *assess.Result, codes []string) string {
	var parts []string
	for _, p := range r.Problems {
		if slices.Contains(codes, p.Code) {
			parts = append(parts, p.Code+": "+p.Message)
		}
	}
	return strings.Join(parts, "; ")
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func roundDays(d time.Duration) float64 {
	return math.Round(d.Hours()/24*100) / 100
}

// humanLeft is "14 days", or hours when less than two days are left.
func humanLeft(d time.Duration) string {
	if d < 48*time.Hour {
		h := int(math.Ceil(d.Hours()))
		if h == 1 {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", h)
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}
