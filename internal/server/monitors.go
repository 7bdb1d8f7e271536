package server

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
	"github.com/certmon/certmon/internal/target"
)

// Monitor is a monitor as the API shows it: what the user asked for, and
// the latest check in the shapes of `certmon check --output json`.
type Monitor struct {
	ID         int64    `json:"id"`
	Target     string   `json:"target"`
	Protocol   string   `json:"protocol"`
	SNI        string   `json:"sni"`
	Schedule   string   `json:"schedule"`
	WarnDays   int      `json:"warn_days"`
	CritDays   int      `json:"crit_days"`
	Tags       []string `json:"tags"`
	Owner      string   `json:"owner"`
	Recipients []string `json:"recipients"`
	AgentPool  string   `json:"agent_pool"`
	CAPEM      string   `json:"ca_pem"`
	// RevocationFrom says who fetches OCSP, CRL and AIA: server or agent.
	RevocationFrom string `json:"revocation_from"`
	Paused         bool   `json:"paused"`
	// ReminderDays is [] when the monitor inherits its thresholds.
	ReminderDays []int      `json:"reminder_days" doc:"days-left thresholds of expiry reminders; [] inherits them (by tag or the server default)"`
	SnoozedUntil *time.Time `json:"snoozed_until" doc:"alerts are silenced until then; null when not snoozed"`
	Acknowledged bool       `json:"acknowledged" doc:"alerts are silenced until the certificate changes"`

	Status       *assess.Status       `json:"status" enum:"OK,WARNING,CRITICAL,UNKNOWN" doc:"null before the first check"`
	Problems     []assess.Problem     `json:"problems"`
	TLS          *assess.TLSInfo      `json:"tls" doc:"null without a handshake"`
	Chain        []assess.Certificate `json:"chain" doc:"as sent; days_left is as of this response"`
	Verification *assess.Verification `json:"verification" doc:"null before the first check"`
	Error        *string              `json:"error" doc:"the probe or input error of the last check"`

	LastCheckAt *time.Time `json:"last_check_at"`
	NextCheckAt *time.Time `json:"next_check_at"`
	CreatedAt   *time.Time `json:"created_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
}

// MonitorFields is what POST and PUT take; omitted fields get the
// server's defaults.
type MonitorFields struct {
	Target     string   `json:"target" minLength:"1" doc:"host, host:port, [v6]:port or scheme://host[:port], as certmon check takes it" example:"https://example.com"`
	Protocol   string   `json:"protocol,omitempty" doc:"scheme of a target written without one, e.g. smtp"`
	SNI        string   `json:"sni,omitempty" doc:"server name to send and verify (default: the target's host)"`
	Schedule   string   `json:"schedule,omitempty" doc:"interval in Go syntax (4h) or a 5-field cron expression in UTC; default from the server config" example:"4h"`
	WarnDays   *int     `json:"warn_days,omitempty" minimum:"0" doc:"WARNING this many days before expiry; default from the server config"`
	CritDays   *int     `json:"crit_days,omitempty" minimum:"0" doc:"CRITICAL this many days before expiry; at most warn_days"`
	Tags       []string `json:"tags,omitempty"`
	Owner      string   `json:"owner,omitempty"`
	Recipients []string `json:"recipients,omitempty"`
	AgentPool  string   `json:"agent_pool,omitempty" doc:"agent pool that runs the check" default:"cloud"`
	CAPEM      string   `json:"ca_pem,omitempty" doc:"PEM certificates trusted as extra roots for this monitor (private PKI)"`
	// RevocationFrom "agent" makes the monitor's agent fetch OCSP, CRL and
	// AIA, for responders reachable only inside its network.
	RevocationFrom string `json:"revocation_from,omitempty" enum:"server,agent" doc:"who fetches OCSP, CRL and AIA issuers: the server (default) or the monitor's agent, for responders reachable only inside its network"`
	ReminderDays   []int  `json:"reminder_days,omitempty" maxItems:"20" minimum:"1" maximum:"3650" doc:"days-left thresholds of expiry reminders, e.g. [30, 14, 7, 1]; empty or omitted: by tag or the server default" example:"[30,14,7,1]"`
}

// MonitorPatch is what PATCH takes: only the fields present change.
type MonitorPatch struct {
	Target     *string   `json:"target,omitempty" minLength:"1"`
	Protocol   *string   `json:"protocol,omitempty"`
	SNI        *string   `json:"sni,omitempty"`
	Schedule   *string   `json:"schedule,omitempty"`
	WarnDays   *int      `json:"warn_days,omitempty" minimum:"0"`
	CritDays   *int      `json:"crit_days,omitempty" minimum:"0"`
	Tags       *[]string `json:"tags,omitempty"`
	Owner      *string   `json:"owner,omitempty"`
	Recipients *[]string `json:"recipients,omitempty"`
	AgentPool  *string   `json:"agent_pool,omitempty"`
	CAPEM      *string   `json:"ca_pem,omitempty"`
	// RevocationFrom is "server" or "agent".
	RevocationFrom *string `json:"revocation_from,omitempty" enum:"server,agent"`
	// ReminderDays [] returns to the inherited thresholds.
	ReminderDays *[]int `json:"reminder_days,omitempty" maxItems:"20" minimum:"1" maximum:"3650"`
}

// HistoryEntry is one change in a monitor's life.
type HistoryEntry struct {
	ID         int64            `json:"id"`
	At         time.Time        `json:"at"`
	Status     assess.Status    `json:"status"`
	Problems   []assess.Problem `json:"problems"`
	LeafSHA256 string           `json:"leaf_sha256"`
	Change     []string         `json:"change" doc:"what changed: first_check, status, problems, certificate"`
}

type monitorBody struct{ Body Monitor }

type monitorID struct {
	ID int64 `path:"id" minimum:"1"`
}

type createMonitorInput struct {
	Body MonitorFields
}

func (s *Server) createMonitor(ctx context.Context, in *createMonitorInput) (*monitorBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	m, err := s.monitorFromFields(in.Body)
	if err != nil {
		return nil, err
	}
	m.TeamID = teamID
	now := s.now()
	// Due at once: a user who adds a monitor wants to see its certificate.
	created, err := s.store.CreateMonitor(ctx, m, now)
	if err != nil {
		return nil, storeError(err, "monitor")
	}
	s.wake()
	return &monitorBody{Body: s.view(store.MonitorWithState{
		Monitor: created,
		State:   store.State{MonitorID: created.ID, NextCheckAt: now},
	})}, nil
}

func (s *Server) getMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	mw, err := s.loadMonitor(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &monitorBody{Body: s.view(mw)}, nil
}

type replaceMonitorInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body MonitorFields
}

func (s *Server) replaceMonitor(ctx context.Context, in *replaceMonitorInput) (*monitorBody, error) {
	m, err := s.monitorFromFields(in.Body)
	if err != nil {
		return nil, err
	}
	return s.updateMonitor(ctx, in.ID, func(old store.Monitor) (store.Monitor, error) {
		m.ID, m.TeamID, m.Paused, m.CreatedAt = old.ID, old.TeamID, old.Paused, old.CreatedAt
		return m, nil
	})
}

type patchMonitorInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body MonitorPatch
}

func (s *Server) patchMonitor(ctx context.Context, in *patchMonitorInput) (*monitorBody, error) {
	p := in.Body
	return s.updateMonitor(ctx, in.ID, func(m store.Monitor) (store.Monitor, error) {
		set(&m.Target, p.Target)
		set(&m.Protocol, p.Protocol)
		set(&m.SNI, p.SNI)
		set(&m.Schedule, p.Schedule)
		set(&m.WarnDays, p.WarnDays)
		set(&m.CritDays, p.CritDays)
		set(&m.Tags, p.Tags)
		set(&m.Owner, p.Owner)
		set(&m.Recipients, p.Recipients)
		set(&m.AgentPool, p.AgentPool)
		set(&m.CAPEM, p.CAPEM)
		if p.RevocationFrom != nil {
			m.RevocationFrom = storedRevocationFrom(*p.RevocationFrom)
		}
		set(&m.ReminderDays, p.ReminderDays)
		if m.AgentPool == "" {
			m.AgentPool = monitor.CloudPool
		}
		if strings.TrimSpace(m.Schedule) == "" {
			m.Schedule = s.cfg.DefaultSchedule
		}
		return m, s.validateMonitor(&m)
	})
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// updateMonitor applies change to the stored monitor and reschedules it:
// a change that alters what the check finds (target, trust, thresholds)
// makes it due at once; a new schedule moves the next check to its first
// slot; anything else keeps the next check where it is.
func (s *Server) updateMonitor(ctx context.Context, id int64, change func(store.Monitor) (store.Monitor, error)) (*monitorBody, error) {
	old, err := s.loadMonitor(ctx, id)
	if err != nil {
		return nil, err
	}
	m, err := change(old.Monitor)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var next time.Time
	switch {
	case m.Target != old.Target || m.Protocol != old.Protocol || m.SNI != old.SNI ||
		m.CAPEM != old.CAPEM || m.RevocationFrom != old.RevocationFrom || m.WarnDays != old.WarnDays || m.CritDays != old.CritDays ||
		m.AgentPool != old.AgentPool:
		next = now
	case m.Schedule != old.Schedule:
		sched, _ := monitor.ParseSchedule(m.Schedule) // validated above
		next = sched.Next(now, m.ID)
	}
	if _, err := s.store.UpdateMonitor(ctx, m, next); err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", id))
	}
	if next.Equal(now) && !m.Paused {
		s.wake()
	}
	return s.getMonitor(ctx, &monitorID{ID: id})
}

func (s *Server) deleteMonitor(ctx context.Context, in *monitorID) (*struct{}, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteMonitor(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", in.ID))
	}
	return nil, nil
}

func (s *Server) pauseMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	return s.setPaused(ctx, in.ID, true)
}

func (s *Server) resumeMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	return s.setPaused(ctx, in.ID, false)
}

// setPaused pauses or resumes. A resumed monitor is due at once: its last
// result may be arbitrarily old.
func (s *Server) setPaused(ctx context.Context, id int64, paused bool) (*monitorBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	var next time.Time
	if !paused {
		next = s.now()
	}
	if err := s.store.SetPaused(ctx, teamID, id, paused, next); err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", id))
	}
	if !paused {
		s.wake()
	}
	return s.getMonitor(ctx, &monitorID{ID: id})
}

// checkMonitor makes a monitor due now; the check runs asynchronously,
// hence 202.
func (s *Server) checkMonitor(ctx context.Context, in *monitorID) (*monitorBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.CheckNow(ctx, teamID, in.ID, s.now()); err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", in.ID))
	}
	s.wake()
	return s.getMonitor(ctx, in)
}

type historyInput struct {
	ID    int64 `path:"id" minimum:"1"`
	Limit int   `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// History is a monitor's changes.
type History struct {
	History []HistoryEntry `json:"history" doc:"newest first"`
}

type historyBody struct{ Body History }

func (s *Server) monitorHistory(ctx context.Context, in *historyInput) (*historyBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	// The store tells an unknown (or another team's) monitor from one
	// without history yet.
	hs, err := s.store.History(ctx, teamID, in.ID, in.Limit)
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("monitor %d", in.ID))
	}
	out := &historyBody{}
	out.Body.History = make([]HistoryEntry, 0, len(hs))
	for _, h := range hs {
		out.Body.History = append(out.Body.History, HistoryEntry{
			ID:         h.ID,
			At:         h.At.UTC().Truncate(time.Second),
			Status:     h.Status,
			Problems:   orEmpty(h.Problems),
			LeafSHA256: h.LeafSHA256,
			Change:     orEmpty(h.Change),
		})
	}
	return out, nil
}

