package store

import (
	"testing"
	"time"
)

func TestZZPlan(t *testing.T) {
	s := openTest(t, testDSN(t, SQLite))
	seedMonitors(t, s, 10000, func(i int, m *MonitorWithState) {
		if i >= 100 {
			m.State.NextCheckAt = t0.AddDate(10, 0, 0)
		}
	})
	explain := func(q string, args ...any) {
		rows, err := s.db.Query("EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, parent, notused int
			var detail string
			rows.Scan(&id, &parent, &notused, &detail)
			t.Logf("%d %d %s", id, parent, detail)
		}
		t.Log("----")
	}
	q := `WITH due AS (
		SELECT id FROM monitors
		WHERE NOT paused AND agent_pool IN (?)
			AND next_check_at <= ? AND (lease_owner IS NULL OR lease_until < ?)
		ORDER BY next_check_at LIMIT ?)
	UPDATE monitors SET lease_owner = ?, lease_until = ?
	WHERE id IN (SELECT id FROM due)
	RETURNING ` + monitorCols
	explain(q, "cloud", ms(t0), ms(t0), 100, "x", ms(t0))
	types := []string{"BIGINT", "TEXT", "BIGINT", "TEXT", "TEXT", "TEXT", "BIGINT", "BIGINT", "BIGINT", "INTEGER"}
	q2 := `WITH v (mid, owner, slot, status, result, leaf_sha256, leaf_expires, last_check_at, next_check_at, failures)
			AS (VALUES ` + valuesRows(3, types) + `)
		UPDATE monitors SET status = v.status, result = v.result, leaf_sha256 = v.leaf_sha256,
			leaf_expires = v.leaf_expires, last_check_at = v.last_check_at, next_check_at = v.next_check_at,
			failures = v.failures, lease_owner = NULL, lease_until = NULL
		FROM v
		WHERE monitors.id = v.mid AND monitors.lease_owner = v.owner AND monitors.next_check_at = v.slot
		RETURNING id`
	args := make([]any, 30)
	explain(q2, args...)
	start := time.Now()
	for i := 0; i < 20; i++ {
		s.ClaimDue(t.Context(), "b", []string{"cloud"}, t0.Add(time.Duration(i)*time.Hour), time.Minute, 100)
	}
	t.Log("claim", time.Since(start)/20)
}
