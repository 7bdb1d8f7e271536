package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// benchMonitors is the fleet size the list endpoint must stay fast at.
const benchMonitors = 100_000

// BenchmarkListMonitorsPage lists the first page of OK monitors through
// the whole handler (auth, huma, store) on SQLite with 100,000 monitors,
// nine in ten of them OK. Requirement: median under 50 ms.
func BenchmarkListMonitorsPage(b *testing.B) {
	e := newEnv(b, filepath.Join(b.TempDir(), "t.db"))
	start := time.Now()
	seedChecked(b, e.store, benchMonitors)
	b.Logf("seeded %d checked monitors in %s", benchMonitors, time.Since(start).Round(time.Millisecond))

	h := e.srv.Handler()
	var took []time.Duration
	for b.Loop() {
		req := httptest.NewRequest("GET", "/api/v1/monitors?status=OK&limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		rec := httptest.NewRecorder()
		t := time.Now()
		h.ServeHTTP(rec, req)
		took = append(took, time.Since(t))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	slices.Sort(took)
	median := took[len(took)/2]
	b.ReportMetric(float64(median.Microseconds())/1000, "median-ms")
	if median > 50*time.Millisecond {
		b.Errorf("median %s, want < 50ms", median)
	}
}

// seedChecked creates n monitors and records a first check for each
// (OK, every tenth WARNING) through ClaimDue and RecordChecks in batches,
// as the scheduler would.
func seedChecked(b *testing.B, st *store.Store, n int) {
	b.Helper()
	ctx := context.Background()
	for i := range n {
		m := store.Monitor{
			TeamID: store.DefaultTeamID, Target: fmt.Sprintf("host%06d.example.com", i), Schedule: "4h",
			WarnDays: 30, CritDays: 7, Tags: []string{fmt.Sprintf("team%d", i%20)}, AgentPool: monitor.CloudPool,
		}
		if _, err := st.CreateMonitor(ctx, m, t0); err != nil {
			b.Fatal(err)
		}
	}
	sched, _ := monitor.ParseSchedule("4h")
	for done := 0; done < n; {
		claims, err := st.ClaimDue(ctx, "bench", []string{monitor.CloudPool}, t0, time.Hour, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(claims) == 0 {
			b.Fatalf("only %d of %d monitors were due", done, n)
		}
		recs := make([]store.CheckRecord, len(claims))
		for i, c := range claims {
			status := assess.OK
			if c.Monitor.ID%10 == 0 {
				status = assess.Warning
			}
			r := &assess.Result{Target: c.Monitor.Target, Status: status, Problems: []assess.Problem{},
				Chain: []assess.Certificate{}, Verification: assess.Verification{Revocation: assess.RevocationNotChecked}}
			recs[i] = monitor.Transition(c, monitor.Outcome{Result: r, At: t0}, sched, 0, monitor.AlertPolicy{})
		}
		if lost, err := st.RecordChecks(ctx, recs); err != nil || len(lost) > 0 {
			b.Fatalf("RecordChecks: lost %d, %v", len(lost), err)
		}
		done += len(claims)
	}
}
