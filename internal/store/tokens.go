package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Token is a hashed API token.
type Token struct {
	ID        int64
	TeamID    int64
	Name      string
	Role      string // "admin" for now
	CreatedAt time.Time
}

// CreateToken stores the SHA-256 of a secret token.
func (s *Store) CreateToken(ctx context.Context, teamID int64, name, role string, secretHash []byte) (Token, error) {
	if len(secretHash) == 0 {
		return Token{}, errors.New("store: token without hash")
	}
	t := Token{TeamID: teamID, Name: name, Role: role, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	err := s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO tokens (team_id, name, role, secret_hash, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`), teamID, name, role, secretHash, ms(t.CreatedAt)).Scan(&t.ID)
	if err != nil {
		return Token{}, fmt.Errorf("store: create token %q: %w", name, mapErr(err))
	}
	return t, nil
}

// TokenByHash finds a token by the SHA-256 of its secret; ErrNotFound if none.
func (s *Store) TokenByHash(ctx context.Context, secretHash []byte) (Token, error) {
	var (
		t       Token
		created int64
	)
	err := s.rdb.QueryRowContext(ctx, s.rebind(`SELECT id, team_id, name, role, created_at FROM tokens WHERE secret_hash = ?`),
		secretHash).Scan(&t.ID, &t.TeamID, &t.Name, &t.Role, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("store: token: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("store: token: %w", err)
	}
	t.CreatedAt = fromMS(created)
	return t, nil
}

// CountTokens tells whether a first admin token must be made.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count tokens: %w", err)
	}
	return n, nil
}
