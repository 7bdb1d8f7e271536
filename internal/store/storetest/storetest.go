// Package storetest gives tests a database of their own on each engine: a
// SQLite file in a temporary directory, and a fresh PostgreSQL schema when
// CERTMON_TEST_POSTGRES holds a DSN, e.g.
//
//	CERTMON_TEST_POSTGRES='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// Without it the PostgreSQL case skips with a message, unless
// CERTMON_REQUIRE_POSTGRES=1 (CI) makes that a failure. It does not import
// package store, so store's own tests can use it.
package storetest

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Engines lists the engines a suite runs on.
var Engines = []string{"sqlite", "postgres"}

// DSN returns a new, empty database of engine ("sqlite" or "postgres")
// that lives until the test ends.
func DSN(tb testing.TB, engine string) string {
	tb.Helper()
	if engine == "sqlite" {
		return filepath.Join(tb.TempDir(), "data", "certmon.db")
	}
	base := os.Getenv("CERTMON_TEST_POSTGRES")
	if base == "" {
		if os.Getenv("CERTMON_REQUIRE_POSTGRES") == "1" {
			tb.Fatal("CERTMON_REQUIRE_POSTGRES=1 but CERTMON_TEST_POSTGRES is not set")
		}
		tb.Skip("CERTMON_TEST_POSTGRES not set: PostgreSQL tests skipped")
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		admin.Close()
		tb.Fatalf("create test schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			tb.Errorf("drop test schema: %v", err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
