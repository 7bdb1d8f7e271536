package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// This file holds what differs between the engines outside the DDL:
// placeholders, the row-locking clause and error codes, plus the encodings
// shared by every query (times as unix milliseconds, JSON in TEXT).

// querier is what *sql.DB and *sql.Tx have in common, so a helper runs
// inside or outside a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// rebind turns the ? placeholders of a query written once into $1..$n for
// PostgreSQL. A ? inside a string literal is left alone.
func (s *Store) rebind(q string) string {
	if s.engine != Postgres {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + len(q)/8)
	n, inString := 0, false
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'':
			inString = !inString
		case c == '?' && !inString:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// skipLocked is the row-locking clause of a claim query. SQLite has one
// writer, so there is nothing to skip.
func (s *Store) skipLocked() string {
	if s.engine == Postgres {
		return " FOR UPDATE SKIP LOCKED"
	}
	return ""
}

// placeholders returns "?, ?, ?" for n values.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// valuesRows returns n rows of a VALUES list. The first row casts its
// placeholders to types so PostgreSQL knows the columns' types in a CTE.
func valuesRows(n int, types []string) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j, t := range types {
			if j > 0 {
				b.WriteString(", ")
			}
			if i == 0 {
				b.WriteString("CAST(? AS " + t + ")")
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
	}
	return b.String()
}

// maxParams keeps a statement under both engines' bound-parameter limits
// (PostgreSQL 65535, SQLite 32766).
const maxParams = 30000

// chunkRows is how many rows of cols parameters fit one statement.
func chunkRows(cols int) int {
	n := maxParams / cols
	if n > 1000 {
		n = 1000
	}
	return n
}

// insertRows runs "prefix VALUES (...), (...) suffix" for rows, in as few
// statements as the parameter limits allow.
func (s *Store) insertRows(ctx context.Context, q querier, prefix, suffix string, cols int, rows [][]any) error {
	per := chunkRows(cols)
	row := "(" + placeholders(cols) + ")"
	for len(rows) > 0 {
		n := min(per, len(rows))
		var b strings.Builder
		b.WriteString(prefix)
		b.WriteString(" VALUES ")
		args := make([]any, 0, n*cols)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
			args = append(args, r...)
		}
		b.WriteString(suffix)
		if _, err := q.ExecContext(ctx, s.rebind(b.String()), args...); err != nil {
			return mapErr(err)
		}
		rows = rows[n:]
	}
	return nil
}

// mapErr turns constraint violations into the package's sentinel errors,
// keeping the driver's error in the chain.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case "23503": // foreign_key_violation: what it points to is missing
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return err
	}
	var lite *sqlite.Error
	if errors.As(err, &lite) {
		switch lite.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	return err
}

// isBusy tells a SQLite "database is locked" error.
func isBusy(err error) bool {
	var lite *sqlite.Error
	return errors.As(err, &lite) && lite.Code()&0xff == sqlite3.SQLITE_BUSY
}

// Times are BIGINT unix milliseconds UTC on both engines: the same code
// compares and orders them, and no driver converts time zones.

func ms(t time.Time) int64 { return t.UnixMilli() }

// msOrNull stores a zero time as NULL ("never").
func msOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// containsPattern is a LIKE pattern matching s as a substring, its
// wildcards escaped with a backslash (queries say ESCAPE '\').
func containsPattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// daysLeft is whole days until notAfter, negative once expired.
func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

// pageLimit applies the default and maximum page sizes.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// queryAll runs a query on the read pool and scans every row; what names
// the operation in errors.
func queryAll[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

// queryOne reads one row on the read pool; no row is ErrNotFound.
func queryOne[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), q string, args ...any) (T, error) {
	v, err := scan(s.rdb.QueryRowContext(ctx, s.rebind(q), args...))
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("store: %s: %w", what, err)
	}
	return v, nil
}

// queryPage runs a query ending in "LIMIT ?" with limit+1 appended to
// args: the extra row says there is a next page, whose cursor is the ID
// of the last row returned (0 at the end).
func queryPage[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), id func(T) int64, limit int, q string, args ...any) ([]T, int64, error) {
	out, err := queryAll(ctx, s, what, scan, q, append(args, limit+1)...)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(out) > limit {
		out = out[:limit]
		next = id(out[limit-1])
	}
	return out, next, nil
}
