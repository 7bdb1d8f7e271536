package server

import (
	"context"
	"fmt"
	"time"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// maxSnooze bounds a snooze: a longer silence is better expressed by
// pausing or deleting the monitor.
const maxSnooze = 366 * 24 * time.Hour

// SnoozeFields is what POST /snooze takes.
type SnoozeFields struct {
	Until time.Time `json:"until" doc:"RFC 3339 date-time in the future, at most a year ahead; alerts are silenced until then" example:"2026-07-01T08:00:00Z"`
}

type snoozeInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body SnoozeFields
}

// snoozeMonitor silences alerts until a time; an acknowledgement stays.
func (s *Server) snoozeMonitor(ctx context.Context, in *snoozeInput) (*monitorBody, error) {
	now := s.now()
	until := in.Body.Until.UTC()
	switch {
	case !until.After(now):
		return nil, invalid("until", "must be in the future")
	case until.Sub(now) > maxSnooze:
		return nil, invalid("until", "must be at most a year ahead")
	}
	m, err := s.loadMonitor(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	// An acknowledgement still in force stays; one the certificate
	// already ended is dropped rather than carried along.
	ack := ""
	if acknowledged(m) {
		ack = m.AckedSHA256
	}
	return s.silence(ctx, m, until, ack)
}

// acknowledgeMonitor silences alerts until the certificate changes; a
// snooze stays.
func (s *Server) acknowledgeMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	m, err := s.loadMonitor(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	// A monitor serving no certificate (unreachable) is acknowledged
	// until one is served.
	return s.silence(ctx, m, s.activeSnooze(m.Monitor), monitor.AckKey(m.State.LeafSHA256))
}

// unsilenceMonitor clears both the snooze and the acknowledgement.
func (s *Server) unsilenceMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	m, err := s.loadMonitor(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return s.silence(ctx, m, time.Time{}, "")
}

func (s *Server) silence(ctx context.Context, m store.MonitorWithState, until time.Time, ack string) (*monitorBody, error) {
	if err := s.store.Silence(ctx, m.TeamID, m.ID, until, ack); err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", m.ID))
	}
	return s.getMonitor(ctx, &monitorID{ID: m.ID})
}

// activeSnooze is the monitor's snooze if it has not ended (zero
// otherwise), so an expired one is not carried along.
func (s *Server) activeSnooze(m store.Monitor) time.Time {
	if m.SnoozedUntil.After(s.now()) {
		return m.SnoozedUntil
	}
	return time.Time{}
}

// acknowledged tells whether alerts are silenced until the certificate
// changes: the acknowledgement is for the leaf served now (the state
// machine's own test, monitor.AckKey).
func acknowledged(mw store.MonitorWithState) bool {
	return mw.AckedSHA256 != "" && mw.AckedSHA256 == monitor.AckKey(mw.State.LeafSHA256)
}