type listMonitorsInput struct {
	Status         string `query:"status" enum:"OK,WARNING,CRITICAL,UNKNOWN" doc:"latest status"`
	Tag            string `query:"tag" doc:"has this tag"`
	Q              string `query:"q" doc:"substring of target, owner or tags"`
	ExpiringWithin string `query:"expiring_within" doc:"leaf certificate expires within this many days (30) or this Go duration (72h)"`
	AgentPool      string `query:"agent_pool"`
	Cursor         string `query:"cursor" doc:"next_cursor of the previous page"`
	Limit          int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
}

// MonitorList is one page of monitors.
type MonitorList struct {
	Monitors   []Monitor `json:"monitors"`
	NextCursor *string   `json:"next_cursor" doc:"null on the last page"`
}

type monitorListBody struct{ Body MonitorList }

func (s *Server) listMonitors(ctx context.Context, in *listMonitorsInput) (*monitorListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	within, err := parseWithin(in.ExpiringWithin)
	if err != nil {
		return nil, err
	}
	after, err := intCursor(in.Cursor)
	if err != nil {
		return nil, err
	}
	ms, next, err := s.store.ListMonitors(ctx, store.ListFilter{
		TeamID:         teamID,
		Status:         assess.Status(in.Status),
		Tag:            in.Tag,
		Text:           in.Q,
		ExpiringWithin: within,
		AgentPool:      in.AgentPool,
		After:          after,
		Limit:          in.Limit,
		Now:            s.now(),
	})
	if err != nil {
		return nil, storeError(err, "monitors")
	}
	out := &monitorListBody{}
	out.Body.Monitors = mapSlice(ms, s.view)
	out.Body.NextCursor = nextIntCursor(next)
	return out, nil
}

