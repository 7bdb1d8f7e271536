package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// AgentStore is what the agent routes need.
type AgentStore interface {
	CreateAgent(ctx context.Context, a store.Agent) (store.Agent, error)
	GetAgent(ctx context.Context, teamID int64, id string) (store.Agent, error)
	ListAgents(ctx context.Context, teamID int64) ([]store.Agent, error)
	RotateAgentKey(ctx context.Context, teamID int64, id string, keyHash []byte, expires, overlapUntil time.Time) (time.Time, error)
	RevokeAgent(ctx context.Context, teamID int64, id string, now time.Time) error
	DeleteAgent(ctx context.Context, teamID int64, id string) error
}

// agentStaleAfter is how old last_seen may be for a "connected" row to be
// believed; hubs refresh it every 30 s, so an older one was left by a
// replica that died.
const agentStaleAfter = 2 * time.Minute

// Agent is a self-hosted agent as the API shows it; never its key.
type Agent struct {
	ID                    string     `json:"id" example:"agt_0123456789abcdef"`
	Name                  string     `json:"name"`
	Pool                  string     `json:"pool" doc:"monitors with this agent_pool are checked by the pool's agents"`
	KeyExpiresAt          time.Time  `json:"key_expires_at"`
	PreviousKeyValidUntil *time.Time `json:"previous_key_valid_until" doc:"the key replaced by the last rotation works until then; null when none does"`
	RevokedAt             *time.Time `json:"revoked_at" doc:"null unless revoked"`
	CreatedAt             time.Time  `json:"created_at"`

	Connected  bool       `json:"connected"`
	Version    string     `json:"version" doc:"the agent's certmon version, as it reported"`
	Hostname   string     `json:"hostname"`
	Address    string     `json:"address" doc:"where the agent connected from"`
	LastSeen   *time.Time `json:"last_seen"`
	JobsDone   int64      `json:"jobs_done"`
	Errors     int64      `json:"errors"`
	QueueDepth int        `json:"queue_depth"`
}

// AgentFields is what POST /api/v1/agents takes.
type AgentFields struct {
	Name       string `json:"name" minLength:"1" maxLength:"100"`
	Pool       string `json:"pool" minLength:"1" maxLength:"100" doc:"agent pool; not \"cloud\" (the server's built-in agent)" example:"dc1"`
	KeyTTLDays int    `json:"key_ttl_days,omitempty" minimum:"0" maximum:"180" doc:"key lifetime in days; default and maximum 180"`
}

// CreatedAgent is the agent and its key, shown this once.
type CreatedAgent struct {
	Agent
	Key string `json:"key" doc:"the secret key; shown only now, store it in the agent's configuration"`
}

// RotatedKey is a new key, shown this once.
type RotatedKey struct {
	ID                    string    `json:"id"`
	Key                   string    `json:"key" doc:"the new secret key; shown only now"`
	KeyExpiresAt          time.Time `json:"key_expires_at"`
	PreviousKeyValidUntil time.Time `json:"previous_key_valid_until" doc:"the replaced key keeps working until then"`
}

// AgentList is a team's agents, by name.
type AgentList struct {
	Agents []Agent `json:"agents"`
}

type agentBody struct{ Body Agent }

type agentID struct {
	ID string `path:"id" maxLength:"40"`
}

type createAgentInput struct {
	Body AgentFields
}

type createdAgentBody struct{ Body CreatedAgent }

type rotateInput struct {
	ID           string `path:"id" maxLength:"40"`
	KeyTTLDays   int    `query:"key_ttl_days" minimum:"0" maximum:"180" doc:"lifetime of the new key in days; default and maximum 180"`
	OverlapHours int    `query:"overlap_hours" minimum:"0" maximum:"720" default:"24" doc:"how long the replaced key keeps working"`
}

type rotatedBody struct{ Body RotatedKey }

type agentListBody struct{ Body AgentList }

func (s *Server) createAgent(ctx context.Context, in *createAgentInput) (*createdAgentBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	name, pool := strings.TrimSpace(in.Body.Name), strings.TrimSpace(in.Body.Pool)
	if err := checkAgentText("name", name); err != nil {
		return nil, err
	}
	if err := checkAgentText("pool", pool); err != nil {
		return nil, err
	}
	if strings.EqualFold(pool, monitor.CloudPool) {
		return nil, invalid("pool", "%q is the server's built-in agent; choose another pool name", monitor.CloudPool)
	}
	ttl, err := agentlink.KeyTTL(in.Body.KeyTTLDays)
	if err != nil {
		return nil, invalid("key_ttl_days", "%s", err)
	}
	key, hash := agentlink.NewKey()
	a, err := as.CreateAgent(ctx, store.Agent{
		ID: agentlink.NewAgentID(), TeamID: teamID, Name: name, Pool: pool,
		KeyHash: hash, KeyExpires: s.now().Add(ttl),
	})
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "an agent named %q exists already", name)
	}
	if err != nil {
		return nil, storeError(err, "agent")
	}
	return &createdAgentBody{Body: CreatedAgent{Agent: s.agentView(a), Key: key}}, nil
}

