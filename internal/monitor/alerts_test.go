package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// leafResult is a check that found leaf sha with the given validity.
func leafResult(sha string, notBefore, notAfter time.Time, now time.Time, codes ...string) *assess.Result {
	status := assess.OK
	var problems []assess.Problem
	if left := notAfter.Sub(now); left <= 0 {
		codes = append(codes, assess.CodeExpired)
	} else if left < 30*24*time.Hour {
		status = assess.Warning
		problems = append(problems, assess.Problem{Code: assess.CodeExpiring, Severity: assess.SeverityWarning, Message: "expiring"})
	}
	for _, c := range codes {
		status = assess.Critical
		problems = append(problems, assess.Problem{Code: c, Severity: assess.SeverityCritical, Message: c + " message"})
	}
	return &assess.Result{Target: "example.com", Status: status, Problems: problems, Chain: []assess.Certificate{{
		SHA256: sha, NotBefore: notBefore.UTC().Format(time.RFC3339), NotAfter: notAfter.UTC().Format(time.RFC3339),
	}}}
}

// alertRun feeds checks through Transition like the scheduler does and
// collects the notifiable events.
type alertRun struct {
	t      *testing.T
	m      store.Monitor
	state  store.State
	policy AlertPolicy
	sent   []store.Event
}

func (a *alertRun) check(r *assess.Result, at time.Time) []store.Event {
	a.t.Helper()
	sched, _ := ParseSchedule("1h")
	c := store.Claim{Monitor: a.m, State: a.state, Slot: at}
	rec := Transition(c, outcome(r, at), sched, time.Minute, a.policy)
	a.state = rec.State
	var got []store.Event
	for _, e := range rec.Events {
		if e.Notify {
			got = append(got, e)
		}
	}
	a.sent = append(a.sent, got...)
	return got
}

func thresholdsOf(evs []store.Event) []float64 {
	var out []float64
	for _, e := range evs {
		if e.Kind == EventExpiryReminder {
			out = append(out, e.Data["threshold_days"].(float64))
		}
	}
	return out
}

func TestRemindersOncePerThresholdThenExpired(t *testing.T) {
	notBefore := t0.Add(-50 * 24 * time.Hour)
	notAfter := t0.Add(40 * 24 * time.Hour)
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com", CritDays: 7}}
	// Four checks a day for 42 days.
	for at := t0; at.Before(notAfter.Add(2 * 24 * time.Hour)); at = at.Add(6 * time.Hour) {
		a.check(leafResult("aa", notBefore, notAfter, at), at)
	}
	if got := thresholdsOf(a.sent); !slices.Equal(got, []float64{30, 14, 7, 3, 1}) {
		t.Errorf("reminders at %v, want one per threshold 30 14 7 3 1", got)
	}
	if got := kindsOf(a.sent); got[len(got)-1] != EventExpired || slices.Index(got, EventExpired) != len(got)-1 {
		t.Errorf("events %v: want one expired, last", got)
	}
	for _, e := range a.sent {
		if e.Kind == EventExpiryReminder && e.Data["threshold_days"].(float64) <= 7 && e.Severity != "critical" {
			t.Errorf("reminder at %v days has severity %s, want critical within crit_days", e.Data["threshold_days"], e.Severity)
		}
	}
}

func TestFirstCheckWithProblemNotifiesAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name   string
		result *assess.Result
		want   []string
	}{
		{"3 days left", leafResult("aa", t0.Add(-80*24*time.Hour), t0.Add(3*24*time.Hour-time.Hour), t0), []string{EventExpiryReminder}},
		{"expired", leafResult("aa", t0.Add(-90*24*time.Hour), t0.Add(-time.Hour), t0), []string{EventExpired}},
		{"untrusted", leafResult("aa", t0.Add(-10*24*time.Hour), t0.Add(80*24*time.Hour), t0, assess.CodeUntrusted), []string{EventInvalid}},
		{"fine", leafResult("aa", t0.Add(-10*24*time.Hour), t0.Add(80*24*time.Hour), t0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
			if got := kindsOf(a.check(tc.result, t0)); !slices.Equal(got, append([]string{}, tc.want...)) {
				t.Errorf("first check events %v, want %v", got, tc.want)
			}
		})
	}
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
	a.check(leafResult("aa", t0.Add(-80*24*time.Hour), t0.Add(3*24*time.Hour-time.Hour), t0), t0)
	if got := thresholdsOf(a.sent); !slices.Equal(got, []float64{3}) {
		t.Errorf("first check 3 days before expiry reminded for %v, want only the 3-day threshold", got)
	}
}

