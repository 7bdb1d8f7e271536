package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/monitor"
)

// Metrics is the Prometheus side of the scheduler and the monitor counts.
type Metrics struct {
	checks      *prometheus.CounterVec
	duration    prometheus.Histogram
	claimed     prometheus.Counter
	lag         prometheus.Gauge
	storeErrors prometheus.Counter
	notified    *prometheus.CounterVec
}

var _ monitor.Metrics = (*Metrics)(nil)

// NewMetrics registers certmon's collectors on reg (once per registry:
// registering twice panics, as prometheus.MustRegister does). counter is
// asked, at most every monitorsCacheTTL, how many monitors have each
// status (Store.CountByStatus). The Server does not call it: whoever wires
// the scheduler does, and hands the result to it.
func NewMetrics(reg *prometheus.Registry, counter func(ctx context.Context) (map[string]int, error)) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certmon_checks_total",
			Help: "Checks finished, by resulting status.",
		}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "certmon_check_duration_seconds",
			Help:    "Time one check took, probe and assessment.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certmon_scheduler_claimed_total",
			Help: "Due checks claimed from the store by this replica.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "certmon_scheduler_lag_seconds",
			Help: "How late the oldest check of the last claim was (queue lag).",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "certmon_store_errors_total",
			Help: "Store operations of the scheduler and metrics that failed.",
		}),
		notified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certmon_notifications_total",
			Help: "Deliveries settled by this replica: sent, retried, dead, skipped or deferred.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.checks, m.duration, m.claimed, m.lag, m.storeErrors, m.notified,
		&monitorsCollector{
			desc: prometheus.NewDesc("certmon_monitors",
				"Monitors by latest status (PENDING: not checked yet).", []string{"status"}, nil),
			count:  counter,
			failed: m.storeErrors,
			now:    time.Now,
		})
	return m
}

// CheckDone records one finished check.
func (m *Metrics) CheckDone(status string, took time.Duration) {
	m.checks.WithLabelValues(status).Inc()
	m.duration.Observe(took.Seconds())
}

// Claimed records one claim of n due checks, lag behind schedule.
func (m *Metrics) Claimed(n int, lag time.Duration) {
	m.claimed.Add(float64(n))
	m.lag.Set(lag.Seconds())
}

// Settled records n deliveries settled with outcome (notify.Worker).
func (m *Metrics) Settled(outcome string, n int) { m.notified.WithLabelValues(outcome).Add(float64(n)) }

// StoreError records a failed store operation.
func (m *Metrics) StoreError() { m.storeErrors.Inc() }

// monitorsCacheTTL keeps scrapes cheap: counting a million monitors is a
// table scan, and several Prometheis may scrape every replica.
const monitorsCacheTTL = 10 * time.Second

// monitorsCountTimeout bounds the count so a slow store cannot stall a
// scrape past Prometheus' own timeout.
const monitorsCountTimeout = 5 * time.Second

// monitorsCollector reports certmon_monitors{status} computed at scrape
// time, cached for monitorsCacheTTL.
type monitorsCollector struct {
	desc   *prometheus.Desc
	count  func(ctx context.Context) (map[string]int, error)
	failed prometheus.Counter
	now    func() time.Time

	mu     sync.Mutex
	at     time.Time
	counts map[string]int
}

func (c *monitorsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *monitorsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.current()
	if counts == nil {
		return // never counted successfully: no series beats a false zero
	}
	// Every status is always reported, so a status dropping to zero shows
	// as 0 rather than a vanished series.
	statuses := []string{string(assess.OK), string(assess.Warning), string(assess.Critical), string(assess.Unknown), ""}
	for s := range counts {
		if !slices.Contains(statuses, s) {
			statuses = append(statuses, s)
		}
	}
	for _, s := range statuses {
		label := s
		if label == "" {
			label = "PENDING"
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), label)
	}
}

// current returns cached counts, refreshing them when stale. On a store
// error the last good counts are kept (and the error counted).
func (c *monitorsCollector) current() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.counts != nil && now.Sub(c.at) < monitorsCacheTTL {
		return c.counts
	}
	ctx, cancel := context.WithTimeout(context.Background(), monitorsCountTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		c.failed.Inc()
		return c.counts
	}
	c.counts, c.at = counts, now
	return counts
}
