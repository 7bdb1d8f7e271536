package notify

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// This file decides when a user's email may go, from their settings:
// immediate or a daily digest, quiet hours, and a time zone. All
// wall-clock arithmetic is done in the user's zone with time.Date, so a
// day with a daylight saving change is 23 or 25 hours long as it should.

// Notification modes.
const (
	ModeImmediate = "immediate"
	ModeDigest    = "digest"
)

// DefaultDigestAt is when a digest goes when the user set no time.
const DefaultDigestAt = "08:00"

// ValidateSettings checks a user's settings; kinds are the event kinds a
// user may pick. Messages name the field as the API shows it.
func ValidateSettings(s store.NotifySettings, kinds []string) error {
	switch s.Mode {
	case "", ModeImmediate, ModeDigest:
	default:
		return fmt.Errorf("notifications.mode: %q is not %q or %q", s.Mode, ModeImmediate, ModeDigest)
	}
	if s.DigestAt != "" {
		if _, err := parseClock(s.DigestAt); err != nil {
			return fmt.Errorf("notifications.digest_at: %w", err)
		}
	}
	if (s.QuietStart == "") != (s.QuietEnd == "") {
		if s.QuietStart == "" {
			return fmt.Errorf("notifications.quiet_start: required when quiet_end is set")
		}
		return fmt.Errorf("notifications.quiet_end: required when quiet_start is set")
	}
	if s.QuietStart != "" {
		start, err := parseClock(s.QuietStart)
		if err != nil {
			return fmt.Errorf("notifications.quiet_start: %w", err)
		}
		end, err := parseClock(s.QuietEnd)
		if err != nil {
			return fmt.Errorf("notifications.quiet_end: %w", err)
		}
		if start == end {
			return fmt.Errorf("notifications.quiet_end: must differ from quiet_start")
		}
	}
	if s.TimeZone != "" {
		// "Local" would mean the server's zone, which the user cannot see.
		if s.TimeZone == "Local" {
			return fmt.Errorf("notifications.time_zone: %q is not an IANA time zone such as Europe/Berlin", s.TimeZone)
		}
		if _, err := loadZone(s.TimeZone); err != nil {
			return fmt.Errorf("notifications.time_zone: %q is not an IANA time zone such as Europe/Berlin", s.TimeZone)
		}
	}
	for _, k := range s.Events {
		if !slices.Contains(kinds, k) {
			return fmt.Errorf("notifications.events: unknown event kind %q (known: %s)", k, strings.Join(kinds, ", "))
		}
	}
	return nil
}

// Wants reports whether the user wants events of kind; no list is all.
func Wants(s store.NotifySettings, kind string) bool {
	return len(s.Events) == 0 || slices.Contains(s.Events, kind)
}

// SendAt is the earliest time at or after now an email to the user may
// go: now, or the end of quiet hours when now is inside them; for digest
// mode the next digest time (today's if still ahead, else tomorrow's),
// moved to the end of quiet hours when it falls inside them.
//
// Settings are expected to be valid; an unreadable field is ignored (a
// bad zone is UTC, a bad digest time the default) rather than holding
// email forever.
func SendAt(s store.NotifySettings, now time.Time) time.Time {
	loc := time.UTC
	if s.TimeZone != "" {
		if l, err := loadZone(s.TimeZone); err == nil {
			loc = l
		}
	}
	now = now.In(loc)
	q, hasQuiet := readQuiet(s)
	at := now
	if s.Mode == ModeDigest {
		digest, err := parseClock(s.DigestAt)
		if err != nil {
			digest, _ = parseClock(DefaultDigestAt)
		}
		at = nextClock(now, digest)
	}
	if hasQuiet {
		if end, ok := q.endAfter(at); ok {
			at = end
		}
	}
	return at
}

// zones caches loaded time zones: time.LoadLocation reads and parses the
// zone file on every call, and SendAt runs for every email.
var zones sync.Map // name -> *time.Location

