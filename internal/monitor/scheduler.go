package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// Checker runs one claimed check; LocalChecker is the built-in agent.
// The claim identifies the slot, so a remote agent's job can carry it.
type Checker interface {
	Check(ctx context.Context, c store.Claim) Outcome
}

// Store is what the scheduler needs of the store.
type Store interface {
	ClaimDue(ctx context.Context, owner string, pools []string, now time.Time, lease time.Duration, limit int) ([]store.Claim, error)
	LoadPrevious(ctx context.Context, claims []store.Claim) error
	RecordChecks(ctx context.Context, recs []store.CheckRecord) ([]int, error)
	ReleaseClaims(ctx context.Context, owner string) error
}

var _ Store = (*store.Store)(nil)

// Metrics receives what the scheduler does; nil methods are fine.
type Metrics interface {
	CheckDone(status string, took time.Duration)
	Claimed(n int, lag time.Duration)
	StoreError()
}

// SchedulerConfig tunes a Scheduler.
type SchedulerConfig struct {
	// Owner names this replica in leases; unique per process.
	Owner string
	Pools []string
	// PoolsFunc, when set, is asked for the pools before every claim
	// (agent pools come and go with agent connections); Pools is ignored.
	PoolsFunc  func() []string
	Workers    int
	Batch      int
	Lease      time.Duration
	Poll       time.Duration
	RetryDelay time.Duration
	// Alerts decides which alert events checks write.
	Alerts AlertPolicy
	// FlushEvery bounds how long a finished check waits to be written in
	// a batch.
	FlushEvery time.Duration
	// ShutdownGrace is how long in-flight checks may finish at shutdown
	// before their claims are released.
	ShutdownGrace time.Duration
	Now           func() time.Time
}

// Scheduler claims due checks from the store, runs them on a bounded worker
// pool and writes their outcomes in batches. Several Schedulers (replicas)
// may share one PostgreSQL store: claims are leases, and an outcome is
// accepted only while its lease is held.
type Scheduler struct {
	cfg     SchedulerConfig
	store   Store
	checker Checker
	log     *slog.Logger
	metrics Metrics
	wake    chan struct{}
}

// NewScheduler returns a Scheduler; call Run to start it.
func NewScheduler(cfg SchedulerConfig, st Store, ch Checker, m Metrics, log *slog.Logger) *Scheduler {
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 200
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 50 * time.Millisecond
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Pools) == 0 && cfg.PoolsFunc == nil {
		cfg.Pools = []string{CloudPool}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cfg: cfg, store: st, checker: ch, metrics: m, log: log, wake: make(chan struct{}, 1)}
}

// Wake asks the scheduler to look for due work now (a monitor was created
// or "check now" was pressed) instead of at the next poll.
func (s *Scheduler) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run schedules until ctx ends, then lets in-flight checks finish (up to
// ShutdownGrace), writes their outcomes and releases what is left.
func (s *Scheduler) Run(ctx context.Context) error {
	// Work runs on its own context so shutdown can grant a grace period.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	// Up to Batch claimed checks wait for a worker beyond those running:
	// enough to claim in batches, few enough that a lease (minutes) never
	// lapses while its check waits.
	slots := s.cfg.Workers + s.cfg.Batch
	jobs := make(chan store.Claim, slots)
	done := make(chan store.CheckRecord, s.cfg.Workers)
	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	var workers sync.WaitGroup
	for range s.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for c := range jobs {
				done <- s.runOne(workCtx, c)
				free <- struct{}{}
			}
		}()
	}
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		s.record(done)
	}()

	s.claimLoop(ctx, jobs, free)
	close(jobs)

	finished := make(chan struct{})
	go func() { workers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("shutdown grace over; abandoning in-flight checks", "grace", s.cfg.ShutdownGrace)
		cancelWork()
		<-finished
	}
	close(done)
	<-recorded
	// Whatever was claimed but not recorded is due again for any replica.
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.ReleaseClaims(relCtx, s.cfg.Owner); err != nil {
		return fmt.Errorf("releasing claims: %w", err)
	}
	return nil
}

