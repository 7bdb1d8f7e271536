package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store"
)

// OutboxStore is what the worker asks of the store.
type OutboxStore interface {
	DueDestinations(ctx context.Context, now time.Time, limit int) ([]store.Destination, error)
	ClaimDeliveries(ctx context.Context, owner string, dest store.Destination, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error)
	SettleDeliveries(ctx context.Context, owner string, ids []int64, st store.Settlement) (int64, error)
	ReleaseDeliveries(ctx context.Context, owner string) error
}

// ErrGone means a delivery's channel no longer exists.
var ErrGone = errors.New("channel deleted")

// Destinations resolves where deliveries go.
type Destinations interface {
	// Channel returns the sender of a channel, ErrGone when it was deleted.
	Channel(ctx context.Context, teamID, channelID int64) (Sender, error)
	// Address returns the email sender for one recipient address and that
	// person's settings.
	Address(ctx context.Context, teamID int64, address string) (Sender, store.NotifySettings, error)
}

// WorkerConfig tunes a Worker.
type WorkerConfig struct {
	// Owner names this replica in delivery leases; unique per process.
	Owner string
	// Workers bounds concurrent sends.
	Workers int
	// Destinations is how many destinations one round serves.
	Destinations int
	// Lease is how long a claimed delivery is this worker's; longer than
	// a send can take.
	Lease time.Duration
	// Poll is how often the outbox is looked at when idle.
	Poll time.Duration
	// MaxAttempts failed sends make a delivery a dead letter.
	MaxAttempts int
	// RetryMin doubles per failed attempt up to RetryMax, with jitter.
	RetryMin, RetryMax time.Duration
	// RatePerMinute limits messages per destination; GroupMax is the most
	// items in one message.
	RatePerMinute int
	GroupMax      int
	// BaseURL of certmon, for links in messages.
	BaseURL string
	Now     func() time.Time
	// Metrics, when set, counts settled deliveries by outcome.
	Metrics interface{ Settled(outcome string, n int) }
}

// Worker delivers the outbox: it claims due deliveries, groups them per
// destination into messages, sends them within the rate limits and
// settles each delivery: sent, retried with backoff, dead, deferred
// (quiet hours, digest, rate limit) or skipped.
type Worker struct {
	cfg   WorkerConfig
	store OutboxStore
	dests Destinations
	log   *slog.Logger
	wake  chan struct{}

	mu      sync.Mutex
	buckets map[string]*bucket
	// Sent counts messages and items handed to receivers (metrics, tests).
	sentMessages, sentItems int64
}

// NewWorker returns a worker; call Run.
func NewWorker(cfg WorkerConfig, st OutboxStore, dests Destinations, log *slog.Logger) *Worker {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Destinations <= 0 {
		cfg.Destinations = 256
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 30 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(time.Hour, cfg.RetryMin)
	}
	if cfg.RatePerMinute <= 0 {
		cfg.RatePerMinute = 20
	}
	if cfg.GroupMax <= 0 {
		cfg.GroupMax = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, store: st, dests: dests, log: log, wake: make(chan struct{}, 1), buckets: map[string]*bucket{}}
}

// Wake makes the worker look at the outbox now.
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Stats returns the messages and items sent so far.
func (w *Worker) Stats() (messages, items int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sentMessages, w.sentItems
}

// Run delivers until ctx ends, then releases what it holds.
func (w *Worker) Run(ctx context.Context) error {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := w.store.ReleaseDeliveries(rctx, w.cfg.Owner); err != nil {
			w.log.Warn("release deliveries", "err", err)
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.wake:
		}
		n, err := w.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("outbox", "err", err)
		}
		next := w.cfg.Poll
		if n > 0 && err == nil {
			next = 0 // more may be waiting
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// RunOnce serves every due destination once: it claims up to GroupMax of
// a destination's due deliveries and sends them as one message, within
// the destination's rate. It returns how many deliveries it settled.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	now := w.cfg.Now()
	dests, err := w.store.DueDestinations(ctx, now, w.cfg.Destinations)
	if err != nil || len(dests) == 0 {
		return 0, err
	}
	var (
		mu      sync.Mutex
		handled int
		errs    []error
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, w.cfg.Workers)
	for _, d := range dests {
		key := destKey(d)
		if !w.available(key, now) {
			continue // over its rate: what waits is grouped into the next message
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Full messages in a row while the rate allows: a backlog
			// drains without a round trip through DueDestinations each.
			at := now
			for range messagesPerRound {
				ds, err := w.store.ClaimDeliveries(ctx, w.cfg.Owner, d, at, w.cfg.Lease, w.cfg.GroupMax)
				if err == nil && len(ds) > 0 {
					w.deliver(ctx, key, ds)
				}
				mu.Lock()
				handled += len(ds)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
				if err != nil || len(ds) < w.cfg.GroupMax || ctx.Err() != nil {
					break
				}
				at = w.cfg.Now()
				if !w.available(key, at) {
					break
				}
			}
		}()
	}
	wg.Wait()
	return handled, errors.Join(errs...)
}

