package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/store"
)

// Rule routes events to channels. Every selector that is set must match
// (tags: any of them); an empty selector matches everything.
type Rule struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	Tags       []string  `json:"tags" doc:"monitors with any of these tags; [] matches every monitor and events of no monitor (agents)"`
	Monitors   []int64   `json:"monitors" doc:"these monitors only; [] matches every monitor and events of no monitor (agents)"`
	Severities []string  `json:"severities" doc:"these severities only; [] matches every severity"`
	Events     []string  `json:"events" doc:"these event kinds only; [] matches every kind"`
	Channels   []int64   `json:"channels" doc:"the channels told; a rule without channels tells nobody"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// RuleFields is what POST and PUT take. Omitted selectors match
// everything.
type RuleFields struct {
	Name       string   `json:"name" minLength:"1" maxLength:"100" example:"prod to on-call"`
	Tags       []string `json:"tags,omitempty" maxItems:"100" doc:"monitors with any of these tags; empty or omitted: every monitor, and events of no monitor (agents)"`
	Monitors   []int64  `json:"monitors,omitempty" maxItems:"1000" minimum:"1" doc:"monitor IDs; empty or omitted: every monitor, and events of no monitor (agents)"`
	Severities []string `json:"severities,omitempty" enum:"info,warning,critical" doc:"empty or omitted: every severity"`
	// Events lists monitor.NotifiableKinds(); TestRuleEventKindsInSync
	// keeps the two equal.
	Events   []string `json:"events,omitempty" enum:"expiry_reminder,expired,invalid,unreachable,recovered,certificate_changed,agent_offline,agent_online,agent_key_expiring" doc:"event kinds; empty or omitted: every kind"`
	Channels []int64  `json:"channels,omitempty" maxItems:"100" minimum:"1" doc:"IDs of channels of this team to tell"`
}

// RuleList is a team's rules, by name.
type RuleList struct {
	Rules []Rule `json:"rules"`
}

type ruleBody struct{ Body Rule }

type ruleListBody struct{ Body RuleList }

type ruleID struct {
	ID int64 `path:"id" minimum:"1"`
}

type createRuleInput struct {
	Body RuleFields
}

type replaceRuleInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body RuleFields
}

func (s *Server) createRule(ctx context.Context, in *createRuleInput) (*ruleBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.checkRule(ctx, teamID, in.Body)
	if err != nil {
		return nil, err
	}
	r.TeamID = teamID
	got, err := s.store.CreateRule(ctx, r)
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a rule named %q exists already", r.Name)
	}
	if err != nil {
		return nil, storeError(err, "rule")
	}
	return &ruleBody{Body: ruleView(got)}, nil
}

func (s *Server) listRules(ctx context.Context, _ *struct{}) (*ruleListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.store.ListRules(ctx, teamID)
	if err != nil {
		return nil, storeError(err, "rules")
	}
	return &ruleListBody{Body: RuleList{Rules: mapSlice(list, ruleView)}}, nil
}

func (s *Server) getRule(ctx context.Context, in *ruleID) (*ruleBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.store.GetRule(ctx, teamID, in.ID)
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("rule %d", in.ID))
	}
	return &ruleBody{Body: ruleView(r)}, nil
}

func (s *Server) replaceRule(ctx context.Context, in *replaceRuleInput) (*ruleBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	// 404 before 400: a rule that does not exist has nothing to validate.
	if _, err := s.store.GetRule(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("rule %d", in.ID))
	}
	r, err := s.checkRule(ctx, teamID, in.Body)
	if err != nil {
		return nil, err
	}
	r.ID, r.TeamID = in.ID, teamID
	got, err := s.store.UpdateRule(ctx, r)
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a rule named %q exists already", r.Name)
	}
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("rule %d", in.ID))
	}
	return &ruleBody{Body: ruleView(got)}, nil
}

func (s *Server) deleteRule(ctx context.Context, in *ruleID) (*struct{}, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteRule(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("rule %d", in.ID))
	}
	return nil, nil
}

// checkRule validates a body: lists trimmed and deduplicated, event kinds
// known, and every channel one of the team's.
func (s *Server) checkRule(ctx context.Context, teamID int64, f RuleFields) (store.Rule, error) {
	r := store.Rule{Name: strings.TrimSpace(f.Name)}
	if err := checkAgentText("name", r.Name); err != nil {
		return r, err
	}
	var err error
	if r.Tags, err = cleanList("tags", f.Tags); err != nil {
		return r, err
	}
	if r.Severities, err = cleanList("severities", f.Severities); err != nil {
		return r, err
	}
	for i, v := range r.Severities {
		if !slices.Contains([]string{"info", "warning", "critical"}, v) {
			return r, invalid(fmt.Sprintf("severities[%d]", i), "%q is not info, warning or critical", v)
		}
	}
	if r.Events, err = checkKinds("events", f.Events); err != nil {
		return r, err
	}
	if r.Monitors, err = cleanIDs("monitors", f.Monitors); err != nil {
		return r, err
	}
	if r.Channels, err = cleanIDs("channels", f.Channels); err != nil {
		return r, err
	}
	for i, id := range f.Channels {
		if _, err := s.store.GetChannel(ctx, teamID, id); errors.Is(err, store.ErrNotFound) {
			return r, invalid(fmt.Sprintf("channels[%d]", i), "channel %d does not exist", id)
		} else if err != nil {
			return r, storeError(err, "channel")
		}
	}
	return r, nil
}

// checkKinds cleans a list of event kinds and rejects unknown ones.
func checkKinds(field string, in []string) ([]string, error) {
	kinds, err := cleanList(field, in)
	if err != nil {
		return nil, err
	}
	known := monitor.NotifiableKinds()
	for i, k := range kinds {
		if !slices.Contains(known, k) {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "unknown event kind %q (known: %s)", k, strings.Join(known, ", "))
		}
	}
	return kinds, nil
}

// cleanIDs rejects IDs below 1 and drops duplicates.
func cleanIDs(field string, in []int64) ([]int64, error) {
	out := make([]int64, 0, len(in))
	for i, id := range in {
		if id < 1 {
			return nil, invalid(fmt.Sprintf("%s[%d]", field, i), "must be >= 1")
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func ruleView(r store.Rule) Rule {
	return Rule{
		ID:         r.ID,
		Name:       r.Name,
		Tags:       orEmpty(r.Tags),
		Monitors:   orEmpty(r.Monitors),
		Severities: orEmpty(r.Severities),
		Events:     orEmpty(r.Events),
		Channels:   orEmpty(r.Channels),
		CreatedAt:  r.CreatedAt.UTC().Truncate(time.Second),
		UpdatedAt:  r.UpdatedAt.UTC().Truncate(time.Second),
	}
}
