package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/store/storetest"
)

// The suite runs every test on SQLite in t.TempDir() and, when
// CERTMON_TEST_POSTGRES holds a DSN, on PostgreSQL in a fresh schema:
//
//	CERTMON_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test ./internal/store/
//
// CERTMON_REQUIRE_POSTGRES=1 turns the skip into a failure (CI).

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// forEachEngine runs fn on a fresh, migrated store of each engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	for _, e := range []Engine{SQLite, Postgres} {
		t.Run(string(e), func(t *testing.T) {
			t.Parallel()
			fn(t, openTest(t, testDSN(t, e)))
		})
	}
}

// testDSN returns a database of engine e of its own: a file in a temporary
// directory, or a new PostgreSQL schema dropped at cleanup.
func testDSN(tb testing.TB, e Engine) string {
	tb.Helper()
	return storetest.DSN(tb, string(e))
}

func openTest(tb testing.TB, dsn string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), dsn, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// mustMonitor creates a monitor due at t0, changed by mut.
func mustMonitor(tb testing.TB, s *Store, mut func(m *Monitor)) Monitor {
	tb.Helper()
	m := Monitor{Target: "example.com", Schedule: "1h", WarnDays: 30, CritDays: 7}
	if mut != nil {
		mut(&m)
	}
	got, err := s.CreateMonitor(context.Background(), m, t0)
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// addTeam creates team id (teams belong to package auth later).
func addTeam(tb testing.TB, s *Store, id int64) {
	tb.Helper()
	if _, err := s.db.Exec(s.rebind(`INSERT INTO teams (id, name, created_at) VALUES (?, ?, 0)`), id, fmt.Sprint("team", id)); err != nil {
		tb.Fatal(err)
	}
}

// result is an assessment whose chain is one leaf.
func result(status assess.Status, leaf string, notAfter time.Time) *assess.Result {
	r := &assess.Result{Target: "example.com", Status: status, Problems: []assess.Problem{}}
	if leaf != "" {
		r.Chain = []assess.Certificate{{Subject: "CN=example.com", Issuer: "CN=Test CA", SHA256: leaf,
			NotAfter: notAfter.Format(time.RFC3339), KeyType: "ECDSA", KeyBits: 256}}
	}
	if status != assess.OK {
		r.Problems = []assess.Problem{{Code: assess.CodeExpiring, Severity: assess.SeverityWarning, Message: "soon"}}
	}
	return r
}

// cert is a stored certificate for leaf.
func cert(sha string, notAfter time.Time, issuer, keyType string) Certificate {
	return Certificate{SHA256: sha, DER: []byte("der-" + sha), NotAfter: notAfter, FirstSeen: t0,
		Info: assess.Certificate{Subject: "CN=" + sha, Issuer: issuer, SHA256: sha, KeyType: keyType,
			NotAfter: notAfter.Format(time.RFC3339)}}
}

// checked is the record of a check at "at" that found leaf with status.
func checked(c Claim, at time.Time, status assess.Status, leaf string, expires time.Time) CheckRecord {
	st := State{MonitorID: c.Monitor.ID, Result: result(status, leaf, expires), Status: status,
		LeafSHA256: leaf, LastCheckAt: at, NextCheckAt: at.Add(time.Hour)}
	if leaf != "" {
		st.LeafExpires = expires
	}
	return CheckRecord{Claim: c, State: st}
}

// claimAll claims everything due at now in pool "cloud".
func claimAll(tb testing.TB, s *Store, owner string, now time.Time) []Claim {
	tb.Helper()
	claims, err := s.ClaimDue(context.Background(), owner, []string{"cloud"}, now, time.Minute, 1000)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.LoadPrevious(context.Background(), claims); err != nil {
		tb.Fatal(err)
	}
	return claims
}

func record(tb testing.TB, s *Store, recs ...CheckRecord) []int {
	tb.Helper()
	lost, err := s.RecordChecks(context.Background(), recs)
	if err != nil {
		tb.Fatal(err)
	}
	return lost
}

func count(tb testing.TB, s *Store, table string) int {
	tb.Helper()
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func TestOpenMigratesOnce(t *testing.T) {
	for _, e := range []Engine{SQLite, Postgres} {
		t.Run(string(e), func(t *testing.T) {
			t.Parallel()
			dsn := testDSN(t, e)
			// Replicas starting together: the advisory lock (PostgreSQL)
			// or the write lock (SQLite) lets one migrate, the rest skip.
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i := range errs {
				wg.Go(func() {
					s, err := Open(context.Background(), dsn, nil)
					if err == nil {
						err = s.Close()
					}
					errs[i] = err
				})
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			s := openTest(t, dsn)
			if n := count(t, s, "schema_migrations"); n != len(schemaMigrations()) {
				t.Errorf("schema_migrations has %d rows, want %d", n, len(schemaMigrations()))
			}
			if n := count(t, s, "teams"); n != 1 {
				t.Errorf("%d teams, want the default one", n)
			}
			if s.Engine() != e {
				t.Errorf("engine %s", s.Engine())
			}
			if err := s.Ping(context.Background()); err != nil {
				t.Error(err)
			}
			// Teams made later do not collide with the default team's id.
			if _, err := s.db.Exec(`INSERT INTO teams (name, created_at) VALUES ('second', 0)`); err != nil {
				t.Errorf("insert team: %v", err)
			}
		})
	}
}

func TestOpenUnreachablePostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once.
	_, err := Open(ctx, "postgres://certmon:s3cret@127.0.0.1:1/certmon?sslmode=disable", nil)
	if err == nil {
		t.Fatal("Open succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"PostgreSQL", "127.0.0.1:1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("error %q shows the password", msg)
	}
}
