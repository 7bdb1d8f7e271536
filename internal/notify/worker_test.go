package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// The worker's logic (grouping, rates, retries, dead letters, quiet
// hours) against a real store; the senders here record what they are
// given and answer as told. The real senders are tested against real
// receivers in their own files.

type fakeSender struct {
	mu     sync.Mutex
	sent   []Message
	answer func(n int) (Answer, error) // nil: success
	calls  int
}

func (f *fakeSender) Send(_ context.Context, m Message) (Answer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.answer != nil {
		if a, err := f.answer(f.calls); err != nil {
			return a, err
		}
	}
	f.sent = append(f.sent, m)
	return Answer{Code: 200}, nil
}

func (f *fakeSender) items() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, m := range f.sent {
		n += len(m.Items)
	}
	return n
}

type fakeDests struct {
	channels map[int64]*fakeSender
	mail     *fakeSender
	settings store.NotifySettings
}

func (d *fakeDests) Channel(_ context.Context, _, id int64) (Sender, error) {
	if s, ok := d.channels[id]; ok {
		return s, nil
	}
	return nil, ErrGone
}

func (d *fakeDests) Address(context.Context, int64, string) (Sender, store.NotifySettings, error) {
	return d.mail, d.settings, nil
}

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type rig struct {
	t     *testing.T
	st    *store.Store
	clock *testClock
	dests *fakeDests
	w     *Worker
	chans []int64
}