func (s *Server) loadMonitor(ctx context.Context, id int64) (store.MonitorWithState, error) {
	teamID, err := team(ctx)
	if err != nil {
		return store.MonitorWithState{}, err
	}
	mw, err := s.store.GetMonitor(ctx, teamID, id)
	if err != nil {
		return store.MonitorWithState{}, storeError(err, fmt.Sprintf("monitor %d", id))
	}
	return mw, nil
}

// monitorFromFields applies the server's defaults to a POST or PUT body
// and validates the result.
func (s *Server) monitorFromFields(f MonitorFields) (store.Monitor, error) {
	m := store.Monitor{
		Target:     f.Target,
		Protocol:   f.Protocol,
		SNI:        f.SNI,
		Schedule:   f.Schedule,
		WarnDays:   s.cfg.WarnDays,
		CritDays:   s.cfg.CritDays,
		Tags:       f.Tags,
		Owner:      f.Owner,
		Recipients: f.Recipients,
		AgentPool:  f.AgentPool,
		CAPEM:      f.CAPEM,
		// The store keeps "" for the server, the default.
		RevocationFrom: storedRevocationFrom(f.RevocationFrom),
		ReminderDays:   f.ReminderDays,
	}
	if strings.TrimSpace(m.Schedule) == "" {
		m.Schedule = s.cfg.DefaultSchedule
	}
	if m.AgentPool == "" {
		m.AgentPool = monitor.CloudPool
	}
	set(&m.WarnDays, f.WarnDays)
	set(&m.CritDays, f.CritDays)
	// Only warn_days given: keep crit_days within it rather than reject a
	// request that never mentioned crit_days.
	if f.WarnDays != nil && f.CritDays == nil && m.CritDays > m.WarnDays {
		m.CritDays = m.WarnDays
	}
	return m, s.validateMonitor(&m)
}

