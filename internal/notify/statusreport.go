package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/adhocore/gronx"

	"github.com/certmon/certmon/internal/report"
	"github.com/certmon/certmon/internal/store"
)

// statusReportRun names the status report's slots in the store's run table.
const statusReportRun = "status_report"

// Retry defaults for a failed send within one slot: 5 tries over about
// 2.5 minutes, long enough for a mail server restart, short enough to be
// over well before a daily slot comes round again.
const (
	defaultReportAttempts = 5
	defaultReportBackoff  = 10 * time.Second
	maxReportBackoff      = 5 * time.Minute
)

// ReportStore is what the status report needs of the store.
type ReportStore interface {
	ListMonitors(ctx context.Context, f store.ListFilter) ([]store.MonitorWithState, int64, error)
	ClaimRun(ctx context.Context, name string, slot time.Time, owner string) (bool, error)
}

var _ ReportStore = (*store.Store)(nil)

// StatusReport emails the status of every monitor on a cron schedule. Any
// number of replicas may run one on a shared database: each slot is
// claimed in the store, and only the replica that claims it sends.
type StatusReport struct {
	Store  ReportStore
	Sender Sender
	// Schedule is a 5-field cron expression read in Location (UTC when
	// nil), so "0 8 * * 1" is Monday 08:00 local time all year.
	Schedule          string
	Location          *time.Location
	OnlyWhenAttention bool
	// BaseURL, when set, links each target to its page in certmon.
	BaseURL string
	// Owner names this replica in the run table.
	Owner  string
	Logger *slog.Logger
	Now    func() time.Time

	// attempts and backoff bound the retries of one slot; zero means the
	// defaults (tests shorten them).
	attempts int
	backoff  time.Duration
}

// Validate checks the report can run: a store, a sender, and a schedule
// that parses and fires at least once more.
func (r *StatusReport) Validate() error {
	if r.Store == nil || r.Sender == nil {
		return errors.New("status report: store and sender are required")
	}
	if err := validCron(r.Schedule); err != nil {
		return fmt.Errorf("notify.report.schedule: %w", err)
	}
	if _, err := nextSlot(r.Schedule, r.loc(), r.now()); err != nil {
		return fmt.Errorf("notify.report.schedule: %w", err)
	}
	return nil
}

// validCron accepts the 5-field expressions monitor schedules accept.
func validCron(expr string) error {
	if len(strings.Fields(expr)) != 5 {
		return fmt.Errorf("%q: want a 5-field cron expression such as \"0 8 * * 1-5\"", expr)
	}
	if !gronx.IsValid(expr) {
		return fmt.Errorf("%q: invalid cron expression", expr)
	}
	return nil
}

// Run sends the report at every slot of the schedule until ctx ends; it
// returns an error only for an invalid configuration. Slots missed while
// the server was down are not replayed.
func (r *StatusReport) Run(ctx context.Context) error {
	if err := r.Validate(); err != nil {
		return err
	}
	log := r.log()
	after := r.now()
	for {
		slot, err := nextSlot(r.Schedule, r.loc(), after)
		if err != nil {
			return fmt.Errorf("status report: %w", err)
		}
		log.Debug("status report: next slot", "slot", slot)
		if !r.sleepUntil(ctx, slot) {
			return nil
		}
		if sent, err := r.RunOnce(ctx, slot); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Error("status report: slot failed", "slot", slot, "err", err)
		} else if sent {
			log.Info("status report: sent", "slot", slot)
		}
		// A slot that passed while this one ran is skipped, not sent late.
		after = slot
		if now := r.now(); now.After(after) {
			after = now
		}
	}
}

// RunOnce runs slot: claims it, and if this replica won, lists every
// monitor and sends the report, retrying a failed send a few times. It
// reports whether a report went out; false without an error means another
// replica has the slot or nothing needed attention.
func (r *StatusReport) RunOnce(ctx context.Context, slot time.Time) (bool, error) {
	log := r.log().With("slot", slot)
	won, err := r.Store.ClaimRun(ctx, statusReportRun, slot, r.Owner)
	if err != nil {
		return false, fmt.Errorf("status report: claim slot: %w", err)
	}
	if !won {
		log.Debug("status report: slot taken by another replica")
		return false, nil
	}
	attempts, backoff := r.attempts, r.backoff
	if attempts <= 0 {
		attempts = defaultReportAttempts
	}
	if backoff <= 0 {
		backoff = defaultReportBackoff
	}
	for attempt := 1; ; attempt++ {
		sent, wait, err := r.build(ctx, slot)
		if err == nil {
			return sent, nil
		}
		if attempt >= attempts || Permanent(err) || ctx.Err() != nil {
			return false, fmt.Errorf("status report: giving up after %d attempts: %w", attempt, err)
		}
		wait = max(wait, backoff)
		log.Warn("status report: attempt failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		if !sleepCtx(ctx, wait) {
			return false, ctx.Err()
		}
		backoff = min(2*backoff, maxReportBackoff)
	}
}