func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

// clock is a time of day in minutes after midnight.
type clock int

// parseClock reads "HH:MM" (24-hour; "7:30" is accepted too).
func parseClock(s string) (clock, error) {
	bad := fmt.Errorf("%q is not a time of day HH:MM such as 07:30", s)
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) < 1 || len(h) > 2 || len(m) != 2 || !digits(h) || !digits(m) {
		return 0, bad
	}
	hh, _ := strconv.Atoi(h)
	mm, _ := strconv.Atoi(m)
	if hh > 23 || mm > 59 {
		return 0, bad
	}
	return clock(hh*60 + mm), nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// quiet is a daily quiet period [start, end); it wraps midnight when
// start > end.
type quiet struct{ start, end clock }

func readQuiet(s store.NotifySettings) (quiet, bool) {
	start, err1 := parseClock(s.QuietStart)
	end, err2 := parseClock(s.QuietEnd)
	if err1 != nil || err2 != nil || start == end {
		return quiet{}, false
	}
	return quiet{start, end}, true
}

// endAfter returns the end of the quiet period t is in, and false when t
// is outside quiet hours. t's wall clock decides (in t's location).
func (q quiet) endAfter(t time.Time) (time.Time, bool) {
	// Seconds count: 06:59:30 is still inside a period ending 07:00.
	sec := t.Hour()*3600 + t.Minute()*60 + t.Second()
	start, end := int(q.start)*60, int(q.end)*60
	y, m, d := t.Date()
	switch {
	case q.start < q.end && sec >= start && sec < end,
		q.start > q.end && sec < end:
		return firstFrom(wallTimes(y, m, d, q.end, t.Location()), t), true
	case q.start > q.end && sec >= start:
		// Before midnight: the period ends tomorrow.
		return firstFrom(wallTimes(y, m, d+1, q.end, t.Location()), t), true
	}
	return time.Time{}, false
}

// nextClock is the next time, at or after now, of the daily time c in
// now's location: today's if still ahead, else tomorrow's. A day whose
// clock passes c twice (falling back) has it once, at the first.
func nextClock(now time.Time, c clock) time.Time {
	y, m, d := now.Date()
	if t := wallTimes(y, m, d, c, now.Location())[0]; !t.Before(now) {
		return t
	}
	return wallTimes(y, m, d+1, c, now.Location())[0]
}

// firstFrom returns the first of times not before t, else the last.
func firstFrom(times []time.Time, t time.Time) time.Time {
	for _, u := range times {
		if !u.Before(t) {
			return u
		}
	}
	return times[len(times)-1]
}

// wallTimes returns, in order, the instants at which the wall clock in
// loc reads c on the given day: one on most days, two when the clock
// falls back over c, and when it springs forward over c, none: then the
// moment it jumps past c instead.
func wallTimes(y int, m time.Month, d int, c clock, loc *time.Location) []time.Time {
	h, mi := int(c)/60, int(c)%60
	t := time.Date(y, m, d, h, mi, 0, 0, loc)
	want := time.Date(y, m, d, h, mi, 0, 0, time.UTC) // the wall clock, as a comparable value
	if got := wallOf(t); !got.Equal(want) {
		// In a gap: time.Date normalized across the jump, so the jump
		// is the zone boundary on one side of t.
		start, end := t.ZoneBounds()
		if got.After(want) {
			return []time.Time{start}
		}
		return []time.Time{end}
	}
	// Zone offsets are multiples of 15 minutes and shifts at most a few
	// hours: look for the same wall clock that far either side.
	var found []time.Time
	for k := -12; k <= 12; k++ {
		if u := t.Add(time.Duration(k) * 15 * time.Minute); wallOf(u).Equal(want) {
			found = append(found, u)
		}
	}
	return found
}

// wallOf is t's wall clock in its location, as a UTC time.
func wallOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}
