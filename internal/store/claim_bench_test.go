package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkClaimOverhead measures the scheduler's cost to find and claim
// due work: 1,000,000 monitors on PostgreSQL (100,000 on SQLite) become due
// at 3,000 per second; each iteration claims the next batch of 200, as the
// scheduler does. Recording the results is not part of the claim cost, so
// claimed rows are moved to their next slot with the timer stopped.
//
// The reported core-% is the share of one core spent claiming at 3,000 due
// checks per second: 15 claims per second times the wall time of one
// claim, which bounds the CPU of client and database together (the client
// waits while the database works).
//
//	CERTMON_TEST_POSTGRES=... go test ./internal/store -run '^$' -bench ClaimOverhead -benchtime 300x
func BenchmarkClaimOverhead(b *testing.B) {
	const rate, batch = 3000, 200
	sizes := map[Engine]int{SQLite: 100_000, Postgres: 1_000_000}
	for _, e := range []Engine{SQLite, Postgres} {
		b.Run(fmt.Sprintf("%s-%d", e, sizes[e]), func(b *testing.B) {
			s := openTest(b, testDSN(b, e))
			ctx := context.Background()
			n := sizes[e]
			step := time.Second / rate
			for done := 0; done < n; done += 100_000 {
				offset := done
				seedMonitors(b, s, 100_000, func(i int, m *MonitorWithState) {
					m.State.NextCheckAt = t0.Add(time.Duration(offset+i) * step)
				})
			}
			if e == Postgres {
				if _, err := s.db.Exec(`ANALYZE`); err != nil {
					b.Fatal(err)
				}
			}
			now := t0
			var claimTime, loadTime time.Duration
			b.ResetTimer()
			for range b.N {
				now = now.Add(batch * step)
				start := time.Now()
				claims, err := s.ClaimDue(ctx, "bench", []string{"cloud"}, now, time.Minute, batch)
				claimTime += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if len(claims) < batch-1 {
					b.Fatalf("claimed %d, want %d", len(claims), batch)
				}
				start = time.Now()
				if err := s.LoadPrevious(ctx, claims); err != nil {
					b.Fatal(err)
				}
				loadTime += time.Since(start)
				b.StopTimer()
				ids := make([]any, len(claims))
				for i, c := range claims {
					ids[i] = c.Monitor.ID
				}
				q := `UPDATE monitors SET lease_owner = NULL, lease_until = NULL, next_check_at = next_check_at + 86400000
					WHERE id IN (` + placeholders(len(ids)) + `)`
				if _, err := s.db.ExecContext(ctx, s.rebind(q), ids...); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			perClaim := claimTime / time.Duration(b.N)
			b.ReportMetric(float64(perClaim.Microseconds())/1000, "ms/claim")
			b.ReportMetric(float64(rate)/batch*perClaim.Seconds()*100, "core-%@3000/s")
			// Loading the previous results is the state machine's input,
			// not part of finding work; reported apart for the record.
			b.ReportMetric(float64((loadTime/time.Duration(b.N)).Microseconds())/1000, "ms/load-previous")
		})
	}
}