// build lists the monitors, renders the report and sends it. wait is the
// receiver's Retry-After after a failed send.
func (r *StatusReport) build(ctx context.Context, slot time.Time) (sent bool, wait time.Duration, err error) {
	monitors, err := listAll(ctx, r.Store)
	if err != nil {
		return false, 0, err
	}
	now := r.now()
	if r.OnlyWhenAttention && !report.NeedsAttention(monitors, now) {
		r.log().Info("status report: every monitor is fine; not sent", "slot", slot, "monitors", len(monitors))
		return false, 0, nil
	}
	subject, html, text := report.StatusReport(monitors, now, r.loc(), r.BaseURL)
	msg := Message{
		// The same for every replica and resend of the slot, so an
		// idempotent receiver drops a duplicate.
		Key:      fmt.Sprintf("%s/%d", statusReportRun, slot.Unix()),
		Subject:  subject,
		Prepared: &Prepared{HTML: html, Text: text},
	}
	ans, err := r.Sender.Send(ctx, msg)
	if err != nil {
		var se *SendError
		if errors.As(err, &se) {
			wait = se.Answer.RetryAfter
		}
		return false, min(wait, maxReportBackoff), fmt.Errorf("send: %w", err)
	}
	r.log().Debug("status report: accepted", "slot", slot, "code", ans.Code, "monitors", len(monitors))
	return true, 0, nil
}

// listAll pages through the monitors of every team.
func listAll(ctx context.Context, st ReportStore) ([]store.MonitorWithState, error) {
	var (
		all    []store.MonitorWithState
		cursor int64
	)
	for {
		// TeamID 0 selects all teams: the report is the operator's view.
		page, next, err := st.ListMonitors(ctx, store.ListFilter{Limit: 1000, After: cursor})
		if err != nil {
			return nil, fmt.Errorf("list monitors: %w", err)
		}
		all = append(all, page...)
		if next == 0 {
			return all, nil
		}
		cursor = next
	}
}

// nextSlot is the first time strictly after "after" that the cron
// expression fires, read on the wall clock of loc. Each wall-clock slot
// fires once: one the clock skips when springing forward fires at the
// jump, and one it passes twice when falling back fires the first time.
func nextSlot(expr string, loc *time.Location, after time.Time) (time.Time, error) {
	// gronx walks the wall clock as a UTC time, which has no gaps or
	// repeats; each tick is then placed in loc.
	wall := wallOf(after.In(loc))
	// Bounded: each step moves at least a minute on, and only a slot in
	// the repeated hour can be passed over.
	for range 200 {
		tick, err := gronx.NextTickAfter(expr, wall, false)
		if err != nil {
			return time.Time{}, fmt.Errorf("cron %q has no time after %s", expr, after.In(loc).Format(time.DateTime))
		}
		y, m, d := tick.Date()
		at := wallTimes(y, m, d, clock(tick.Hour()*60+tick.Minute()), loc)[0]
		if at.After(after) {
			return at, nil
		}
		wall = tick
	}
	return time.Time{}, fmt.Errorf("cron %q: no slot found after %s", expr, after.In(loc).Format(time.DateTime))
}

// sleepUntil waits until the clock reaches t, and false when ctx ended
// first. It wakes at least every minute to read the clock again, so a
// clock stepped forward (or a suspended host) does not delay a slot.
func (r *StatusReport) sleepUntil(ctx context.Context, t time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := t.Sub(r.now())
		if d <= 0 {
			return true
		}
		if !sleepCtx(ctx, min(d, time.Minute)) {
			return false
		}
	}
}

// sleepCtx sleeps for d, and false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *StatusReport) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *StatusReport) loc() *time.Location {
	if r.Location != nil {
		return r.Location
	}
	return time.UTC
}

func (r *StatusReport) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}