// validateMonitor checks a complete monitor the way `certmon check` checks
// its flags, naming the offending field, and normalises it in place.
func (s *Server) validateMonitor(m *store.Monitor) error {
	m.Target = strings.TrimSpace(m.Target)
	m.Protocol = strings.ToLower(strings.TrimSpace(m.Protocol))
	m.SNI = strings.TrimSpace(m.SNI)
	m.Schedule = strings.TrimSpace(m.Schedule)
	m.Owner = strings.TrimSpace(m.Owner)
	m.AgentPool = strings.TrimSpace(m.AgentPool)

	if m.Target == "" {
		return invalid("target", "required")
	}
	if m.Protocol != "" {
		if _, ok := target.Lookup(m.Protocol); !ok {
			return invalid("protocol", "unknown protocol %q", m.Protocol)
		}
	}
	t, err := monitor.ParseTarget(m.Target, m.Protocol)
	if err != nil {
		return invalid("target", "%v", err)
	}
	if m.Protocol != "" && strings.Contains(m.Target, "://") {
		if p, _ := target.Lookup(m.Protocol); p.Name != t.Protocol {
			return invalid("protocol", "%q conflicts with the target's scheme %q", m.Protocol, t.Protocol)
		}
	}
	if m.SNI != "" {
		if len(m.SNI) > 253 || strings.ContainsFunc(m.SNI, func(r rune) bool { return r <= ' ' || r == '/' || r == ':' || r > '~' }) {
			return invalid("sni", "%q is not a host name", m.SNI)
		}
	}
	if _, err := monitor.ParseSchedule(m.Schedule); err != nil {
		return invalid("schedule", "%v", err)
	}
	if m.WarnDays < 0 {
		return invalid("warn_days", "must be >= 0")
	}
	if m.CritDays < 0 {
		return invalid("crit_days", "must be >= 0")
	}
	if m.CritDays > m.WarnDays {
		return invalid("crit_days", "must be <= warn_days (%d)", m.WarnDays)
	}
	if m.Tags, err = cleanList("tags", m.Tags); err != nil {
		return err
	}
	if m.Recipients, err = cleanList("recipients", m.Recipients); err != nil {
		return err
	}
	if m.AgentPool == "" {
		return invalid("agent_pool", "must not be empty")
	}
	if m.CAPEM != "" {
		if err := checkPEM(m.CAPEM); err != nil {
			return invalid("ca_pem", "%v", err)
		}
	}
	if m.RevocationFrom == "agent" && m.AgentPool == monitor.CloudPool {
		return invalid("revocation_from", "agent needs a self-hosted agent_pool, not %q", monitor.CloudPool)
	}
	if m.ReminderDays, err = cleanReminderDays(m.ReminderDays); err != nil {
		return err
	}
	return nil
}

