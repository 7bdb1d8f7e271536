package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestClaimRun(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		slot := t0.Add(8 * time.Hour)
		for _, c := range []struct {
			name  string
			slot  time.Time
			owner string
			want  bool
		}{
			{"status_report", slot, "r1", true},
			{"status_report", slot, "r1", false}, // the winner again: already run
			{"status_report", slot, "r2", false},
			// Sub-millisecond differences are the same stored slot.
			{"status_report", slot.Add(time.Microsecond), "r2", false},
			{"status_report", slot.Add(24 * time.Hour), "r2", true},
			{"digest", slot, "r2", true},
		} {
			got, err := s.ClaimRun(ctx, c.name, c.slot, c.owner)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("ClaimRun(%s, %s, %s) = %v, want %v", c.name, c.slot, c.owner, got, c.want)
			}
		}
		var owner string
		if err := s.db.QueryRow(s.rebind(`SELECT owner FROM notifier_runs WHERE name = ? AND slot = ?`),
			"status_report", ms(slot)).Scan(&owner); err != nil {
			t.Fatal(err)
		}
		if owner != "r1" {
			t.Errorf("owner %q, want the first claimer r1", owner)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.ClaimRun(cancelled, "status_report", slot.Add(time.Hour), "r1"); err == nil {
			t.Error("cancelled context: no error")
		}
	})
}

// TestClaimRunConcurrent races replicas (separate Stores on one database,
// as separate servers would be) for the same slots: each slot has exactly
// one winner.
func TestClaimRunConcurrent(t *testing.T) {
	for _, e := range []Engine{SQLite, Postgres} {
		t.Run(string(e), func(t *testing.T) {
			t.Parallel()
			dsn := testDSN(t, e)
			const replicas, slots = 4, 5
			stores := make([]*Store, replicas)
			for i := range stores {
				stores[i] = openTest(t, dsn)
			}
			var (
				wg   sync.WaitGroup
				wins [slots]atomic.Int32
			)
			for r, st := range stores {
				// Several goroutines per replica: within one server too.
				for g := range 3 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range slots {
							ok, err := st.ClaimRun(context.Background(), "status_report",
								t0.Add(time.Duration(i)*time.Hour), fmt.Sprintf("r%d-%d", r, g))
							if err != nil {
								t.Error(err)
								return
							}
							if ok {
								wins[i].Add(1)
							}
						}
					}()
				}
			}
			wg.Wait()
			for i := range wins {
				if n := wins[i].Load(); n != 1 {
					t.Errorf("slot %d: %d winners, want exactly 1", i, n)
				}
			}
			if n := count(t, stores[0], "notifier_runs"); n != slots {
				t.Errorf("%d rows, want %d", n, slots)
			}
		})
	}
}
