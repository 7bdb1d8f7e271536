package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// Benchmarks, both engines (PostgreSQL when CERTMON_TEST_POSTGRES is set):
//
//	go test ./internal/store/ -run '^$' -bench RecordChecks -benchtime 200x
//	go test ./internal/store/ -run '^$' -bench ListMonitorsByStatus

func benchEngines(b *testing.B, fn func(b *testing.B, s *Store)) {
	for _, e := range []Engine{SQLite, Postgres} {
		b.Run(string(e), func(b *testing.B) {
			fn(b, openTest(b, testDSN(b, e)))
		})
	}
}

// sampleResult is a realistic stored assessment: a three-certificate chain.
func sampleResult(leaf string, notAfter time.Time) *assess.Result {
	chain := make([]assess.Certificate, 3)
	for i := range chain {
		chain[i] = assess.Certificate{
			Subject: fmt.Sprintf("CN=level%d.example.com,O=Example Corp,C=US", i), Issuer: "CN=Example Issuing CA G2,O=Example Corp,C=US",
			Serial: "04:5a:7e:1c:33:90:aa:bd:0f:12:9c:44:70:21:8e:5b", NotBefore: notAfter.AddDate(0, -3, 0).Format(time.RFC3339),
			NotAfter: notAfter.Format(time.RFC3339), DaysLeft: 60, SHA256: fmt.Sprintf("%064x", i), KeyType: "ECDSA", KeyBits: 256,
			SignatureAlgorithm: "ECDSA-SHA384", SANs: []string{"example.com", "www.example.com", "api.example.com"}, IsCA: i > 0,
		}
	}
	chain[0].SHA256 = leaf
	return &assess.Result{Target: "https://www.example.com", Protocol: "https", Address: "203.0.113.10:443", SNI: "www.example.com",
		Status: assess.OK, Problems: []assess.Problem{}, TLS: &assess.TLSInfo{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", HandshakeMS: 42},
		Chain: chain, Verification: assess.Verification{Trusted: true, HostnameMatch: true, ChainComplete: true, Revocation: assess.RevocationGood}}
}

// seedMonitors bulk-inserts n monitors in one transaction, checked with an
// OK result, due at t0; mut may change each one (state included).
func seedMonitors(tb testing.TB, s *Store, n int, mut func(i int, m *MonitorWithState)) []int64 {
	tb.Helper()
	ctx := context.Background()
	expires := t0.AddDate(0, 2, 0)
	encoded, err := json.Marshal(sampleResult(fmt.Sprintf("%064x", 0xaa), expires))
	if err != nil {
		tb.Fatal(err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	var first int64
	if err := tx.QueryRow(`SELECT COALESCE(MAX(id), 0) FROM monitors`).Scan(&first); err != nil {
		tb.Fatal(err)
	}
	var rows, tagRows, resultRows [][]any
	ids := make([]int64, n)
	for i := range n {
		m := MonitorWithState{Monitor: Monitor{ID: first + int64(i) + 1, TeamID: DefaultTeamID,
			Target: fmt.Sprintf("host%06d.example.com", i), Schedule: "1h", AgentPool: "cloud", Tags: []string{"prod"}},
			State: State{Status: assess.OK, LeafSHA256: fmt.Sprintf("%064x", 0xaa), LeafExpires: expires,
				LastCheckAt: t0.Add(-time.Hour), NextCheckAt: t0}}
		if mut != nil {
			mut(i, &m)
		}
		ids[i] = m.ID
		args, err := editable(m.Monitor)
		if err != nil {
			tb.Fatal(err)
		}
		if m.State.Status != "" {
			resultRows = append(resultRows, []any{m.ID, string(encoded)})
		}
		args = append(args, m.ID, m.TeamID, m.Paused, ms(t0), ms(t0), string(m.State.Status), m.State.LeafSHA256,
			msOrNull(m.State.LeafExpires), msOrNull(m.State.LastCheckAt), ms(m.State.NextCheckAt))
		rows = append(rows, args)
		for _, tag := range m.Tags {
			tagRows = append(tagRows, []any{m.ID, tag})
		}
	}
	cols := monitorEditCols + `, id, team_id, paused, created_at, updated_at, status, leaf_sha256, leaf_expires, last_check_at, next_check_at`
	if err := s.insertRows(ctx, tx, `INSERT INTO monitors (`+cols+`)`, "", len(rows[0]), rows); err != nil {
		tb.Fatal(err)
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO monitor_tags (monitor_id, tag)`, "", 2, tagRows); err != nil {
		tb.Fatal(err)
	}
	if err := s.insertRows(ctx, tx, `INSERT INTO monitor_results (monitor_id, result)`, "", 2, resultRows); err != nil {
		tb.Fatal(err)
	}
	if s.engine == Postgres {
		// Explicit ids did not advance the identity sequence.
		if _, err := tx.Exec(`SELECT setval(pg_get_serial_sequence('monitors', 'id'), (SELECT MAX(id) FROM monitors))`); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	if s.engine == Postgres {
		// What autovacuum would soon do. SQLite runs without statistics,
		// as a real installation does.
		if _, err := s.db.Exec(`ANALYZE`); err != nil {
			tb.Fatal(err)
		}
	}
	return ids
}

// benchRecordChecks claims and records batches of 100 checks among 10,000
// monitors; checks/s counts RecordChecks time only, cycle-checks/s the
// claim too.
func benchRecordChecks(b *testing.B, changed bool) {
	benchEngines(b, func(b *testing.B, s *Store) {
		const batch, total = 100, 10000
		// 100 monitors are due; the rest, due in ten years, size the table.
		seedMonitors(b, s, total, func(i int, m *MonitorWithState) {
			if i >= batch {
				m.State.NextCheckAt = t0.AddDate(10, 0, 0)
			}
		})
		ctx := context.Background()
		expires := t0.AddDate(0, 2, 0)
		sameLeaf := fmt.Sprintf("%064x", 0xaa)
		der := make([]byte, 1400)
		inter := cert(fmt.Sprintf("%064x", 0xca), t0.AddDate(5, 0, 0), "CN=Example Root", "RSA")
		var (
			recordTime time.Duration
			cycles     int
		)
		now := t0
		start := time.Now()
		for b.Loop() {
			claims, err := s.ClaimDue(ctx, "bench", []string{"cloud"}, now, time.Minute, batch)
			if err != nil || len(claims) != batch {
				b.Fatalf("claimed %d: %v", len(claims), err)
			}
			recs := make([]CheckRecord, len(claims))
			for i, c := range claims {
				leaf := sameLeaf
				if changed {
					leaf = fmt.Sprintf("%032x%032x", cycles, c.Monitor.ID)
				}
				r := CheckRecord{Claim: c, State: State{MonitorID: c.Monitor.ID, Result: sampleResult(leaf, expires),
					Status: assess.OK, LeafSHA256: leaf, LeafExpires: expires, LastCheckAt: now, NextCheckAt: now.Add(time.Hour)}}
				if changed {
					leafCert := cert(leaf, expires, "CN=Example Issuing CA G2", "ECDSA")
					leafCert.DER = der
					r.Certificates = []Certificate{leafCert, inter}
					r.History = &HistoryEntry{At: now, Status: assess.OK, LeafSHA256: leaf, Change: []string{"certificate"}}
					r.Events = []Event{{Kind: "certificate_changed", Status: assess.OK, Message: "renewed",
						Data: map[string]any{"old_sha256": c.State.LeafSHA256, "new_sha256": leaf}}}
				}
				recs[i] = r
			}
			t := time.Now()
			lost, err := s.RecordChecks(ctx, recs)
			recordTime += time.Since(t)
			if err != nil || len(lost) != 0 {
				b.Fatalf("lost %v: %v", lost, err)
			}
			now = now.Add(time.Hour)
			cycles++
		}
		elapsed := time.Since(start)
		b.ReportMetric(float64(cycles*batch)/recordTime.Seconds(), "checks/s")
		b.ReportMetric(float64(cycles*batch)/elapsed.Seconds(), "cycle-checks/s")
	})
}

func BenchmarkRecordChecksUnchanged(b *testing.B) { benchRecordChecks(b, false) }

func BenchmarkRecordChecksChanged(b *testing.B) { benchRecordChecks(b, true) }

// BenchmarkListMonitorsByStatus pages through 100,000 monitors 100 at a
// time with filters; median-ms is the median page latency.
func BenchmarkListMonitorsByStatus(b *testing.B) {
	benchEngines(b, func(b *testing.B, s *Store) {
		const n = 100000
		t := time.Now()
		seedMonitors(b, s, n, func(i int, m *MonitorWithState) {
			switch {
			case i%20 == 0:
				m.State.Status = assess.Critical
			case i%10 == 1:
				m.State.Status = assess.Warning
			case i%50 == 2:
				m.State.Status = ""
			}
			m.Tags = []string{fmt.Sprintf("team-%02d", i%50)}
			if i%2 == 0 {
				m.Tags = append(m.Tags, "prod")
			}
			m.State.LeafExpires = t0.Add(time.Duration(i%365) * 24 * time.Hour)
		})
		b.Logf("%s: seeded %d monitors in %v", s.engine, n, time.Since(t).Round(time.Millisecond))
		for _, tc := range []struct {
			name string
			f    ListFilter
		}{
			{"status=WARNING", ListFilter{TeamID: DefaultTeamID, Status: assess.Warning}},
			{"status=CRITICAL", ListFilter{TeamID: DefaultTeamID, Status: assess.Critical}},
			{"status+tag", ListFilter{TeamID: DefaultTeamID, Status: assess.Critical, Tag: "team-10"}},
			{"tag", ListFilter{TeamID: DefaultTeamID, Tag: "team-07"}},
			{"expiring30d", ListFilter{TeamID: DefaultTeamID, ExpiringWithin: 30 * 24 * time.Hour, Now: t0}},
			{"text", ListFilter{TeamID: DefaultTeamID, Text: "host0123"}},
		} {
			b.Run(tc.name, func(b *testing.B) {
				ctx := context.Background()
				f := tc.f
				f.Limit = 100
				var lat []time.Duration
				for b.Loop() {
					t := time.Now()
					page, next, err := s.ListMonitors(ctx, f)
					lat = append(lat, time.Since(t))
					if err != nil || len(page) == 0 {
						b.Fatalf("page of %d: %v", len(page), err)
					}
					f.After = next // wraps to the first page at the end
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2])/1e6, "median-ms")
			})
		}
	})
}
