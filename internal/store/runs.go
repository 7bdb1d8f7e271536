package store

import (
	"context"
	"fmt"
	"time"
)

// ClaimRun records that owner runs the scheduled job name for slot, and
// reports whether this call did: the (name, slot) key lets exactly one of
// the replicas sharing a database win, whichever inserts first, so a job
// such as the status report is sent once per slot however many servers
// run. The run is at most once: a winner that dies before finishing is
// not replaced.
func (s *Store) ClaimRun(ctx context.Context, name string, slot time.Time, owner string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO notifier_runs (name, slot, owner, started_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (name, slot) DO NOTHING`),
		name, ms(slot), owner, ms(s.now()))
	if err != nil {
		return false, fmt.Errorf("store: claim run %s at %s: %w", name, slot.UTC().Format(time.RFC3339), err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: claim run %s: %w", name, err)
	}
	return n == 1, nil
}
