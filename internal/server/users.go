package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/store"
)

// User is a person who gets email, and how.
type User struct {
	ID            int64                `json:"id"`
	Email         string               `json:"email"`
	Name          string               `json:"name"`
	Notifications NotificationSettings `json:"notifications"`
	CreatedAt     time.Time            `json:"created_at"`
	UpdatedAt     time.Time            `json:"updated_at"`
}

// NotificationSettings are a user's email preferences as shown.
type NotificationSettings struct {
	Mode       string   `json:"mode" enum:"immediate,digest"`
	DigestAt   string   `json:"digest_at" doc:"HH:MM in time_zone when mode is digest; empty otherwise"`
	Events     []string `json:"events" doc:"event kinds wanted; [] is all"`
	QuietStart string   `json:"quiet_start" doc:"HH:MM; empty without quiet hours"`
	QuietEnd   string   `json:"quiet_end" doc:"HH:MM; empty without quiet hours"`
	TimeZone   string   `json:"time_zone" doc:"IANA time zone of digest_at and the quiet hours"`
}

// UserFields is what POST and PUT take.
type UserFields struct {
	Email         string              `json:"email" minLength:"3" maxLength:"254" example:"ops@example.com"`
	Name          string              `json:"name,omitempty" maxLength:"100"`
	Notifications *NotificationFields `json:"notifications,omitempty" doc:"omitted: immediate email of every event kind, UTC"`
}

// NotificationFields are the settings a client sends; omitted fields get
// the defaults.
type NotificationFields struct {
	Mode       string   `json:"mode,omitempty" enum:"immediate,digest" doc:"immediate (default): one email per event; digest: one email a day at digest_at"`
	DigestAt   string   `json:"digest_at,omitempty" doc:"HH:MM (24 h) in time_zone; default 08:00 in digest mode" example:"08:00"`
	Events     []string `json:"events,omitempty" enum:"expiry_reminder,expired,invalid,unreachable,recovered,certificate_changed,agent_offline,agent_online,agent_key_expiring" doc:"event kinds wanted; empty or omitted: all"`
	QuietStart string   `json:"quiet_start,omitempty" doc:"HH:MM; immediate email is held from quiet_start to quiet_end and sent grouped at quiet_end. Set both or neither" example:"22:00"`
	QuietEnd   string   `json:"quiet_end,omitempty" doc:"HH:MM; see quiet_start" example:"07:00"`
	TimeZone   string   `json:"time_zone,omitempty" doc:"IANA time zone, default UTC" example:"Europe/Berlin"`
}

// UserList is a team's users, by address.
type UserList struct {
	Users []User `json:"users"`
}

type userBody struct{ Body User }

type userListBody struct{ Body UserList }

type userID struct {
	ID int64 `path:"id" minimum:"1"`
}

type createUserInput struct {
	Body UserFields
}

type replaceUserInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body UserFields
}

func (s *Server) createUser(ctx context.Context, in *createUserInput) (*userBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	u, err := checkUser(in.Body)
	if err != nil {
		return nil, err
	}
	u.TeamID = teamID
	got, err := s.store.CreateUser(ctx, u)
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a user with email %q exists already", u.Email)
	}
	if err != nil {
		return nil, storeError(err, "user")
	}
	return &userBody{Body: userView(got)}, nil
}

func (s *Server) listUsers(ctx context.Context, _ *struct{}) (*userListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.store.ListUsers(ctx, teamID)
	if err != nil {
		return nil, storeError(err, "users")
	}
	return &userListBody{Body: UserList{Users: mapSlice(list, userView)}}, nil
}

func (s *Server) getUser(ctx context.Context, in *userID) (*userBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	u, err := s.store.GetUser(ctx, teamID, in.ID)
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("user %d", in.ID))
	}
	return &userBody{Body: userView(u)}, nil
}

