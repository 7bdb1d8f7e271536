package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/store"
)

// Channel is a notification channel as the API shows it: its secrets
// (password, webhook URL, signing secret) are masked, never shown in full.
type Channel struct {
	ID        int64          `json:"id"`
	Name      string         `json:"name"`
	Type      string         `json:"type" enum:"email,teams,slack,webhook"`
	Config    map[string]any `json:"config" doc:"the type's settings with secrets masked; send the masked values back unchanged (or leave them out) to keep the stored secrets. null when the server cannot decrypt them (notifications.secret_key missing or changed)"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// ChannelFields is what POST and PUT take.
type ChannelFields struct {
	Name string `json:"name" minLength:"1" maxLength:"100" example:"ops-slack"`
	Type string `json:"type" enum:"email,teams,slack,webhook"`
	// Config is validated per type by package notify.
	Config notify.ChannelConfig `json:"config" doc:"email: host, port, tls (starttls, tls, none), username, password, from, to[]; teams and slack: url (the incoming webhook URL); webhook: url and an optional secret (HMAC-SHA256 signing key)"`
}

// ChannelList is a team's channels, by name.
type ChannelList struct {
	Channels []Channel `json:"channels"`
}

// ChannelTest is the receiver's answer to a test message.
type ChannelTest struct {
	OK    bool   `json:"ok" doc:"the receiver accepted the message"`
	Code  int    `json:"code" doc:"the receiver's HTTP status or SMTP reply code; 0 when it did not answer"`
	Body  string `json:"body" doc:"the start of the receiver's reply"`
	Error string `json:"error" doc:"why the send failed; empty when ok"`
}

type channelBody struct{ Body Channel }

type channelListBody struct{ Body ChannelList }

type channelTestBody struct{ Body ChannelTest }

type channelID struct {
	ID int64 `path:"id" minimum:"1"`
}

type createChannelInput struct {
	Body ChannelFields
}

type replaceChannelInput struct {
	ID   int64 `path:"id" minimum:"1"`
	Body ChannelFields
}

// secretsUnavailable answers when the server has no key to seal with.
func secretsUnavailable() *Error {
	return newError(http.StatusServiceUnavailable, "secrets_unavailable",
		"channel settings cannot be encrypted: notifications.secret_key must be set in the server configuration")
}

func (s *Server) createChannel(ctx context.Context, in *createChannelInput) (*channelBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if s.cfg.Secrets == nil {
		return nil, secretsUnavailable()
	}
	name, cfg, err := checkChannel(in.Body)
	if err != nil {
		return nil, err
	}
	sealed, err := s.sealConfig(cfg)
	if err != nil {
		return nil, err
	}
	c, err := s.store.CreateChannel(ctx, store.Channel{TeamID: teamID, Name: name, Type: in.Body.Type, Config: sealed})
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a channel named %q exists already", name)
	}
	if err != nil {
		return nil, storeError(err, "channel")
	}
	return &channelBody{Body: channelView(c, cfg)}, nil
}

func (s *Server) listChannels(ctx context.Context, _ *struct{}) (*channelListBody, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	list, err := s.store.ListChannels(ctx, teamID)
	if err != nil {
		return nil, storeError(err, "channels")
	}
	view := func(c store.Channel) Channel { return s.viewStored(ctx, c) }
	return &channelListBody{Body: ChannelList{Channels: mapSlice(list, view)}}, nil
}

func (s *Server) getChannel(ctx context.Context, in *channelID) (*channelBody, error) {
	c, err := s.loadChannel(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	return &channelBody{Body: s.viewStored(ctx, c)}, nil
}

func (s *Server) replaceChannel(ctx context.Context, in *replaceChannelInput) (*channelBody, error) {
	if s.cfg.Secrets == nil {
		return nil, secretsUnavailable()
	}
	old, err := s.loadChannel(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	f := in.Body
	// Secrets the client left out, or sent back masked, stay; KeepSecrets
	// copies only the fields of the new type, so a type change keeps a
	// webhook URL but never turns one type's secret into another's. A
	// config that no longer opens (the key changed) keeps nothing: the
	// client must send the secrets again, and Validate says so.
	if prev, err := s.openConfig(old); err == nil {
		f.Config.KeepSecrets(f.Type, prev)
	} else {
		noteCause(ctx, err)
	}
	name, cfg, err := checkChannel(f)
	if err != nil {
		return nil, err
	}
	sealed, err := s.sealConfig(cfg)
	if err != nil {
		return nil, err
	}
	c, err := s.store.UpdateChannel(ctx, store.Channel{ID: old.ID, TeamID: old.TeamID, Name: name, Type: f.Type, Config: sealed})
	if errors.Is(err, store.ErrConflict) {
		return nil, newError(http.StatusConflict, "conflict", "a channel named %q exists already", name)
	}
	if err != nil {
		return nil, storeError(err, fmt.Sprintf("channel %d", in.ID))
	}
	return &channelBody{Body: channelView(c, cfg)}, nil
}

func (s *Server) deleteChannel(ctx context.Context, in *channelID) (*struct{}, error) {
	teamID, err := team(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.store.DeleteChannel(ctx, teamID, in.ID); err != nil {
		return nil, storeError(err, fmt.Sprintf("channel %d", in.ID))
	}
	return nil, nil
}

// testChannel sends a test message and reports what the receiver said.
// A receiver that refuses or cannot be reached is the answer the user
// asked for, so it is a 200 with ok false, not an error of this API.
func (s *Server) testChannel(ctx context.Context, in *channelID) (*channelTestBody, error) {
	if s.cfg.Secrets == nil {
		return nil, secretsUnavailable()
	}
	c, err := s.loadChannel(ctx, in.ID)
	if err != nil {
		return nil, err
	}
	cfg, err := s.openConfig(c)
	if err != nil {
		e := newError(http.StatusConflict, "secrets_unreadable",
			"channel %d's settings cannot be decrypted (was notifications.secret_key changed?); replace the channel's config", c.ID)
		e.cause = err
		return nil, e
	}
	out := &channelTestBody{}
	sender, err := notify.NewSender(c.Type, cfg, s.cfg.SenderOptions)
	if err != nil {
		out.Body.Error = scrubSecrets(err.Error(), cfg)
		return out, nil
	}
	timeout := s.cfg.SenderOptions.Timeout
	if timeout <= 0 {
		timeout = notify.DefaultSendTimeout
	}
	// A little over the sender's own bound, which should fire first
	// and say which step timed out.
	sendCtx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	ans, err := sender.Send(sendCtx, testMessage(c, s.now()))
	var se *notify.SendError
	if err != nil && errors.As(err, &se) && ans.Code == 0 {
		ans = se.Answer
	}
	out.Body = ChannelTest{OK: err == nil, Code: ans.Code, Body: scrubSecrets(ans.Body, cfg)}
	if err != nil {
		out.Body.Error = scrubSecrets(err.Error(), cfg)
	}
	return out, nil
}

// testMessage is what "send a test message" sends: one item of kind
// "test", with a key of its own so receivers that drop repeats do not
// drop the second test.
func testMessage(c store.Channel, now time.Time) notify.Message {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	key := "test_" + hex.EncodeToString(b[:])
	return notify.Message{
		Key:  key,
		Test: true,
		Items: []notify.Item{{
			Key:      key,
			Kind:     "test",
			Severity: "info",
			At:       now,
			Text:     fmt.Sprintf("Test message from certmon: channel %q works. Certificate alerts will arrive here.", c.Name),
		}},
	}
}

// scrubSecrets masks the channel's secrets in a text meant for the
// client (errors and the receiver's reply): senders should never quote
// them, and this makes sure.
func scrubSecrets(text string, cfg notify.ChannelConfig) string {
	if cfg.URL != "" {
		text = strings.ReplaceAll(text, cfg.URL, notify.RedactURL(cfg.URL))
	}
	for _, v := range []string{cfg.Password, cfg.Secret} {
		if v != "" {
			text = strings.ReplaceAll(text, v, notify.Masked)
		}
	}
	return text
}

// checkChannel validates a POST or PUT body, returning the trimmed name
// and the config with its defaults filled.
func checkChannel(f ChannelFields) (string, notify.ChannelConfig, error) {
	name := strings.TrimSpace(f.Name)
	if err := checkAgentText("name", name); err != nil {
		return "", notify.ChannelConfig{}, err
	}
	cfg := f.Config
	cfg.To = append([]string(nil), cfg.To...)
	if err := cfg.Validate(f.Type); err != nil {
		return "", notify.ChannelConfig{}, invalid("config", "%v", err)
	}
	return name, cfg, nil
}

func (s *Server) sealConfig(cfg notify.ChannelConfig) (string, error) {
	plain, err := json.Marshal(cfg)
	if err != nil {
		return "", internal(err)
	}
	sealed, err := s.cfg.Secrets.Seal(plain)
	if err != nil {
		return "", internal(err)
	}
	return sealed, nil
}

// openConfig reads a stored channel's settings.
func (s *Server) openConfig(c store.Channel) (notify.ChannelConfig, error) {
	var secrets notify.Opener
	if s.cfg.Secrets != nil {
		secrets = s.cfg.Secrets
	}
	return notify.OpenChannelConfig(secrets, c)
}

func (s *Server) loadChannel(ctx context.Context, id int64) (store.Channel, error) {
	teamID, err := team(ctx)
	if err != nil {
		return store.Channel{}, err
	}
	c, err := s.store.GetChannel(ctx, teamID, id)
	if err != nil {
		return store.Channel{}, storeError(err, fmt.Sprintf("channel %d", id))
	}
	return c, nil
}

// viewStored renders a stored channel; a config that does not open is
// shown as null (and logged) rather than failing the whole list.
func (s *Server) viewStored(ctx context.Context, c store.Channel) Channel {
	cfg, err := s.openConfig(c)
	if err != nil {
		noteCause(ctx, fmt.Errorf("channel %d: %w", c.ID, err))
		v := channelView(c, notify.ChannelConfig{})
		v.Config = nil
		return v
	}
	return channelView(c, cfg)
}

func channelView(c store.Channel, cfg notify.ChannelConfig) Channel {
	return Channel{
		ID:        c.ID,
		Name:      c.Name,
		Type:      c.Type,
		Config:    cfg.Redacted(c.Type),
		CreatedAt: c.CreatedAt.UTC().Truncate(time.Second),
		UpdatedAt: c.UpdatedAt.UTC().Truncate(time.Second),
	}
}