// checkAgentText validates a name or pool: 1 to 100 characters, no
// control characters.
func checkAgentText(field, v string) error {
	switch {
	case v == "":
		return invalid(field, "must not be empty")
	case utf8.RuneCountInString(v) > 100:
		return invalid(field, "must be at most 100 characters")
	case strings.ContainsFunc(v, unicode.IsControl):
		return invalid(field, "must not contain control characters")
	}
	return nil
}

func (s *Server) listAgents(ctx context.Context, _ *struct{}) (*agentListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	list, err := as.ListAgents(ctx, teamID)
	if err != nil {
		return nil, storeError(err, "agents")
	}
	out := &agentListBody{Body: AgentList{Agents: make([]Agent, 0, len(list))}}
	for _, a := range list {
		out.Body.Agents = append(out.Body.Agents, s.agentView(a))
	}
	return out, nil
}

func (s *Server) getAgent(ctx context.Context, in *agentID) (*agentBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	a, err := as.GetAgent(ctx, teamID, in.ID)
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("agent %s", in.ID))
	}
	return &agentBody{Body: s.agentView(a)}, nil
}

func (s *Server) rotateAgentKey(ctx context.Context, in *rotateInput) (*rotatedBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	ttl, err := agentlink.KeyTTL(in.KeyTTLDays)
	if err != nil {
		return nil, invalid("key_ttl_days", "%s", err)
	}
	now := s.now()
	key, hash := agentlink.NewKey()
	expires := now.Add(ttl).Truncate(time.Millisecond)
	prev, err := as.RotateAgentKey(ctx, teamID, in.ID, hash, expires, now.Add(time.Duration(in.OverlapHours)*time.Hour))
	if errors.Is(err, store.ErrAgentRevoked) {
		return nil, newError(http.StatusConflict, "conflict", "agent %s is revoked; create a new agent", in.ID)
	}
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("agent %s", in.ID))
	}
	return &rotatedBody{Body: RotatedKey{ID: in.ID, Key: key, KeyExpiresAt: expires, PreviousKeyValidUntil: prev}}, nil
}

func (s *Server) revokeAgent(ctx context.Context, in *agentID) (*agentBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	if err := as.RevokeAgent(ctx, teamID, in.ID, s.now()); err != nil {
		return nil, storeError(err, fmt.Sprintf("agent %s", in.ID))
	}
	s.disconnect(in.ID)
	return s.getAgent(ctx, in)
}

func (s *Server) deleteAgent(ctx context.Context, in *agentID) (*struct{}, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	as := s.store
	if err := as.DeleteAgent(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("agent %s", in.ID))
	}
	s.disconnect(in.ID)
	return nil, nil
}

func (s *Server) agentView(a store.Agent) Agent {
	now := s.now()
	v := Agent{
		ID:           a.ID,
		Name:         a.Name,
		Pool:         a.Pool,
		KeyExpiresAt: a.KeyExpires.UTC(),
		CreatedAt:    a.CreatedAt.UTC(),
		Connected: a.Status.Connected && a.RevokedAt.IsZero() &&
			now.Sub(a.Status.LastSeen) < agentStaleAfter,
		Version:    a.Status.Version,
		Hostname:   a.Status.Hostname,
		Address:    a.Status.Address,
		JobsDone:   a.Status.JobsDone,
		Errors:     a.Status.Errors,
		QueueDepth: a.Status.QueueDepth,
	}
	if len(a.PrevKeyHash) > 0 && a.PrevKeyExpires.After(now) && a.RevokedAt.IsZero() {
		t := a.PrevKeyExpires.UTC()
		v.PreviousKeyValidUntil = &t
	}
	if !a.RevokedAt.IsZero() {
		t := a.RevokedAt.UTC()
		v.RevokedAt = &t
	}
	if !a.Status.LastSeen.IsZero() {
		t := a.Status.LastSeen.UTC()
		v.LastSeen = &t
	}
	return v
}

// disconnect drops a revoked or deleted agent's connection to this replica
// at once; other replicas notice at their next credential re-check.
func (s *Server) disconnect(id string) {
	if s.cfg.Agents != nil {
		s.cfg.Agents.Disconnect(id)
	}
}