// messagesPerRound bounds how many messages one destination gets in a
// round, so one backlog does not hold the others up.
const messagesPerRound = 64

func destKey(d store.Destination) string {
	if d.ChannelID != 0 {
		return "c" + strconv.FormatInt(d.ChannelID, 10)
	}
	return "t" + strconv.FormatInt(d.TeamID, 10) + "/" + d.Address
}

// deliver sends one destination's claimed deliveries as one message.
func (w *Worker) deliver(ctx context.Context, key string, ds []store.Delivery) {
	now := w.cfg.Now()
	first := ds[0]
	var (
		sender Sender
		err    error
	)
	if first.ChannelID != 0 {
		sender, err = w.dests.Channel(ctx, first.TeamID, first.ChannelID)
		if errors.Is(err, ErrGone) {
			w.settle(ctx, ds, store.Settlement{Status: store.DeliverySkipped, Error: "channel deleted", NextAt: now})
			return
		}
	} else {
		var settings store.NotifySettings
		sender, settings, err = w.dests.Address(ctx, first.TeamID, first.Address)
		if err == nil {
			var unwanted []store.Delivery
			ds, unwanted = split(ds, func(d store.Delivery) bool { return Wants(settings, d.Event.Kind) })
			w.settle(ctx, unwanted, store.Settlement{Status: store.DeliverySkipped, Error: "not wanted by the recipient's settings", NextAt: now})
			// Quiet hours or a digest hold a delivery until the first
			// time the person takes email after it was created; what
			// waited goes out then, together, as one message.
			waiting := map[time.Time][]store.Delivery{}
			ds, _ = split(ds, func(d store.Delivery) bool {
				at := SendAt(settings, d.CreatedAt)
				if at.After(now) {
					waiting[at] = append(waiting[at], d)
					return false
				}
				return true
			})
			for at, held := range waiting {
				w.settle(ctx, held, store.Settlement{Status: store.DeliveryPending, NextAt: at})
			}
			if len(ds) == 0 {
				return
			}
		}
	}
	if err != nil {
		w.fail(ctx, ds, Answer{}, err) // a SendError keeps its Permanent verdict
		return
	}
	if at, ok := w.take(key, now); !ok {
		w.settle(ctx, ds, store.Settlement{Status: store.DeliveryPending, NextAt: at})
		return
	}
	ans, err := sender.Send(ctx, w.message(ds))
	if err != nil {
		w.fail(ctx, ds, ans, err)
		if ans.RetryAfter > 0 {
			w.block(key, now.Add(ans.RetryAfter))
		}
		return
	}
	w.mu.Lock()
	w.sentMessages++
	w.sentItems += int64(len(ds))
	w.mu.Unlock()
	w.settle(ctx, ds, store.Settlement{Status: store.DeliverySent, Code: ans.Code, At: w.cfg.Now(), NextAt: now})
}

func split(ds []store.Delivery, keep func(store.Delivery) bool) (yes, no []store.Delivery) {
	for _, d := range ds {
		if keep(d) {
			yes = append(yes, d)
		} else {
			no = append(no, d)
		}
	}
	return yes, no
}

// fail settles a failed send: retried after a backoff (or the receiver's
// Retry-After), or a dead letter after MaxAttempts or a permanent error.
func (w *Worker) fail(ctx context.Context, ds []store.Delivery, ans Answer, err error) {
	now := w.cfg.Now()
	attempts := 0
	for _, d := range ds {
		attempts = max(attempts, d.Attempts+1)
	}
	st := store.Settlement{Status: store.DeliveryPending, Failed: true, Error: err.Error(), Code: ans.Code,
		NextAt: now.Add(w.backoff(attempts))}
	if ans.RetryAfter > 0 {
		st.NextAt = now.Add(min(ans.RetryAfter, 24*time.Hour))
	}
	if Permanent(err) || attempts >= w.cfg.MaxAttempts {
		st.Status, st.NextAt = store.DeliveryDead, now
	}
	w.log.Warn("notification not delivered", "deliveries", len(ds), "attempt", attempts, "status", st.Status, "err", err)
	w.settle(ctx, ds, st)
}

// backoff is RetryMin doubled per attempt up to RetryMax, jittered down
// by up to half so that a receiver's outage does not end in a stampede.
func (w *Worker) backoff(attempt int) time.Duration {
	d := w.cfg.RetryMin
	for i := 1; i < attempt && d < w.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.RetryMax)
	return d/2 + rand.N(d/2+1)
}

