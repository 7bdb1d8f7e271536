package server

import (
	"strconv"
	"strings"
	"time"
)

// parseWithin reads expiring_within: whole days ("30", "30d") or a Go
// duration ("72h"). Zero means "already expired"; the store's zero means
// "no filter", so it becomes the smallest positive window.
func parseWithin(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil {
		if n < 0 || n > 100*365 {
			return 0, invalid("expiring_within", "%q: want 0 to 36500 days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else if d, err = time.ParseDuration(s); err != nil || d < 0 {
		return 0, invalid("expiring_within", "%q: want days (30) or a Go duration (72h)", s)
	}
	if d == 0 {
		d = time.Nanosecond
	}
	return d, nil
}

// intCursor reads a numeric cursor; "" is the first page.
// nextIntCursor is the next_cursor of a page: null on the last one.
func nextIntCursor(next int64) *string {
	if next == 0 {
		return nil
	}
	c := strconv.FormatInt(next, 10)
	return &c
}

// mapSlice converts a page of store rows to API views; never null.
func mapSlice[T, V any](items []T, view func(T) V) []V {
	out := make([]V, 0, len(items))
	for _, it := range items {
		out = append(out, view(it))
	}
	return out
}

func intCursor(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, invalid("cursor", "not a cursor this API returned")
	}
	return n, nil
}