func TestSkippedThresholdsGiveOneMessage(t *testing.T) {
	notBefore, notAfter := t0.Add(-60*24*time.Hour), t0.Add(20*24*time.Hour)
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
	a.check(leafResult("aa", notBefore, notAfter, t0), t0) // 20 days: 30 crossed
	at := t0.Add(15 * 24 * time.Hour)                      // 5 days: 14 and 7 crossed at once
	if got := thresholdsOf(a.check(leafResult("aa", notBefore, notAfter, at), at)); !slices.Equal(got, []float64{7}) {
		t.Errorf("jump from 20 to 5 days left reminded %v, want one reminder for 7", got)
	}
}

func TestRenewalRestartsTheCountdown(t *testing.T) {
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
	a.check(leafResult("aa", t0.Add(-80*24*time.Hour), t0.Add(10*24*time.Hour), t0), t0)
	at := t0.Add(time.Hour)
	got := a.check(leafResult("bb", at, at.Add(90*24*time.Hour), at), at)
	if !slices.Equal(kindsOf(got), []string{EventCertificateChanged}) {
		t.Fatalf("renewal events %v", kindsOf(got))
	}
	if a.state.Reminded != 0 {
		t.Errorf("reminder state %v kept across renewal", a.state.Reminded)
	}
	at = at.Add(61 * 24 * time.Hour) // 29 days left on the new leaf
	if got := thresholdsOf(a.check(leafResult("bb", t0.Add(time.Hour), t0.Add(time.Hour+90*24*time.Hour), at), at)); !slices.Equal(got, []float64{30}) {
		t.Errorf("new leaf reminded %v, want 30", got)
	}
}

func TestInvalidEscalatesAndRecovers(t *testing.T) {
	nb, na := t0.Add(-10*24*time.Hour), t0.Add(200*24*time.Hour)
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
	steps := []struct {
		codes []string
		want  []string
	}{
		{nil, nil},
		{[]string{assess.CodeHostnameMismatch}, []string{EventInvalid}},
		{[]string{assess.CodeHostnameMismatch}, nil},
		{[]string{assess.CodeHostnameMismatch, assess.CodeRevoked}, []string{EventInvalid}},
		{[]string{assess.CodeRevoked}, []string{EventRecovered}},
		{nil, []string{EventRecovered}},
		{nil, nil},
	}
	for i, s := range steps {
		at := t0.Add(time.Duration(i) * time.Hour)
		got := a.check(leafResult("aa", nb, na, at, s.codes...), at)
		if !slices.Equal(kindsOf(got), append([]string{}, s.want...)) {
			t.Errorf("step %d (%v): events %v, want %v", i, s.codes, kindsOf(got), s.want)
		}
		if i == 3 && !slices.Equal(got[0].Data["new_codes"].([]string), []string{assess.CodeRevoked}) {
			t.Errorf("escalation names %v, want only the new REVOKED", got[0].Data["new_codes"])
		}
	}
	if last := a.sent[len(a.sent)-1]; last.Severity != "info" {
		t.Errorf("full recovery severity %s", last.Severity)
	}
}

func TestUnreachableAfterNFailures(t *testing.T) {
	nb, na := t0.Add(-10*24*time.Hour), t0.Add(200*24*time.Hour)
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}, policy: AlertPolicy{UnreachableAfter: 3}}
	a.check(leafResult("aa", nb, na, t0), t0)
	down := result(assess.Critical, "", "", assess.CodeUnreachable)
	var got [][]string
	for i := 1; i <= 5; i++ {
		got = append(got, kindsOf(a.check(down, t0.Add(time.Duration(i)*time.Minute))))
	}
	want := [][]string{{}, {}, {EventUnreachable}, {}, {}}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("failures 1..5 notified %v, want unreachable only at the third", got)
	}
	if back := kindsOf(a.check(leafResult("aa", nb, na, t0.Add(time.Hour)), t0.Add(time.Hour))); !slices.Equal(back, []string{EventRecovered}) {
		t.Errorf("back online: %v", back)
	}
	// A single failure between successes (flapping) never alerts.
	for i := range 6 {
		at := t0.Add(2*time.Hour + time.Duration(i)*time.Minute)
		r := leafResult("aa", nb, na, at)
		if i%2 == 1 {
			r = down
		}
		if got := kindsOf(a.check(r, at)); len(got) != 0 {
			t.Errorf("flapping check %d notified %v", i, got)
		}
	}
}

