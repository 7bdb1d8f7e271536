package server

import (
	"context"
	"time"

	"github.com/certmon/certmon/internal/auth"
	"github.com/certmon/certmon/internal/store"
)

// MonitorStore is what the monitor routes need.
type MonitorStore interface {
	CreateMonitor(ctx context.Context, m store.Monitor, firstCheck time.Time) (store.Monitor, error)
	GetMonitor(ctx context.Context, teamID, id int64) (store.MonitorWithState, error)
	UpdateMonitor(ctx context.Context, m store.Monitor, reschedule time.Time) (store.Monitor, error)
	DeleteMonitor(ctx context.Context, teamID, id int64) error
	SetPaused(ctx context.Context, teamID, id int64, paused bool, next time.Time) error
	CheckNow(ctx context.Context, teamID, id int64, now time.Time) error
	ListMonitors(ctx context.Context, f store.ListFilter) ([]store.MonitorWithState, int64, error)
	History(ctx context.Context, teamID, monitorID int64, limit int) ([]store.HistoryEntry, error)
}

// CertificateStore is what the certificate routes need.
type CertificateStore interface {
	GetCertificate(ctx context.Context, teamID int64, sha256 string) (store.Certificate, []store.CertificateUse, error)
	ListCertificates(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, string, error)
}

// EventStore is what the event routes need.
type EventStore interface {
	ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, int64, error)
}

// Pinger answers /readyz.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Store is everything the server asks of the store, grouped by route.
type Store interface {
	MonitorStore
	CertificateStore
	EventStore
	auth.TokenStore
	Pinger
	AgentStore
}

var _ Store = (*store.Store)(nil)