func (w *Worker) settle(ctx context.Context, ds []store.Delivery, st store.Settlement) {
	if len(ds) == 0 {
		return
	}
	ids := make([]int64, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	// Settling must survive shutdown: a sent message recorded as sent is
	// what keeps it from going out twice.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := w.store.SettleDeliveries(sctx, w.cfg.Owner, ids, st); err != nil {
		w.log.Error("settle deliveries", "deliveries", len(ids), "status", st.Status, "err", err)
		return
	}
	if w.cfg.Metrics != nil {
		w.cfg.Metrics.Settled(outcome(st), len(ids))
	}
}

// outcome names a settlement for metrics.
func outcome(st store.Settlement) string {
	switch {
	case st.Status == store.DeliveryPending && st.Failed:
		return "retried"
	case st.Status == store.DeliveryPending:
		return "deferred"
	}
	return st.Status
}

// message builds the message of one destination's chunk.
func (w *Worker) message(ds []store.Delivery) Message {
	items := make([]Item, len(ds))
	keys := make([]string, len(ds))
	for i, d := range ds {
		items[i] = w.item(d)
		keys[i] = items[i].Key
	}
	if len(ds) == 1 {
		return Message{Key: keys[0], Items: items}
	}
	slices.Sort(keys)
	sum := sha256.New()
	for _, k := range keys {
		sum.Write([]byte(k + "\n"))
	}
	return Message{Key: "grp_" + hex.EncodeToString(sum.Sum(nil))[:32], Items: items}
}

// item turns a delivery's event (and the snapshot in its data) into what
// channels render.
func (w *Worker) item(d store.Delivery) Item {
	e := d.Event
	it := Item{Key: d.DedupeKey(), EventID: e.ID, Kind: e.Kind, Severity: e.Severity, Status: e.Status, At: e.At,
		Text: e.Message, MonitorID: e.MonitorID, Tags: d.Tags, Data: e.Data}
	if target, ok := e.Data["target"].(string); ok {
		it.Target = target
	}
	if len(it.Tags) == 0 {
		if tags, ok := e.Data["tags"].([]any); ok {
			for _, t := range tags {
				if s, ok := t.(string); ok {
					it.Tags = append(it.Tags, s)
				}
			}
		}
	}
	if na, ok := e.Data["not_after"].(string); ok {
		if t, err := time.Parse(time.RFC3339, na); err == nil {
			it.NotAfter = t
		}
	}
	if days, ok := e.Data["days_left"].(float64); ok {
		it.DaysLeft = int(days)
	}
	if raw, ok := e.Data["problems"]; ok {
		// Round-trip through JSON: the data came from JSON.
		if b, err := json.Marshal(raw); err == nil {
			var ps []assess.Problem
			if json.Unmarshal(b, &ps) == nil {
				it.Problems = ps
			}
		}
	}
	if w.cfg.BaseURL != "" {
		if e.MonitorID != 0 {
			it.Link = w.cfg.BaseURL + "/api/v1/monitors/" + strconv.FormatInt(e.MonitorID, 10)
		} else {
			it.Link = w.cfg.BaseURL + "/api/v1/events?kind=" + e.Kind
		}
	}
	return it
}

// bucket is a destination's token bucket; blocked holds it after a
// receiver's Retry-After.
type bucket struct {
	tokens  float64
	at      time.Time
	blocked time.Time
}

// take spends one of the destination's tokens, or says when one will be
// there.
func (w *Worker) take(key string, now time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, at, ok := w.refill(key, now)
	if ok {
		b.tokens--
	}
	return at, ok
}

// available tells whether a message to the destination may go now.
func (w *Worker) available(key string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _, ok := w.refill(key, now)
	return ok
}

// refill brings the destination's bucket to now; ok when a token is
// there, else at is when one will be. w.mu is held.
func (w *Worker) refill(key string, now time.Time) (b *bucket, at time.Time, ok bool) {
	rate := float64(w.cfg.RatePerMinute) / float64(time.Minute)
	b = w.buckets[key]
	if b == nil {
		b = &bucket{tokens: float64(w.cfg.RatePerMinute), at: now}
		w.buckets[key] = b
	}
	if now.Before(b.blocked) {
		return b, b.blocked, false
	}
	if now.After(b.at) {
		b.tokens = min(float64(w.cfg.RatePerMinute), b.tokens+float64(now.Sub(b.at))*rate)
		b.at = now
	}
	if b.tokens >= 1 {
		return b, now, true
	}
	return b, now.Add(time.Duration((1 - b.tokens) / rate)), false
}

func (w *Worker) block(key string, until time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if b := w.buckets[key]; b != nil && until.After(b.blocked) {
		b.blocked = until
	}
}
