package notify

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/secret"
	"github.com/certmon/certmon/internal/store"
)

// TestUnreadableChannelIsKeptForRetry: settings sealed with another key
// (notifications.secret_key changed) cannot be read; the delivery stays
// pending with the reason, for when the key is put back, and nothing is
// sent.
func TestUnreadableChannelIsKeptForRetry(t *testing.T) {
	r := newRig(t, 0, WorkerConfig{MaxAttempts: 5})
	ctx := context.Background()
	key := func() *secret.Box {
		k, _ := secret.ParseKey(secret.NewKey())
		b, err := secret.New(k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old, current := key(), key()
	cfg, _ := json.Marshal(ChannelConfig{URL: "http://127.0.0.1:9/never", Secret: "s"})
	sealed, err := old.Seal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := r.st.CreateChannel(ctx, store.Channel{TeamID: 1, Name: "hook", Type: TypeWebhook, Config: sealed})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.CreateRule(ctx, store.Rule{TeamID: 1, Name: "all", Channels: []int64{ch.ID}}); err != nil {
		t.Fatal(err)
	}
	r.w.dests = &StoreDestinations{Store: r.st, Secrets: current, Options: SenderOptions{Timeout: time.Second}}
	r.events(1)
	r.drain()
	ds, _, err := r.st.ListDeliveries(ctx, store.DeliveryFilter{TeamID: 1})
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %d %v", len(ds), err)
	}
	if d := ds[0]; d.Status != store.DeliveryPending || d.Attempts != 1 || !strings.Contains(d.LastError, `channel "hook"`) {
		t.Errorf("delivery %s attempts %d error %q: want pending, one attempt, the channel named", d.Status, d.Attempts, d.LastError)
	}
}

// TestRecipientsWithoutMailServerAreDeadLetters: with no
// notifications.smtp.host, a recipient's email cannot go; it becomes a
// dead letter at once, saying why, and can be retried once mail is set.
func TestRecipientsWithoutMailServerAreDeadLetters(t *testing.T) {
	r := newRig(t, 0, WorkerConfig{MaxAttempts: 5})
	r.w.dests = &StoreDestinations{Store: r.st}
	r.recipientEvents("expired")
	r.drain()
	ds, _, err := r.st.ListDeliveries(context.Background(), store.DeliveryFilter{TeamID: 1})
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %d %v", len(ds), err)
	}
	if d := ds[0]; d.Status != store.DeliveryDead || d.Address != "ops@example.com" || !strings.Contains(d.LastError, "notifications.smtp.host") {
		t.Errorf("delivery %s to %s error %q: want a dead letter naming notifications.smtp.host", d.Status, d.Address, d.LastError)
	}
}