func (s *Scheduler) claimLoop(ctx context.Context, jobs chan<- store.Claim, free chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
		for {
			n := drain(free, s.cfg.Batch)
			if n == 0 {
				// Wait for a worker before asking the store again.
				select {
				case <-ctx.Done():
					return
				case <-free:
				}
				// Let a few more checks finish so the store is asked
				// for a batch, not for one check at a time.
				time.Sleep(2 * time.Millisecond)
				n = 1 + drain(free, s.cfg.Batch-1)
			}
			now := s.cfg.Now()
			pools := s.cfg.Pools
			if s.cfg.PoolsFunc != nil {
				pools = s.cfg.PoolsFunc()
			}
			claims, err := s.store.ClaimDue(ctx, s.cfg.Owner, pools, now, s.cfg.Lease, n)
			if err == nil {
				// Without its previous state a check cannot be judged as
				// a change or not; on failure the leases simply lapse.
				err = s.store.LoadPrevious(ctx, claims)
				if err != nil {
					claims = nil
				}
			}
			for range n - len(claims) {
				free <- struct{}{}
			}
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("claiming due checks", "err", err)
					s.countStoreError()
				}
				break
			}
			if len(claims) > 0 && s.metrics != nil {
				s.metrics.Claimed(len(claims), now.Sub(claims[0].Slot))
			}
			for _, c := range claims {
				jobs <- c
			}
			if len(claims) < n {
				break // nothing more is due
			}
		}
		timer.Reset(s.cfg.Poll)
	}
}

// drain takes up to max tokens without blocking.
func drain(ch chan struct{}, max int) int {
	n := 0
	for n < max {
		select {
		case <-ch:
			n++
		default:
			return n
		}
	}
	return n
}

func (s *Scheduler) runOne(ctx context.Context, c store.Claim) (rec store.CheckRecord) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("check panicked", "monitor", c.Monitor.ID, "panic", p, "stack", string(debug.Stack()))
			rec = Transition(c, invalid(c.Monitor, fmt.Errorf("internal error: %v", p), s.cfg.Now().UTC()), s.schedule(c.Monitor), 0, s.cfg.Alerts)
		}
	}()
	o := s.checker.Check(ctx, c)
	if s.metrics != nil {
		s.metrics.CheckDone(string(o.Result.Status), time.Since(start))
	}
	return Transition(c, o, s.schedule(c.Monitor), s.cfg.RetryDelay, s.cfg.Alerts)
}

func (s *Scheduler) schedule(m store.Monitor) Schedule {
	sch, err := ParseSchedule(m.Schedule)
	if err != nil {
		// Validated by the API; a bad row falls back rather than stalls.
		sch, _ = ParseSchedule("4h")
	}
	return sch
}

// record writes finished checks in batches until done is closed.
func (s *Scheduler) record(done <-chan store.CheckRecord) {
	var batch []store.CheckRecord
	ticker := time.NewTicker(s.cfg.FlushEvery)
	defer ticker.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		s.write(batch)
		batch = batch[:0]
	}
	for {
		select {
		case r, ok := <-done:
			if !ok {
				flush()
				return
			}
			batch = append(batch, r)
			if len(batch) >= s.cfg.Batch {
				flush()
			}
		case <-ticker.C:
			flush()
		}
	}
}

// write stores a batch, retrying while the database is away: the leases
// keep the work from being lost, and a lease that lapses meanwhile makes
// the record "lost" rather than written twice.
func (s *Scheduler) write(batch []store.CheckRecord) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		lost, err := s.store.RecordChecks(ctx, batch)
		cancel()
		if err == nil {
			if len(lost) > 0 {
				s.log.Info("check results dropped: claim taken over by another replica", "count", len(lost))
			}
			return
		}
		s.countStoreError()
		if attempt >= 8 || errors.Is(err, context.Canceled) {
			s.log.Error("writing check results failed; the checks will run again", "err", err, "count", len(batch))
			return
		}
		s.log.Warn("writing check results", "err", err, "attempt", attempt)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Scheduler) countStoreError() {
	if s.metrics != nil {
		s.metrics.StoreError()
	}
}