// newRig opens a SQLite store with n webhook channels and one rule
// routing every event to all of them.
func newRig(t *testing.T, n int, cfg WorkerConfig) *rig {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "certmon.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &rig{t: t, st: st, clock: &testClock{t: time.Now().Add(time.Second)}, dests: &fakeDests{channels: map[int64]*fakeSender{}, mail: &fakeSender{}}}
	for i := range n {
		ch, err := st.CreateChannel(context.Background(), store.Channel{TeamID: 1, Name: fmt.Sprint("c", i), Type: TypeWebhook, Config: "x"})
		if err != nil {
			t.Fatal(err)
		}
		r.chans = append(r.chans, ch.ID)
		r.dests.channels[ch.ID] = &fakeSender{}
	}
	if n > 0 {
		if _, err := st.CreateRule(context.Background(), store.Rule{TeamID: 1, Name: "all", Channels: r.chans}); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Owner, cfg.Now = "w1", r.clock.Now
	r.w = NewWorker(cfg, st, r.dests, nil)
	return r
}

func (r *rig) events(n int) {
	r.t.Helper()
	evs := make([]store.Event, n)
	for i := range evs {
		evs[i] = store.Event{TeamID: 1, Kind: "agent_offline", Severity: "critical", Message: fmt.Sprint("agent ", i), At: time.Now(), Notify: true}
	}
	if err := r.st.AppendEvents(context.Background(), evs); err != nil {
		r.t.Fatal(err)
	}
}

// drain runs claim rounds until one claims nothing.
func (r *rig) drain() {
	r.t.Helper()
	for range 1000 {
		n, err := r.w.RunOnce(context.Background())
		if err != nil {
			r.t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
	r.t.Fatal("outbox never drained")
}

func (r *rig) count(status string) int {
	r.t.Helper()
	ds, _, err := r.st.ListDeliveries(context.Background(), store.DeliveryFilter{TeamID: 1, Status: status, Limit: 1000})
	if err != nil {
		r.t.Fatal(err)
	}
	return len(ds)
}

func TestMassExpiryIsGroupedAndRateLimited(t *testing.T) {
	r := newRig(t, 3, WorkerConfig{GroupMax: 100, RatePerMinute: 4})
	r.events(1000)
	r.drain()
	for _, id := range r.chans {
		s := r.dests.channels[id]
		if len(s.sent) > 4 {
			t.Errorf("channel %d got %d messages in the first minute; rate is 4/min", id, len(s.sent))
		}
	}
	// Time passes; the rest goes out in few, full messages.
	for range 10 {
		r.clock.Add(time.Minute)
		r.drain()
	}
	for _, id := range r.chans {
		s := r.dests.channels[id]
		if s.items() != 1000 {
			t.Errorf("channel %d got %d of 1000 items", id, s.items())
		}
		if len(s.sent) != 10 {
			t.Errorf("channel %d got %d messages for 1000 events, want 10 full groups of 100", id, len(s.sent))
		}
		seen := map[string]bool{}
		for _, m := range s.sent {
			if len(m.Items) > 100 {
				t.Errorf("message of %d items over GroupMax", len(m.Items))
			}
			for _, it := range m.Items {
				if seen[it.Key] {
					t.Errorf("item %s sent twice", it.Key)
				}
				seen[it.Key] = true
			}
		}
	}
	if got := r.count(store.DeliverySent); got != 1000 && got != 3000 {
		// ListDeliveries pages at 1000.
		t.Errorf("sent deliveries %d", got)
	}
}

func TestRetryBackoffAndDeadLetter(t *testing.T) {
	r := newRig(t, 2, WorkerConfig{MaxAttempts: 3, RetryMin: 10 * time.Second, RetryMax: time.Minute})
	flaky, broken := r.dests.channels[r.chans[0]], r.dests.channels[r.chans[1]]
	flaky.answer = func(n int) (Answer, error) {
		if n <= 2 {
			return Answer{Code: 500}, &SendError{Answer: Answer{Code: 500}, Err: errors.New("server error")}
		}
		return Answer{}, nil
	}
	broken.answer = func(int) (Answer, error) {
		return Answer{Code: 503}, &SendError{Answer: Answer{Code: 503}, Err: errors.New("unavailable")}
	}
	r.events(1)
	r.drain()
	if flaky.calls != 1 || len(flaky.sent) != 0 {
		t.Fatalf("first attempt: %d calls", flaky.calls)
	}
	r.drain() // not due yet: backoff
	if flaky.calls != 1 {
		t.Fatalf("retried before the backoff: %d calls", flaky.calls)
	}
	ds, _, _ := r.st.ListDeliveries(context.Background(), store.DeliveryFilter{TeamID: 1, Status: store.DeliveryPending})
	for _, d := range ds {
		wait := d.NextAt.Sub(r.clock.Now())
		if d.Attempts != 1 || wait < 5*time.Second || wait > 10*time.Second || d.LastCode == 0 {
			t.Errorf("after one failure: attempts %d, retry in %v (want 5-10s with jitter), code %d", d.Attempts, wait, d.LastCode)
		}
	}
	for range 5 {
		r.clock.Add(time.Minute)
		r.drain()
	}
	if len(flaky.sent) != 1 || flaky.calls != 3 {
		t.Errorf("flaky receiver: %d calls, %d delivered; want success on the third", flaky.calls, len(flaky.sent))
	}
	if broken.calls != 3 || r.count(store.DeliveryDead) != 1 {
		t.Errorf("broken receiver: %d calls, %d dead letters; want 3 tries then one dead letter", broken.calls, r.count(store.DeliveryDead))
	}
	// A dead letter retried through the API goes out again.
	dead, _, _ := r.st.ListDeliveries(context.Background(), store.DeliveryFilter{TeamID: 1, Status: store.DeliveryDead})
	broken.answer = nil
	if err := r.st.RetryDelivery(context.Background(), 1, dead[0].ID, r.clock.Now()); err != nil {
		t.Fatal(err)
	}
	r.drain()
	if len(broken.sent) != 1 || r.count(store.DeliveryDead) != 0 {
		t.Errorf("retried dead letter not delivered")
	}
}

func TestPermanentErrorIsDeadAtOnceAndRetryAfterIsHonoured(t *testing.T) {
	r := newRig(t, 2, WorkerConfig{MaxAttempts: 5, RetryMin: time.Second, RetryMax: time.Minute})
	bad, limited := r.dests.channels[r.chans[0]], r.dests.channels[r.chans[1]]
	bad.answer = func(int) (Answer, error) {
		return Answer{Code: 400, Body: "invalid_payload"}, &SendError{Answer: Answer{Code: 400}, Permanent: true, Err: errors.New("rejected")}
	}
	limited.answer = func(n int) (Answer, error) {
		if n == 1 {
			a := Answer{Code: 429, RetryAfter: 45 * time.Second}
			return a, &SendError{Answer: a, Err: errors.New("rate limited")}
		}
		return Answer{}, nil
	}
	r.events(1)
	r.drain()
	if bad.calls != 1 || r.count(store.DeliveryDead) != 1 {
		t.Errorf("permanent error: %d calls, %d dead", bad.calls, r.count(store.DeliveryDead))
	}
	r.events(1) // a second event for the limited channel waits too
	r.clock.Add(44 * time.Second)
	r.drain()
	if limited.calls != 1 {
		t.Errorf("sent %d times before Retry-After passed", limited.calls)
	}
	r.clock.Add(2 * time.Second)
	r.drain()
	if limited.items() != 2 || limited.calls != 2 {
		t.Errorf("after Retry-After: %d calls carrying %d items, want one message with both", limited.calls, limited.items())
	}
}

func TestDeletedChannelIsSkipped(t *testing.T) {
	r := newRig(t, 1, WorkerConfig{})
	r.events(2)
	delete(r.dests.channels, r.chans[0])
	r.drain()
	if r.count(store.DeliverySkipped) != 2 || r.count(store.DeliveryPending) != 0 {
		t.Errorf("deliveries to a deleted channel: skipped %d pending %d", r.count(store.DeliverySkipped), r.count(store.DeliveryPending))
	}
}

// recipientEvents writes one notifiable event of a monitor with a
// recipient, through a check record as the scheduler would.
func (r *rig) recipientEvents(kinds ...string) {
	r.t.Helper()
	ctx := context.Background()
	m, err := r.st.CreateMonitor(ctx, store.Monitor{Target: "example.com", Schedule: "1h", Recipients: []string{"ops@example.com"}}, time.Now().Add(-time.Minute))
	if err != nil {
		r.t.Fatal(err)
	}
	claims, err := r.st.ClaimDue(ctx, "s", []string{"cloud"}, time.Now(), time.Minute, 10)
	if err != nil || len(claims) != 1 || claims[0].Monitor.ID != m.ID {
		r.t.Fatalf("claim: %v %d", err, len(claims))
	}
	rec := store.CheckRecord{Claim: claims[0], State: store.State{Status: "WARNING", LastCheckAt: time.Now(), NextCheckAt: time.Now().Add(time.Hour)}}
	for _, k := range kinds {
		rec.Events = append(rec.Events, store.Event{Kind: k, Severity: "warning", Message: k, Notify: true, Data: map[string]any{"target": "example.com"}})
	}
	if _, err := r.st.RecordChecks(ctx, []store.CheckRecord{rec}); err != nil {
		r.t.Fatal(err)
	}
}

func TestRecipientSettings(t *testing.T) {
	t.Run("kinds", func(t *testing.T) {
		r := newRig(t, 0, WorkerConfig{})
		r.dests.settings = store.NotifySettings{Events: []string{"expired"}}
		r.recipientEvents("expired", "expiry_reminder")
		r.drain()
		if r.dests.mail.items() != 1 || r.count(store.DeliverySkipped) != 1 {
			t.Errorf("user wanting only expired got %d items, %d skipped", r.dests.mail.items(), r.count(store.DeliverySkipped))
		}
	})
	t.Run("digest", func(t *testing.T) {
		r := newRig(t, 0, WorkerConfig{})
		now := time.Now().UTC()
		digestAt := now.Add(3 * time.Hour).Truncate(time.Minute)
		r.dests.settings = store.NotifySettings{Mode: "digest", DigestAt: digestAt.Format("15:04"), TimeZone: "UTC"}
		r.recipientEvents("expired", "expiry_reminder")
		r.recipientEvents("invalid")
		r.drain()
		if r.dests.mail.calls != 0 {
			t.Fatalf("digest user emailed at once")
		}
		r.clock.Add(digestAt.Sub(r.clock.Now()) + time.Second)
		r.drain()
		if r.dests.mail.calls != 1 || r.dests.mail.items() != 3 {
			t.Errorf("digest: %d emails with %d items, want one with 3", r.dests.mail.calls, r.dests.mail.items())
		}
	})
}

// flakyStore fails settlements while down, as a database restart would.
type flakyStore struct {
	OutboxStore
	down bool
}

func (f *flakyStore) SettleDeliveries(ctx context.Context, owner string, ids []int64, st store.Settlement) (int64, error) {
	if f.down {
		return 0, errors.New("connection refused")
	}
	return f.OutboxStore.SettleDeliveries(ctx, owner, ids, st)
}

// TestStoreOutageLosesNothing: a message sent while the database cannot
// record it stays leased; once the lease runs out it goes again under the
// same key and is recorded. Nothing is lost; a receiver sees the key twice.
func TestStoreOutageLosesNothing(t *testing.T) {
	r := newRig(t, 1, WorkerConfig{Lease: time.Minute})
	flaky := &flakyStore{OutboxStore: r.st, down: true}
	r.w.store = flaky
	hook := r.dests.channels[r.chans[0]]
	r.events(1)
	r.drain()
	if len(hook.sent) != 1 {
		t.Fatalf("sent %d messages during the outage, want 1", len(hook.sent))
	}
	flaky.down = false
	r.drain() // still leased: not sent again yet
	if len(hook.sent) != 1 {
		t.Fatalf("resent %d before the lease ran out", len(hook.sent)-1)
	}
	r.clock.Add(2 * time.Minute)
	r.drain()
	if len(hook.sent) != 2 || hook.sent[0].Items[0].Key != hook.sent[1].Items[0].Key {
		t.Fatalf("after the lease: %d sends; want the same key again", len(hook.sent))
	}
	if r.count(store.DeliverySent) != 1 || r.count(store.DeliveryPending) != 0 {
		t.Errorf("sent %d pending %d, want the delivery recorded as sent", r.count(store.DeliverySent), r.count(store.DeliveryPending))
	}
}
