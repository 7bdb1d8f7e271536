package monitor

import (
	"slices"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

var t0 = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func result(status assess.Status, leafSHA, notAfter string, codes ...string) *assess.Result {
	r := &assess.Result{Target: "example.com", Status: status, Problems: []assess.Problem{}}
	for _, c := range codes {
		r.Problems = append(r.Problems, assess.Problem{Code: c, Severity: assess.SeverityCritical, Message: c})
	}
	if leafSHA != "" {
		r.Chain = []assess.Certificate{{SHA256: leafSHA, Serial: "01" + leafSHA, NotAfter: notAfter}}
	}
	return r
}

func outcome(r *assess.Result, at time.Time) Outcome {
	o := Outcome{Result: r, At: at}
	for range r.Chain {
		o.ChainDER = append(o.ChainDER, []byte("der"))
	}
	return o
}

func claimWith(prev store.State) store.Claim {
	return store.Claim{Monitor: store.Monitor{ID: 9, TeamID: 1, Target: "example.com", Schedule: "1h"}, State: prev, Slot: t0}
}

func stateOf(rec store.CheckRecord) store.State { return rec.State }

func TestTransitionFirstCheck(t *testing.T) {
	sched, _ := ParseSchedule("1h")
	rec := Transition(claimWith(store.State{}), outcome(result(assess.OK, "aa", "2027-01-01T00:00:00Z"), t0), sched, time.Minute, AlertPolicy{})
	if rec.History == nil || !slices.Equal(rec.History.Change, []string{"first_check", "certificate"}) {
		t.Fatalf("history %+v", rec.History)
	}
	if len(rec.Events) != 1 || rec.Events[0].Kind != EventFirstCheck {
		t.Fatalf("events %+v", rec.Events)
	}
	if len(rec.Certificates) != 1 || rec.State.LeafSHA256 != "aa" || rec.State.LeafExpires.Year() != 2027 {
		t.Errorf("state %+v certs %d", rec.State, len(rec.Certificates))
	}
	if !rec.State.NextCheckAt.After(t0) {
		t.Errorf("next check %v", rec.State.NextCheckAt)
	}
}

func TestTransitionUnchangedWritesOnlyState(t *testing.T) {
	sched, _ := ParseSchedule("1h")
	r := result(assess.Warning, "aa", "2026-07-01T00:00:00Z", assess.CodeExpiring)
	prev := store.State{Status: assess.Warning, Result: r, LeafSHA256: "aa", LastCheckAt: t0.Add(-time.Hour),
		LeafExpires: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC), Reminded: 30 * 24 * time.Hour}
	next := result(assess.Warning, "aa", "2026-07-01T00:00:00Z", assess.CodeExpiring)
	next.Problems[0].Message = "expires in one day less" // messages change daily
	rec := Transition(claimWith(prev), outcome(next, t0), sched, time.Minute, AlertPolicy{})
	if rec.History != nil || len(rec.Events) != 0 || len(rec.Certificates) != 0 {
		t.Errorf("unchanged check wrote history %v events %v certs %d", rec.History, rec.Events, len(rec.Certificates))
	}
	if stateOf(rec).LastCheckAt != t0 {
		t.Error("state row not updated")
	}
}

func TestTransitionRenewed(t *testing.T) {
	sched, _ := ParseSchedule("1h")
	old := result(assess.Warning, "aa", "2026-07-01T00:00:00Z", assess.CodeExpiring)
	prev := store.State{Status: assess.Warning, Result: old, LeafSHA256: "aa"}
	rec := Transition(claimWith(prev), outcome(result(assess.OK, "bb", "2027-07-01T00:00:00Z"), t0), sched, time.Minute, AlertPolicy{})
	kinds := []string{}
	for _, e := range rec.Events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []string{EventStatusChanged, EventCertificateChanged}) {
		t.Fatalf("events %v", kinds)
	}
	data := rec.Events[1].Data
	if data["change"] != "renewed" || data["old_sha256"] != "aa" || data["new_sha256"] != "bb" || data["old_not_after"] != "2026-07-01T00:00:00Z" {
		t.Errorf("certificate change data %v", data)
	}
	if !slices.Equal(rec.History.Change, []string{"status", "problems", "certificate"}) {
		t.Errorf("history change %v", rec.History.Change)
	}
}

func TestTransitionRetriesOnceBeforeAlerting(t *testing.T) {
	sched, _ := ParseSchedule("1h")
	ok := result(assess.OK, "aa", "2027-01-01T00:00:00Z")
	prev := store.State{Status: assess.OK, Result: ok, LeafSHA256: "aa"}
	down := result(assess.Critical, "", "", assess.CodeUnreachable)

	rec := Transition(claimWith(prev), outcome(down, t0), sched, 20*time.Second, AlertPolicy{})
	if rec.State.Status != assess.OK || rec.State.Failures != 1 || rec.History != nil || len(rec.Events) != 0 {
		t.Fatalf("first failure changed the state: %+v", rec.State)
	}
	if rec.State.NextCheckAt != t0.Add(20*time.Second) {
		t.Errorf("retry at %v", rec.State.NextCheckAt)
	}

	rec = Transition(claimWith(rec.State), outcome(down, t0.Add(20*time.Second)), sched, 20*time.Second, AlertPolicy{})
	if rec.State.Status != assess.Critical || rec.State.Failures != 2 || !slices.Equal(kindsOf(rec.Events), []string{EventStatusChanged, EventUnreachable}) {
		t.Fatalf("second failure not recorded: %+v events %v", rec.State, rec.Events)
	}
	if rec.State.LeafSHA256 != "aa" {
		t.Error("last served certificate forgotten while unreachable")
	}

	// Recovery with the same certificate is a status change, not a new
	// certificate.
	rec = Transition(claimWith(rec.State), outcome(ok, t0.Add(time.Hour)), sched, 20*time.Second, AlertPolicy{})
	if !slices.Equal(kindsOf(rec.Events), []string{EventStatusChanged, EventRecovered}) || rec.State.Failures != 0 {
		t.Errorf("recovery events %+v", rec.Events)
	}
}

func kindsOf(evs []store.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}
