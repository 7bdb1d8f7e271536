// Package monitor owns what happens to a monitor over time: its schedule,
// the state machine that turns a new check result into state, history and
// events, and the scheduler that claims due checks from the store and runs
// them on a bounded pool.
package monitor

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/adhocore/gronx"
)

// MinInterval is the shortest interval schedule accepted.
const MinInterval = 30 * time.Second

// Schedule says when a monitor is checked: every interval, or on a
// 5-field cron expression (UTC).
type Schedule struct {
	every time.Duration
	cron  string
}

// ParseSchedule reads "4h", "30m" (Go duration syntax) or a 5-field cron
// expression such as "0 6 * * 1-5".
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Schedule{}, errors.New("schedule is empty")
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < MinInterval {
			return Schedule{}, fmt.Errorf("schedule %q: interval must be at least %s", s, MinInterval)
		}
		if d > 31*24*time.Hour {
			return Schedule{}, fmt.Errorf("schedule %q: interval must be at most 31 days", s)
		}
		return Schedule{every: d}, nil
	}
	if len(strings.Fields(s)) != 5 {
		return Schedule{}, fmt.Errorf("schedule %q: want an interval such as 4h or a 5-field cron expression", s)
	}
	if !gronx.IsValid(s) {
		return Schedule{}, fmt.Errorf("schedule %q: invalid cron expression", s)
	}
	return Schedule{cron: s}, nil
}

// String returns the schedule as written.
func (s Schedule) String() string {
	if s.cron != "" {
		return s.cron
	}
	return s.every.String()
}

// Next returns the first slot strictly after t for monitor id.
//
// Interval slots are phase-shifted by a hash of the monitor ID, so 10,000
// monitors on the same interval spread evenly over it instead of firing in
// the same second, and a monitor keeps its phase across restarts. After
// downtime the next slot is simply the first one after now: missed slots
// are not replayed. Cron slots get a per-monitor offset within the first
// minute for the same reason.
func (s Schedule) Next(t time.Time, id int64) time.Time {
	phase := spread(id)
	if s.every > 0 {
		p := time.Duration(phase % uint64(s.every))
		base := t.Add(-p).Truncate(s.every).Add(p)
		for !base.After(t) {
			base = base.Add(s.every)
		}
		return base
	}
	offset := time.Duration(phase%60_000) * time.Millisecond
	next, err := gronx.NextTickAfter(s.cron, t.Add(-offset).UTC(), false)
	if err != nil {
		// Validated at parse time; an expression with no future tick
		// (Feb 30) falls back to daily so the monitor is not lost.
		return t.Add(24 * time.Hour)
	}
	next = next.Add(offset)
	if !next.After(t) {
		next = next.Add(time.Minute)
	}
	return next
}

func spread(id int64) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(id, 10)))
	return h.Sum64()
}
