package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Certificates are shared by fingerprint; a team sees those in its
// team_certificates rows (every certificate its monitors were served).
// Team 0 in a filter means every team.

// scanCertificate reads sha256, der, info, not_after, first_seen and fills
// DaysLeft for now.
func scanCertificate(r rowScanner, now time.Time) (Certificate, error) {
	var (
		c               Certificate
		info            string
		notAfter, first int64
	)
	if err := r.Scan(&c.SHA256, &c.DER, &info, &notAfter, &first); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(info), &c.Info); err != nil {
		return c, fmt.Errorf("certificate %s info: %w", c.SHA256, err)
	}
	c.NotAfter, c.FirstSeen = fromMS(notAfter), fromMS(first)
	c.Info.DaysLeft = daysLeft(c.NotAfter, now)
	return c, nil
}

// GetCertificate returns a certificate and where it was used.
func (s *Store) GetCertificate(ctx context.Context, teamID int64, sha256 string) (Certificate, []CertificateUse, error) {
	c, err := scanCertificate(s.rdb.QueryRowContext(ctx, s.rebind(`SELECT c.sha256, c.der, c.info, c.not_after, t.first_seen
		FROM certificates c JOIN team_certificates t ON t.sha256 = c.sha256
		WHERE c.sha256 = ? AND t.team_id = ?`), sha256, teamID), s.now())
	if errors.Is(err, sql.ErrNoRows) {
		return c, nil, fmt.Errorf("store: certificate %s: %w", sha256, ErrNotFound)
	}
	if err != nil {
		return c, nil, fmt.Errorf("store: certificate %s: %w", sha256, err)
	}
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT u.monitor_id, m.target, u.first_seen, u.last_seen
		FROM monitor_certificates u JOIN monitors m ON m.id = u.monitor_id
		WHERE u.sha256 = ? AND u.team_id = ?
		ORDER BY u.first_seen, u.monitor_id`), sha256, teamID)
	if err != nil {
		return c, nil, fmt.Errorf("store: uses of certificate %s: %w", sha256, err)
	}
	defer rows.Close()
	var uses []CertificateUse
	for rows.Next() {
		var (
			u     CertificateUse
			first int64
			last  sql.NullInt64
		)
		if err := rows.Scan(&u.MonitorID, &u.Target, &first, &last); err != nil {
			return c, nil, fmt.Errorf("store: uses of certificate %s: %w", sha256, err)
		}
		u.FirstSeen, u.LastSeen = fromMS(first), fromNullMS(last)
		uses = append(uses, u)
	}
	if err := rows.Err(); err != nil {
		return c, nil, fmt.Errorf("store: uses of certificate %s: %w", sha256, err)
	}
	return c, uses, nil
}

// ListCertificates returns one page ordered by SHA-256 and the next cursor.
func (s *Store) ListCertificates(ctx context.Context, f CertificateFilter) ([]Certificate, string, error) {
	now := f.Now
	if now.IsZero() {
		now = s.now()
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	q := `SELECT c.sha256, c.der, c.info, c.not_after, c.first_seen FROM certificates c`
	// Ordered by the key of the table driving the scan, so that it is
	// read in order instead of sorted.
	key := `c.sha256`
	if f.TeamID != 0 {
		q = `SELECT c.sha256, c.der, c.info, c.not_after, t.first_seen
			FROM certificates c JOIN team_certificates t ON t.sha256 = c.sha256`
		key = `t.sha256`
		add(`t.team_id = ?`, f.TeamID)
	}
	if f.After != "" {
		add(key+` > ?`, f.After)
	}
	if f.ExpiringWithin > 0 {
		add(`c.not_after <= ?`, ms(now.Add(f.ExpiringWithin)))
	}
	if f.Issuer != "" {
		add(`lower(c.issuer) LIKE lower(?) ESCAPE '\'`, containsPattern(f.Issuer))
	}
	if f.KeyType != "" {
		add(`c.key_type = ?`, f.KeyType)
	}
	if f.Status != "" {
		cond := `EXISTS (SELECT 1 FROM monitor_certificates u JOIN monitors m ON m.id = u.monitor_id
			WHERE u.sha256 = c.sha256 AND u.last_seen IS NULL AND m.status = ?`
		a := []any{string(f.Status)}
		if f.TeamID != 0 {
			cond += ` AND u.team_id = ?`
			a = append(a, f.TeamID)
		}
		add(cond+`)`, a...)
	}
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	limit := pageLimit(f.Limit)
	q += ` ORDER BY ` + key + ` LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.rdb.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list certificates: %w", err)
	}
	defer rows.Close()
	out := make([]Certificate, 0, limit)
	for rows.Next() {
		c, err := scanCertificate(rows, now)
		if err != nil {
			return nil, "", fmt.Errorf("store: list certificates: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: list certificates: %w", err)
	}
	var next string
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].SHA256
	}
	return out, next, nil
}
