package server

import (
	"context"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// Event is something people may be told about.
type Event struct {
	ID        int64          `json:"id"`
	MonitorID int64          `json:"monitor_id"`
	At        time.Time      `json:"at"`
	Kind      string         `json:"kind" doc:"first_check, status_changed, certificate_changed, ..."`
	Status    string         `json:"status"`
	Severity  string         `json:"severity"`
	Message   string         `json:"message"`
	Data      map[string]any `json:"data" doc:"kind-specific detail"`
	Key       string         `json:"key" doc:"the event's identity in notifications (webhook payloads, deliveries)"`
}

type listEventsInput struct {
	MonitorID int64  `query:"monitor_id" minimum:"0" doc:"only this monitor's events"`
	Kind      string `query:"kind"`
	Cursor    string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit     int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// EventList is one page of events.
type EventList struct {
	Events     []Event `json:"events" doc:"newest first"`
	NextCursor *string `json:"next_cursor" doc:"null on the last page"`
}

type eventListBody struct{ Body EventList }

func (s *Server) listEvents(ctx context.Context, in *listEventsInput) (*eventListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	before, err := intCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	evs, next, err := s.store.ListEvents(ctx, store.EventFilter{
		TeamID:    teamID,
		MonitorID: in.MonitorID,
		Kind:      in.Kind,
		Before:    before,
		Limit:     in.Limit,
	})
	if err != nil {
		return nil, storeError(err, "events")
	}
	out := &eventListBody{}
	out.Body.Events = mapSlice(evs, eventView)
	out.Body.NextCursor = nextIntCursor(next)
	return out, nil
}

func eventView(e store.Event) Event {
	data := e.Data
	if data == nil {
		data = map[string]any{}
	}
	return Event{
		ID:        e.ID,
		MonitorID: e.MonitorID,
		At:        e.At.UTC().Truncate(time.Second),
		Kind:      e.Kind,
		Status:    string(e.Status),
		Severity:  e.Severity,
		Message:   e.Message,
		Data:      data,
		Key:       e.Key,
	}
}
