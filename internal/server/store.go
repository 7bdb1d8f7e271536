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
	Silence(ctx context.Context, teamID, id int64, until time.Time, ackSHA256 string) error
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

// ChannelStore is what the channel routes need.
type ChannelStore interface {
	CreateChannel(ctx context.Context, c store.Channel) (store.Channel, error)
	GetChannel(ctx context.Context, teamID, id int64) (store.Channel, error)
	ListChannels(ctx context.Context, teamID int64) ([]store.Channel, error)
	UpdateChannel(ctx context.Context, c store.Channel) (store.Channel, error)
	DeleteChannel(ctx context.Context, teamID, id int64) error
}

// RuleStore is what the rule routes need.
type RuleStore interface {
	CreateRule(ctx context.Context, r store.Rule) (store.Rule, error)
	GetRule(ctx context.Context, teamID, id int64) (store.Rule, error)
	ListRules(ctx context.Context, teamID int64) ([]store.Rule, error)
	UpdateRule(ctx context.Context, r store.Rule) (store.Rule, error)
	DeleteRule(ctx context.Context, teamID, id int64) error
}

// UserStore is what the user routes need.
type UserStore interface {
	CreateUser(ctx context.Context, u store.User) (store.User, error)
	GetUser(ctx context.Context, teamID, id int64) (store.User, error)
	ListUsers(ctx context.Context, teamID int64) ([]store.User, error)
	UpdateUser(ctx context.Context, u store.User) (store.User, error)
	DeleteUser(ctx context.Context, teamID, id int64) error
}

// DeliveryStore is what the delivery routes need.
type DeliveryStore interface {
	ListDeliveries(ctx context.Context, f store.DeliveryFilter) ([]store.Delivery, int64, error)
	GetDelivery(ctx context.Context, teamID, id int64) (store.Delivery, error)
	RetryDelivery(ctx context.Context, teamID, id int64, now time.Time) error
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
	ChannelStore
	RuleStore
	UserStore
	DeliveryStore
}

var _ Store = (*store.Store)(nil)
