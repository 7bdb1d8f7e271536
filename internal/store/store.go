// Package store keeps monitors, their state, certificates, history, events
// and tokens in SQL: one concrete Store over database/sql, the same queries
// on SQLite (embedded default) and PostgreSQL (scale-out); only the DDL and
// a few clauses differ per engine.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx"
	_ "modernc.org/sqlite"             // registers driver "sqlite"
)

// Engine names the SQL dialect in use.
type Engine string

const (
	SQLite   Engine = "sqlite"
	Postgres Engine = "postgres"
)

// Store is the one store implementation.
type Store struct {
	db     *sql.DB
	engine Engine
	log    *slog.Logger
	// rdb serves reads. On SQLite it is a separate pool (WAL lets readers
	// run beside the one writer); on PostgreSQL it is db.
	rdb *sql.DB
	// now stamps created_at and friends; replaced in tests.
	now func() time.Time
}

// Open connects to url: "postgres://..." / "postgresql://..." for
// PostgreSQL, otherwise a SQLite file path (created with its directory).
// Migrations are applied before it returns.
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		s   *Store
		err error
	)
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		s, err = openPostgres(ctx, url)
	} else {
		s, err = openSQLite(ctx, url)
	}
	if err != nil {
		return nil, err
	}
	s.log, s.now = log, time.Now
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: migrate %s database: %w", s.engine, err)
	}
	switch {
	case s.engine == SQLite && url == ":memory:":
		// Each connection would see its own empty database.
		s.rdb = s.db
	case s.engine == SQLite:
		// The reader pool opens after migrations so it never races the
		// writer's switch to WAL.
		if s.rdb, err = openSQLiteReader(ctx, url); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	where := "PostgreSQL"
	if u, err := url.Parse(dsn); err == nil {
		// Host and database only: the DSN may carry a password.
		where = "PostgreSQL at " + u.Host + u.Path
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", where, err)
	}
	// Bounded so many replicas do not exhaust max_connections; idle
	// connections are kept because the scheduler writes all the time.
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: cannot reach %s: %w", where, err)
	}
	return &Store{db: db, rdb: db, engine: Postgres}, nil
}

// sqliteParams are set on every connection. busy_timeout covers another
// process (or the reader pool's checkpoints) holding the lock briefly.
const sqliteParams = "_busy_timeout=10000&_foreign_keys=1"

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("store: SQLite path %q must not contain '?'", path)
	}
	if dir := filepath.Dir(path); path != ":memory:" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("store: create SQLite directory: %w", err)
		}
	}
	// One writer connection serializes writes in this process, so they
	// queue in database/sql instead of failing with SQLITE_BUSY; BEGIN
	// IMMEDIATE takes the write lock up front for the same reason.
	dsn := path + "?" + sqliteParams + "&_synchronous=NORMAL&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	if err := useWAL(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open SQLite %s: %w", path, err)
	}
	return &Store{db: db, engine: SQLite}, nil
}

// useWAL switches the file to WAL, which then sticks to the file. The
// switch needs the file to itself and does not wait for a busy timeout, so
// it is retried while another process opens the same file.
func useWAL(ctx context.Context, db *sql.DB) error {
	for attempt := 0; ; attempt++ {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("journal mode is %q, not WAL", mode)
			}
			return nil
		}
		if !isBusy(err) || attempt == 100 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func openSQLiteReader(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path+"?"+sqliteParams+"&_query_only=1")
	if err != nil {
		return nil, fmt.Errorf("store: open SQLite %s for reading: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open SQLite %s for reading: %w", path, err)
	}
	return db, nil
}

// Engine reports the dialect.
func (s *Store) Engine() Engine { return s.engine }

// Close closes the database.
func (s *Store) Close() error {
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	if s.rdb != nil && s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	return err
}

// Ping checks the database answers (/readyz).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping %s: %w", s.engine, err)
	}
	if s.rdb != s.db {
		if err := s.rdb.PingContext(ctx); err != nil {
			return fmt.Errorf("store: ping %s readers: %w", s.engine, err)
		}
	}
	return nil
}