func TestSnoozeAndAcknowledgeSilence(t *testing.T) {
	nb, na := t0.Add(-10*24*time.Hour), t0.Add(200*24*time.Hour)
	bad := func(sha string) *assess.Result { return leafResult(sha, nb, na, t0, assess.CodeUntrusted) }
	for _, tc := range []struct {
		name string
		m    store.Monitor
		sha  string
		want bool
	}{
		{"snoozed", store.Monitor{SnoozedUntil: t0.Add(time.Hour)}, "aa", true},
		{"snooze over", store.Monitor{SnoozedUntil: t0.Add(-time.Hour)}, "aa", false},
		{"acknowledged leaf", store.Monitor{AckedSHA256: "aa"}, "aa", true},
		{"certificate changed since", store.Monitor{AckedSHA256: "aa"}, "bb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.ID, tc.m.TeamID, tc.m.Target = 1, 1, "example.com"
			a := &alertRun{t: t, m: tc.m}
			got := a.check(bad(tc.sha), t0)
			if len(got) != 1 || got[0].Kind != EventInvalid || got[0].Silenced != tc.want {
				t.Fatalf("events %+v, want one invalid with silenced %v", got, tc.want)
			}
		})
	}
}

func TestShortLivedThresholdsScale(t *testing.T) {
	nb := t0
	na := t0.Add(7 * 24 * time.Hour) // a 7-day certificate
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com"}}
	for at := t0; at.Before(na); at = at.Add(time.Hour) {
		a.check(leafResult("aa", nb, na, at), at)
	}
	got := thresholdsOf(a.sent)
	// 30/14/7/3/1 days of a 90-day certificate, scaled to 7 days.
	if !slices.Equal(got, []float64{2.33, 1.09, 0.54, 0.23, 0.08}) {
		t.Errorf("short-lived reminders at %v days", got)
	}
	if first := a.sent[0]; first.At.Before(na.Add(-56 * time.Hour)) {
		t.Errorf("first reminder %v left; a 7-day certificate must not be reminded on issue", na.Sub(first.At))
	}
}

func TestThresholdsByMonitorTagAndDefault(t *testing.T) {
	p := AlertPolicy{ReminderDays: []int{20, 5}, TagReminderDays: map[string][]int{"prod": {60, 30}}}
	days := func(m store.Monitor) []time.Duration { return p.thresholds(m, 90*24*time.Hour) }
	d := 24 * time.Hour
	if got := days(store.Monitor{}); !slices.Equal(got, []time.Duration{20 * d, 5 * d}) {
		t.Errorf("global %v", got)
	}
	if got := days(store.Monitor{Tags: []string{"web", "prod"}}); !slices.Equal(got, []time.Duration{60 * d, 30 * d}) {
		t.Errorf("tag %v", got)
	}
	if got := days(store.Monitor{Tags: []string{"prod"}, ReminderDays: []int{2, 9}}); !slices.Equal(got, []time.Duration{9 * d, 2 * d}) {
		t.Errorf("monitor %v", got)
	}
	if got := (AlertPolicy{}).thresholds(store.Monitor{}, 0); len(got) != 5 || got[0] != 30*d {
		t.Errorf("default %v", got)
	}
}

func TestCheckThatCouldNotRunDoesNotAlert(t *testing.T) {
	nb, na := t0.Add(-10*24*time.Hour), t0.Add(200*24*time.Hour)
	a := &alertRun{t: t, m: store.Monitor{ID: 1, TeamID: 1, Target: "example.com", AgentPool: "dc1"}}
	a.check(leafResult("aa", nb, na, t0), t0)
	// The pool's agent is offline: its agent_offline alert says so; the
	// monitors themselves stay quiet, however long it lasts.
	for i := 1; i <= 5; i++ {
		o := Unknown(a.m, "agent offline", t0.Add(time.Duration(i)*time.Minute))
		if got := kindsOf(a.check(o.Result, o.At)); len(got) != 0 {
			t.Errorf("check %d without an agent notified %v", i, got)
		}
	}
	if back := kindsOf(a.check(leafResult("aa", nb, na, t0.Add(time.Hour)), t0.Add(time.Hour))); len(back) != 0 {
		t.Errorf("agent back, nothing had been alerted, yet %v", back)
	}
	// Already unreachable when the agent went away: still unreachable, no
	// recovery claimed until a check reaches the server.
	down := result(assess.Critical, "", "", assess.CodeUnreachable)
	for i := 1; i <= 2; i++ {
		a.check(down, t0.Add(2*time.Hour+time.Duration(i)*time.Minute))
	}
	if !slices.Contains(a.state.Alerted, assess.CodeUnreachable) {
		t.Fatalf("not alerted unreachable: %v", a.state.Alerted)
	}
	o := Unknown(a.m, "agent offline", t0.Add(3*time.Hour))
	if got := kindsOf(a.check(o.Result, o.At)); len(got) != 0 || !slices.Contains(a.state.Alerted, assess.CodeUnreachable) {
		t.Errorf("check without an agent: events %v, alerted %v", got, a.state.Alerted)
	}
}
