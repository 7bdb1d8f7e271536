package monitor

import (
	"strings"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"4h", "30m", "0 6 * * 1-5", "*/15 * * * *", " 1h "} {
		if _, err := ParseSchedule(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	bad := map[string]string{
		"":              "empty",
		"5s":            "at least",
		"800h":          "at most",
		"61 * * * *":    "invalid cron",
		"every 4 hours": "5-field",
		"* * * *":       "5-field",
	}
	for in, want := range bad {
		if _, err := ParseSchedule(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestIntervalSlotsAreSpreadAndStable(t *testing.T) {
	s, _ := ParseSchedule("4h")
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	perSecond := map[int64]int{}
	for id := int64(1); id <= 10000; id++ {
		next := s.Next(now, id)
		if !next.After(now) || next.Sub(now) > 4*time.Hour {
			t.Fatalf("id %d: next %v not within one interval of %v", id, next, now)
		}
		perSecond[next.Unix()]++
		// The phase is the monitor's own: the slot after a slot is one
		// interval later.
		if again := s.Next(next, id); again.Sub(next) != 4*time.Hour {
			t.Fatalf("id %d: slots %v then %v", id, next, again)
		}
	}
	worst := 0
	for _, n := range perSecond {
		worst = max(worst, n)
	}
	// 10,000 over 14,400 seconds: a uniform spread puts a handful at most
	// in any one second.
	if worst > 8 {
		t.Errorf("%d monitors fire in the same second", worst)
	}
}

func TestNextAfterDowntimeRunsOnce(t *testing.T) {
	s, _ := ParseSchedule("1h")
	slot := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 7)
	// The server was down for a day: the next slot is the first one after
	// now, not the 24 missed ones.
	now := slot.Add(24*time.Hour + 10*time.Minute)
	next := s.Next(now, 7)
	if !next.After(now) || next.Sub(now) > time.Hour {
		t.Errorf("next %v after downtime ending %v", next, now)
	}
}

func TestCronSlots(t *testing.T) {
	s, _ := ParseSchedule("0 6 * * *")
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	next := s.Next(now, 42)
	day := time.Date(2026, 6, 16, 6, 0, 0, 0, time.UTC)
	if next.Before(day) || next.After(day.Add(time.Minute)) {
		t.Errorf("next %v, want within a minute after %v", next, day)
	}
}
