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
	// ReminderDays overrides the expiry reminder thresholds (nil: by tag
	// or the global default).
	ReminderDays []int
	// SnoozedUntil silences this monitor's alerts until then.
	SnoozedUntil time.Time
	// AckedSHA256 silences its alerts while it serves this leaf: an
	// acknowledgement lasts until the certificate changes.
	AckedSHA256 string
	Paused      bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
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
	// Reminded is the expiry reminder threshold already announced for the
	// current leaf (0: none), so each threshold is crossed once.
	Reminded time.Duration
	// Alerted are the problem codes an alert went out for and that still
	// hold; "UNREACHABLE" once the unreachable alert was sent.
	Alerted []string
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
	// Key identifies the event to its deliveries (random, set on write).
	Key string
	// Notify makes the store route the event to channels and recipients
	// in the transaction that writes it. Not stored.
	Notify bool `json:"-"`
	// Silenced (snoozed or acknowledged): stored and shown, never routed.
	// Not stored.
	Silenced bool `json:"-"`
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

// Channel is where notifications go: email, teams, slack or webhook.
type Channel struct {
	ID     int64
	TeamID int64
	Name   string
	Type   string
	// Config is the type's settings as sealed by package secret: the
	// store never sees the secrets in clear.
	Config    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Rule routes events to channels. An empty selector matches everything.
type Rule struct {
	ID         int64
	TeamID     int64
	Name       string
	Tags       []string // any of them
	Monitors   []int64
	Severities []string // info, warning, critical
	Events     []string // event kinds
	Channels   []int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Matches reports whether the rule routes e, from a monitor with tags
// (nil for events of no monitor).
func (r Rule) Matches(e Event, tags []string) bool {
	if len(r.Events) > 0 && !contains(r.Events, e.Kind) {
		return false
	}
	if len(r.Severities) > 0 && !contains(r.Severities, e.Severity) {
		return false
	}
	if len(r.Monitors) > 0 && !contains(r.Monitors, e.MonitorID) {
		return false
	}
	if len(r.Tags) > 0 {
		for _, t := range tags {
			if contains(r.Tags, t) {
				return true
			}
		}
		return false
	}
	return true
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// User is a person who receives email. Minimal until accounts arrive: an
// address and how it wants to be told.
type User struct {
	ID        int64
	TeamID    int64
	Email     string
	Name      string
	Settings  NotifySettings
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NotifySettings are one user's preferences for email.
type NotifySettings struct {
	// Mode is "immediate" (default) or "digest" (one email a day at
	// DigestAt in TimeZone).
	Mode     string `json:"mode,omitempty"`
	DigestAt string `json:"digest_at,omitempty"` // "08:00"
	// Events lists the kinds wanted; empty is all.
	Events []string `json:"events,omitempty"`
	// Quiet hours hold immediate email from QuietStart to QuietEnd
	// ("22:00"-"07:00") in TimeZone and send it grouped at their end.
	QuietStart string `json:"quiet_start,omitempty"`
	QuietEnd   string `json:"quiet_end,omitempty"`
	TimeZone   string `json:"time_zone,omitempty"` // IANA, default UTC
}

// Delivery states.
const (
	DeliveryPending = "pending"
	DeliverySent    = "sent"
	DeliveryDead    = "dead"
	// DeliverySkipped: the destination did not want it (a user's event
	// kinds) or no longer exists.
	DeliverySkipped = "skipped"
)

// Delivery is one event for one destination: a channel, or an email
// address (ChannelID 0) of a monitor's recipients.
type Delivery struct {
	ID        int64
	TeamID    int64
	EventKey  string
	ChannelID int64
	Address   string
	Status    string
	Attempts  int
	NextAt    time.Time
	LastError string
	// LastCode is the receiver's last HTTP status or SMTP reply code.
	LastCode  int
	CreatedAt time.Time
	SentAt    time.Time
	// Event and the monitor's tags are joined in by ClaimDeliveries and
	// ListDeliveries.
	Event Event
	Tags  []string
	// Owner is the claim's lease owner (ClaimDeliveries).
	Owner string
}

// DedupeKey names what a receiver must see at most once.
func (d Delivery) DedupeKey() string {
	if d.ChannelID != 0 {
		return d.EventKey + "/c" + itoa(d.ChannelID)
	}
	return d.EventKey + "/" + d.Address
}

// DeliveryFilter selects deliveries, newest first.
type DeliveryFilter struct {
	TeamID int64
	Status string
	Before int64 // cursor: ID < Before
	Limit  int
}