// maxReminderDays is ten years: thresholds beyond any certificate's life.
const maxReminderDays = 3650

// cleanReminderDays checks thresholds and orders them, largest first and
// once each; none is nil, which the store keeps as "inherit".
func cleanReminderDays(in []int) ([]int, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 20 {
		return nil, invalid("reminder_days", "at most 20 thresholds")
	}
	out := make([]int, 0, len(in))
	for i, d := range in {
		if d < 1 || d > maxReminderDays {
			return nil, invalid(fmt.Sprintf("reminder_days[%d]", i), "must be between 1 and %d", maxReminderDays)
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out, nil
}

// storedRevocationFrom maps the API's "server" (or nothing) to the
// store's "".
func storedRevocationFrom(v string) string {
	if v == "agent" {
		return "agent"
	}
	return ""
}

func viewRevocationFrom(v string) string {
	if v == "agent" {
		return "agent"
	}
	return "server"
}

// cleanList trims entries, rejects empty ones and drops duplicates.
func cleanList(field string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for i, v := range in {
		v = strings.TrimSpace(v)
		if v == "" {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "must not be empty")
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkPEM accepts one or more CERTIFICATE blocks that parse, and nothing
// else (a private key pasted by mistake must not be stored).
func checkPEM(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n+1, b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate found")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return fmt.Errorf("unparsable data after certificate %d", n)
	}
	return nil
}

// view renders a monitor. Before the first check status, tls,
// verification and error are null and the lists are empty.
func (s *Server) view(mw store.MonitorWithState) Monitor {
	m, st := mw.Monitor, mw.State
	v := Monitor{
		ID:             m.ID,
		Target:         m.Target,
		Protocol:       m.Protocol,
		SNI:            m.SNI,
		Schedule:       m.Schedule,
		WarnDays:       m.WarnDays,
		CritDays:       m.CritDays,
		Tags:           orEmpty(m.Tags),
		Owner:          m.Owner,
		Recipients:     orEmpty(m.Recipients),
		AgentPool:      m.AgentPool,
		CAPEM:          m.CAPEM,
		RevocationFrom: viewRevocationFrom(m.RevocationFrom),
		Paused:         m.Paused,
		ReminderDays:   orEmpty(m.ReminderDays),
		SnoozedUntil:   timeOrNil(s.activeSnooze(m)),
		Acknowledged:   acknowledged(mw),
		Problems:       []assess.Problem{},
		Chain:          []assess.Certificate{},
		LastCheckAt:    timeOrNil(st.LastCheckAt),
		NextCheckAt:    timeOrNil(st.NextCheckAt),
		CreatedAt:      timeOrNil(m.CreatedAt),
		UpdatedAt:      timeOrNil(m.UpdatedAt),
	}
	if st.Status != "" {
		status := st.Status
		v.Status = &status
	}
	if r := st.Result; r != nil {
		v.Problems = orEmpty(r.Problems)
		v.TLS = r.TLS
		v.Verification = &r.Verification
		v.Error = r.Error
		// days_left is recomputed: the stored value is as of the check,
		// which for a paused monitor may be weeks old.
		now := s.now()
		v.Chain = make([]assess.Certificate, len(r.Chain))
		for i, c := range r.Chain {
			if na, err := time.Parse(time.RFC3339, c.NotAfter); err == nil {
				c.DaysLeft = daysLeft(na, now)
			}
			v.Chain[i] = c
		}
	}
	return v
}

// daysLeft counts whole days until notAfter, negative once expired.
func daysLeft(notAfter, now time.Time) int {
	return int(math.Floor(notAfter.Sub(now).Hours() / 24))
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Second)
	return &u
}

// orEmpty makes nil lists [] in JSON, so clients need not test for null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
