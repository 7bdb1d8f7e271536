package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/secret"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/store/storetest"
)

// BenchmarkFanOut measures the figure: 10,000 events routed to 3
// webhook channels (real senders, signed, to receivers on loopback that
// verify every signature) until the receivers hold all 30,000 items. It
// times everything after the events exist: claiming, rendering, signing,
// sending, settling; writing the events with their 30,000 deliveries (in
// batches of 1,000 events, one transaction each) is reported apart. Sub-benchmarks: the default grouping and rate
// limits, and one message per item with no rate limit (raw throughput).
//
//	go test ./internal/notify -run '^$' -bench FanOut -benchtime 1x
//	CERTMON_TEST_POSTGRES=... adds the PostgreSQL store.
func BenchmarkFanOut(b *testing.B) {
	engines := []string{"sqlite"}
	if os.Getenv("CERTMON_TEST_POSTGRES") != "" {
		engines = append(engines, "postgres")
	}
	for _, engine := range engines {
		for _, mode := range []struct {
			name  string
			group int
			rate  int
		}{{"grouped", 500, 30}, {"one-per-message", 1, 1 << 30}} {
			b.Run(engine+"/"+mode.name, func(b *testing.B) {
				for range b.N {
					fanOut(b, engine, mode.group, mode.rate)
				}
			})
		}
	}
}

func fanOut(b *testing.B, engine string, groupMax, rate int) {
	b.StopTimer()
	const events, channels = 10000, 3
	ctx := context.Background()
	dsn := storetest.DSN(b, engine)
	if engine == "sqlite" {
		dsn = filepath.Join(b.TempDir(), "certmon.db")
	}
	st, err := store.Open(ctx, dsn, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	box, err := secret.New(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	var bad atomic.Int64
	var ids []int64
	for i := range channels {
		secretKey := fmt.Sprint("whsec-", i)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if VerifySignature(secretKey, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature), time.Now(), time.Minute) != nil {
				bad.Add(1)
				http.Error(w, "bad signature", http.StatusUnauthorized)
				return
			}
			var p struct {
				Items []json.RawMessage `json:"items"`
			}
			if json.Unmarshal(body, &p) != nil {
				bad.Add(1)
			}
			received.Add(int64(len(p.Items)))
		}))
		defer srv.Close()
		cfg, _ := json.Marshal(ChannelConfig{URL: srv.URL, Secret: secretKey})
		sealed, err := box.Seal(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ch, err := st.CreateChannel(ctx, store.Channel{TeamID: 1, Name: fmt.Sprint("hook", i), Type: TypeWebhook, Config: sealed})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, ch.ID)
	}
	if _, err := st.CreateRule(ctx, store.Rule{TeamID: 1, Name: "all", Channels: ids}); err != nil {
		b.Fatal(err)
	}
	batch := make([]store.Event, 0, 1000)
	writeStart := time.Now()
	for i := range events {
		batch = append(batch, store.Event{TeamID: 1, Kind: "expired", Severity: "critical", Status: "CRITICAL", At: time.Now(),
			Notify: true, Message: fmt.Sprintf("host%d.example.com:443: certificate expired", i),
			Data: map[string]any{"target": fmt.Sprintf("host%d.example.com:443", i), "days_left": -1}})
		if len(batch) == cap(batch) {
			if err := st.AppendEvents(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	written := time.Since(writeStart)
	w := NewWorker(WorkerConfig{Owner: "bench", Workers: 16, GroupMax: groupMax, RatePerMinute: rate, Poll: 10 * time.Millisecond},
		st, &StoreDestinations{Store: st, Secrets: box, Options: SenderOptions{Timeout: 10 * time.Second}}, nil)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.StartTimer()
	start := time.Now()
	wg.Add(1)
	go func() { defer wg.Done(); w.Run(runCtx) }()
	for received.Load() < events*channels {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d items after 5 minutes", received.Load(), events*channels)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	b.StopTimer()
	stop()
	wg.Wait()
	if bad.Load() > 0 {
		b.Fatalf("%d requests failed verification", bad.Load())
	}
	msgs, items := w.Stats()
	b.ReportMetric(took.Seconds(), "s/10k-events")
	b.ReportMetric(float64(items)/took.Seconds(), "items/s")
	b.ReportMetric(float64(msgs), "messages")
	b.ReportMetric(written.Seconds(), "s-to-write-events+deliveries")
}
