package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

const userCols = `id, team_id, email, name, settings, created_at, updated_at`

func scanUser(r rowScanner) (User, error) {
	var (
		u                User
		settings         string
		created, updated int64
	)
	if err := r.Scan(&u.ID, &u.TeamID, &u.Email, &u.Name, &settings, &created, &updated); err != nil {
		return User{}, err
	}
	if err := json.Unmarshal([]byte(settings), &u.Settings); err != nil {
		return User{}, fmt.Errorf("user %d settings: %w", u.ID, err)
	}
	u.CreatedAt, u.UpdatedAt = fromMS(created), fromMS(updated)
	return u, nil
}

// CreateUser stores u (TeamID and Email set); an address already used in
// the team is ErrConflict. The address is stored as given: callers
// normalise it.
func (s *Store) CreateUser(ctx context.Context, u User) (User, error) {
	if u.TeamID == 0 || u.Email == "" {
		return User{}, errors.New("store: user without team or email")
	}
	settings, err := json.Marshal(u.Settings)
	if err != nil {
		return User{}, fmt.Errorf("store: create user: %w", err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	got, err := scanUser(s.db.QueryRowContext(ctx, s.rebind(`INSERT INTO users (team_id, email, name, settings, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?) RETURNING `+userCols), u.TeamID, u.Email, u.Name, string(settings), ms(now), ms(now)))
	if err != nil {
		return User{}, fmt.Errorf("store: create user: %w", mapErr(err))
	}
	return got, nil
}

// GetUser returns one user of a team; ErrNotFound if none.
func (s *Store) GetUser(ctx context.Context, teamID, id int64) (User, error) {
	return queryOne(ctx, s, fmt.Sprintf("user %d", id), scanUser, `SELECT `+userCols+` FROM users WHERE id = ? AND team_id = ?`, id, teamID)
}

// ListUsers returns a team's users by address (at most 1000).
func (s *Store) ListUsers(ctx context.Context, teamID int64) ([]User, error) {
	return queryAll(ctx, s, "list users", scanUser, `SELECT `+userCols+` FROM users WHERE team_id = ? ORDER BY email, id LIMIT ?`, teamID, listCap)
}

// UpdateUser replaces the address, name and settings of user u.ID of team
// u.TeamID and returns it; ErrNotFound if absent, ErrConflict if the
// address is taken.
func (s *Store) UpdateUser(ctx context.Context, u User) (User, error) {
	settings, err := json.Marshal(u.Settings)
	if err != nil {
		return User{}, fmt.Errorf("store: update user %d: %w", u.ID, err)
	}
	got, err := scanUser(s.db.QueryRowContext(ctx, s.rebind(`UPDATE users SET email = ?, name = ?, settings = ?, updated_at = ?
		WHERE id = ? AND team_id = ? RETURNING `+userCols), u.Email, u.Name, string(settings), ms(s.now()), u.ID, u.TeamID))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("store: user %d: %w", u.ID, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("store: update user %d: %w", u.ID, mapErr(err))
	}
	return got, nil
}

// DeleteUser removes a user. Monitors that list the address as a
// recipient keep it: recipients are addresses, not users.
func (s *Store) DeleteUser(ctx context.Context, teamID, id int64) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM users WHERE id = ? AND team_id = ?`), id, teamID)
	return oneRow(res, err, fmt.Sprintf("delete user %d", id))
}