func (s *Server) replaceUser(ctx context.Context, in *replaceUserInput) (*userBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.GetUser(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("user %d", in.ID))
	}
	u, err := checkUser(in.Body)
	if err != nil {
		return nil, err
	}
	u.ID, u.TeamID = in.ID, teamID
	got, err := s.store.UpdateUser(ctx, u)
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a user with email %q exists already", u.Email)
	}
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("user %d", in.ID))
	}
	return &userBody{Body: userView(got)}, nil
}

func (s *Server) deleteUser(ctx context.Context, in *userID) (*struct{}, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteUser(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("user %d", in.ID))
	}
	return nil, nil
}

// checkUser validates a body and fills the defaults, so what is stored
// reads back as shown.
func checkUser(f UserFields) (store.User, error) {
	email, err := checkEmail(f.Email)
	if err != nil {
		return store.User{}, err
	}
	name := strings.TrimSpace(f.Name)
	if name != "" {
		if err := checkAgentText("name", name); err != nil {
			return store.User{}, err
		}
	}
	var n NotificationFields
	if f.Notifications != nil {
		n = *f.Notifications
	}
	set := store.NotifySettings{
		Mode:       strings.TrimSpace(n.Mode),
		DigestAt:   strings.TrimSpace(n.DigestAt),
		QuietStart: strings.TrimSpace(n.QuietStart),
		QuietEnd:   strings.TrimSpace(n.QuietEnd),
		TimeZone:   strings.TrimSpace(n.TimeZone),
	}
	if set.Events, err = checkKinds("notifications.events", n.Events); err != nil {
		return store.User{}, err
	}
	if len(set.Events) == 0 {
		set.Events = nil
	}
	if err := notify.ValidateSettings(set, monitor.NotifiableKinds()); err != nil {
		// Its messages name the field: "notifications.digest_at: ...".
		return store.User{}, newError(http.StatusBadRequest, "invalid_field", "%v", err)
	}
	if set.Mode == "" {
		set.Mode = notify.ModeImmediate
	}
	if set.Mode == notify.ModeDigest && set.DigestAt == "" {
		set.DigestAt = notify.DefaultDigestAt
	}
	if set.TimeZone == "" {
		set.TimeZone = "UTC"
	}
	set.DigestAt, set.QuietStart, set.QuietEnd = twoDigitHour(set.DigestAt), twoDigitHour(set.QuietStart), twoDigitHour(set.QuietEnd)
	return store.User{Email: email, Name: name, Settings: set}, nil
}

// checkEmail accepts a bare address (no display name) and lowercases it:
// monitors' recipients are matched against it, lowercased too.
func checkEmail(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", invalid("email", "required")
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Name != "" || a.Address != v {
		return "", invalid("email", "%q is not an email address such as ops@example.com", clip(v, 100))
	}
	local, domain, ok := strings.Cut(a.Address, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(a.Address, " \t<>,;\"") {
		return "", invalid("email", "%q is not an email address such as ops@example.com", clip(v, 100))
	}
	return strings.ToLower(a.Address), nil
}

// twoDigitHour writes "7:30" as "07:30"; ValidateSettings accepted both.
func twoDigitHour(hhmm string) string {
	if len(hhmm) == 4 {
		return "0" + hhmm
	}
	return hhmm
}

// clip shortens a value echoed in an error message.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

func userView(u store.User) User {
	set := u.Settings
	return User{
		ID:    u.ID,
		Email: u.Email,
		Name:  u.Name,
		Notifications: NotificationSettings{
			Mode:       set.Mode,
			DigestAt:   set.DigestAt,
			Events:     orEmpty(set.Events),
			QuietStart: set.QuietStart,
			QuietEnd:   set.QuietEnd,
			TimeZone:   set.TimeZone,
		},
		CreatedAt: u.CreatedAt.UTC().Truncate(time.Second),
		UpdatedAt: u.UpdatedAt.UTC().Truncate(time.Second),
	}
}
