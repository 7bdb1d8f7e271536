package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/store"
)

// DestinationStore is what StoreDestinations reads.
type DestinationStore interface {
	GetChannel(ctx context.Context, teamID, id int64) (store.Channel, error)
	NotifySettingsFor(ctx context.Context, teamID int64, email string) (store.NotifySettings, error)
}

// Opener opens sealed channel configurations (package secret's Box).
type Opener interface {
	Open(sealed string) ([]byte, error)
}

// StoreDestinations resolves channels from the store (configs sealed at
// rest) and recipient addresses through the server's SMTP settings.
type StoreDestinations struct {
	Store   DestinationStore
	Secrets Opener
	Options SenderOptions
	// SMTP sends to monitors' recipients; nil when no mail server is set.
	SMTP *ChannelConfig

	mu    sync.Mutex
	cache map[int64]cachedSender
}

type cachedSender struct {
	updated time.Time
	sender  Sender
}

// Channel returns the channel's sender, reusing it while the channel is
// unchanged.
func (d *StoreDestinations) Channel(ctx context.Context, teamID, channelID int64) (Sender, error) {
	ch, err := d.Store.GetChannel(ctx, teamID, channelID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrGone
	}
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if c, ok := d.cache[channelID]; ok && c.updated.Equal(ch.UpdatedAt) {
		d.mu.Unlock()
		return c.sender, nil
	}
	d.mu.Unlock()
	cfg, err := OpenChannelConfig(d.Secrets, ch)
	if err != nil {
		return nil, err
	}
	s, err := NewSender(ch.Type, cfg, d.Options)
	if err != nil {
		return nil, &SendError{Permanent: true, Err: fmt.Errorf("channel %q: %w", ch.Name, err)}
	}
	d.mu.Lock()
	if d.cache == nil {
		d.cache = map[int64]cachedSender{}
	}
	d.cache[channelID] = cachedSender{ch.UpdatedAt, s}
	d.mu.Unlock()
	return s, nil
}

// Address returns an email sender to one recipient and their settings.
func (d *StoreDestinations) Address(ctx context.Context, teamID int64, address string) (Sender, store.NotifySettings, error) {
	settings, err := d.Store.NotifySettingsFor(ctx, teamID, address)
	if err != nil {
		return nil, settings, err
	}
	if d.SMTP == nil || d.SMTP.Host == "" {
		return nil, settings, &SendError{Permanent: true, Err: errors.New("notifications.smtp.host is not set: recipients cannot be emailed")}
	}
	cfg := *d.SMTP
	cfg.To = []string{address}
	s, err := NewSender(TypeEmail, cfg, d.Options)
	if err != nil {
		return nil, settings, &SendError{Permanent: true, Err: err}
	}
	return s, settings, nil
}

// OpenChannelConfig unseals and decodes a stored channel's settings.
func OpenChannelConfig(secrets Opener, ch store.Channel) (ChannelConfig, error) {
	var cfg ChannelConfig
	if secrets == nil {
		return cfg, errors.New("notifications.secret_key is not set: channel settings cannot be read")
	}
	plain, err := secrets.Open(ch.Config)
	if err != nil {
		return cfg, fmt.Errorf("channel %q: %w", ch.Name, err)
	}
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return cfg, fmt.Errorf("channel %q: %w", ch.Name, err)
	}
	return cfg, nil
}
