package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// sample is one gathered series.
type sample struct {
	label string
	value float64
	count uint64
	sum   float64
}

// gather returns each family's series (the dto types are used through
// their methods only, keeping client_model an indirect dependency).
func gather(t *testing.T, reg *prometheus.Registry) map[string][]sample {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]sample{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{
				value: m.GetGauge().GetValue() + m.GetCounter().GetValue(),
				count: m.GetHistogram().GetSampleCount(),
				sum:   m.GetHistogram().GetSampleSum(),
			}
			if l := m.GetLabel(); len(l) > 0 {
				s.label = l[0].GetValue()
			}
			out[mf.GetName()] = append(out[mf.GetName()], s)
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	calls := 0
	m := NewMetrics(reg, func(context.Context) (map[string]int, error) {
		calls++
		return map[string]int{"OK": 3, "": 2, "CRITICAL": 1}, nil
	})
	m.CheckDone("OK", 200*time.Millisecond)
	m.CheckDone("CRITICAL", 2*time.Second)
	m.CheckDone("OK", time.Second)
	m.Claimed(5, 3*time.Second)
	m.Claimed(2, 1500*time.Millisecond)
	m.StoreError()

	got := gather(t, reg)
	byLabel := func(name string) map[string]float64 {
		out := map[string]float64{}
		for _, x := range got[name] {
			out[x.label] = x.value
		}
		return out
	}
	if c := byLabel("certmon_checks_total"); c["OK"] != 2 || c["CRITICAL"] != 1 {
		t.Errorf("checks_total %v", c)
	}
	if h := got["certmon_check_duration_seconds"][0]; h.count != 3 || h.sum != 3.2 {
		t.Errorf("duration histogram count %d sum %v", h.count, h.sum)
	}
	if v := got["certmon_scheduler_claimed_total"][0].value; v != 7 {
		t.Errorf("claimed_total %v", v)
	}
	if v := got["certmon_scheduler_lag_seconds"][0].value; v != 1.5 {
		t.Errorf("lag %v, want the last claim's 1.5", v)
	}
	if v := got["certmon_store_errors_total"][0].value; v != 1 {
		t.Errorf("store_errors %v", v)
	}
	want := map[string]float64{"OK": 3, "PENDING": 2, "CRITICAL": 1, "WARNING": 0, "UNKNOWN": 0}
	if c := byLabel("certmon_monitors"); len(c) != len(want) || c["OK"] != 3 || c["PENDING"] != 2 || c["WARNING"] != 0 {
		t.Errorf("monitors %v, want %v", c, want)
	}
	if calls != 1 {
		t.Errorf("counter called %d times, want 1", calls)
	}
}

func TestMonitorsCollectorCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := 0
	var fail error
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c := &monitorsCollector{
		desc: prometheus.NewDesc("certmon_monitors", "", []string{"status"}, nil),
		count: func(context.Context) (map[string]int, error) {
			calls++
			if fail != nil {
				return nil, fail
			}
			return map[string]int{"OK": calls}, nil
		},
		failed: failed,
		now:    func() time.Time { return now },
	}
	if got := c.current()["OK"]; got != 1 {
		t.Fatalf("first count %d", got)
	}
	now = now.Add(5 * time.Second)
	if got := c.current()["OK"]; got != 1 || calls != 1 {
		t.Fatalf("within the TTL: count %d after %d calls, want the cached 1", got, calls)
	}
	now = now.Add(6 * time.Second)
	if got := c.current()["OK"]; got != 2 {
		t.Fatalf("after the TTL: count %d, want a fresh 2", got)
	}
	fail = errors.New("db down")
	now = now.Add(time.Minute)
	if got := c.current()["OK"]; got != 2 {
		t.Fatalf("on error: count %d, want the last good 2", got)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(failed)
	if v := gather(t, reg)["x"][0].value; v != 1 {
		t.Errorf("store errors %v, want 1", v)
	}

	// Never counted: no series rather than false zeros.
	c2 := &monitorsCollector{desc: c.desc, count: c.count, failed: failed, now: c.now}
	ch := make(chan prometheus.Metric, 10)
	c2.Collect(ch)
	if len(ch) != 0 {
		t.Errorf("%d series without any count", len(ch))
	}
}
