package store

import (
	"errors"
	"time"

	"github.com/certmon/certmon/internal/assess"
)

// Sentinel errors, matched with errors.Is by callers (the HTTP layer maps
// them to statuses in one place).
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrLeaseLost means a check result arrived for a claim this owner no
	// longer holds (another replica took it over); the result is dropped.
	ErrLeaseLost = errors.New("lease lost")
)

// DefaultTeamID is the team every row belongs to until users and teams
// arrive; migration 1 creates it.
const DefaultTeamID int64 = 1

// Monitor is what a user asked to watch. All times are UTC.
type Monitor struct {
	ID         int64
	TeamID     int64
	Target     string // as the user wrote it; parsed by package target
	Protocol   string // "" = implied by Target
	SNI        string
	Schedule   string // "4h" interval or a 5-field cron expression
	WarnDays   int
	CritDays   int
	Tags       []string
	Owner      string
	Recipients []string
	AgentPool  string // "cloud" = the server's built-in agent
	// CAPEM holds extra trusted roots for this monitor (private PKI).
	CAPEM string
	// RevocationFrom is "agent" when the monitor's agent, not the server,
	// fetches OCSP, CRL and AIA (responders reachable only inside).
	RevocationFrom string
	Paused         bool
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// State is a monitor's latest check, updated on every check.
type State struct {
	MonitorID int64
	// Result is the last assessment, nil before the first check.
	Result      *assess.Result
	Status      assess.Status // "" before the first check
	LeafSHA256  string
	LeafExpires time.Time // zero without a certificate
	LastCheckAt time.Time // zero before the first check
	NextCheckAt time.Time
	// Failures counts consecutive checks that got no certificate, for the
	// retry-before-alert rule.
	Failures int
}

// MonitorWithState is what the API shows for a monitor.
type MonitorWithState struct {
	Monitor
	State State
}

// ListFilter selects monitors. Zero fields select everything.
type ListFilter struct {
	TeamID         int64
	Status         assess.Status
	Tag            string
	Text           string        // substring of target, owner or tags
	ExpiringWithin time.Duration // leaf expires before now+d
	AgentPool      string
	// After is the cursor: monitors with ID > After, in ID order.
	After int64
	Limit int // default 100, max 1000
	Now   time.Time
}

// Certificate is one certificate, stored once, keyed by SHA-256 of its DER.
type Certificate struct {
	SHA256 string
	DER    []byte
	// Info is the parsed form with the check contract's field names;
	// DaysLeft is filled at read time.
	Info      assess.Certificate
	NotAfter  time.Time
	FirstSeen time.Time
}

// CertificateUse says where a certificate was served.
type CertificateUse struct {
	MonitorID int64
	Target    string
	FirstSeen time.Time
	// LastSeen is zero while the monitor still serves it.
	LastSeen time.Time
}

// CertificateFilter selects certificates.
type CertificateFilter struct {
	TeamID         int64
	ExpiringWithin time.Duration
	Issuer         string // substring
	KeyType        string
	// Status filters by the status of monitors currently serving it.
	Status assess.Status
	After  string // cursor: SHA256 > After
	Limit  int
	Now    time.Time
}

// HistoryEntry is one change in a monitor's life: written only when the
// certificate, status or problems change, never on an unchanged check.
type HistoryEntry struct {
	ID         int64
	MonitorID  int64
	At         time.Time
	Status     assess.Status
	Problems   []assess.Problem
	LeafSHA256 string
	// Change lists what changed: "first_check", "status", "problems", "certificate".
	Change []string
}

// Event is something people may be told about (package notify reads them).
type Event struct {
	ID        int64
	TeamID    int64
	MonitorID int64
	At        time.Time
	// Kind: first_check, status_changed, certificate_changed, ...
	Kind     string
	Status   assess.Status
	Severity string
	Message  string
	// Data is kind-specific detail (old/new fingerprint, serial, dates...).
	Data map[string]any
}

// EventFilter selects events, newest first.
type EventFilter struct {
	TeamID    int64
	MonitorID int64
	Kind      string
	Before    int64 // cursor: ID < Before
	Limit     int
}

// Claim is a due check handed to one worker. It is held until Lease; the
// result is accepted only while the claim is still this owner's.
type Claim struct {
	Monitor Monitor
	State   State
	// Slot is the scheduled time this check stands for.
	Slot  time.Time
	Owner string
	Lease time.Time
}

// CheckRecord is the outcome of one claimed check, written in one
// transaction with everything it implies.
type CheckRecord struct {
	Claim Claim
	// State is the new state row (NextCheckAt already computed).
	State State
	// Certificates are upserted (inserted if new); only pass them when the
	// chain changed, so an unchanged check writes one row.
	Certificates []Certificate
	// History and Events are appended when not nil.
	History *HistoryEntry
	Events  []Event
}
