package notify

import (
	"crypto/x509"
	"errors"
	"net"
	"time"
)

// Channel types.
const (
	TypeEmail   = "email"
	TypeTeams   = "teams"
	TypeSlack   = "slack"
	TypeWebhook = "webhook"
)

// ChannelConfig is a channel's settings, secrets in clear. Which fields
// apply depends on the type; the API's `config` object has these names.
type ChannelConfig struct {
	// email
	Host     string   `json:"host,omitempty"`
	Port     int      `json:"port,omitempty"`
	TLS      string   `json:"tls,omitempty"` // starttls (default), tls (implicit), none
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"` // secret
	From     string   `json:"from,omitempty"`
	To       []string `json:"to,omitempty"`
	// teams, slack, webhook: the URL is a secret (it is the credential)
	URL string `json:"url,omitempty"`
	// webhook: HMAC-SHA256 key of the signature header
	Secret string `json:"secret,omitempty"`
}

// SenderOptions are the server-wide settings of every sender.
type SenderOptions struct {
	// Timeout bounds one send: connect, TLS, request and answer.
	Timeout time.Duration
	// RootCAs verifies mail servers and webhook receivers (nil: system).
	RootCAs *x509.CertPool
	// Dialer dials every connection (tests, proxies); nil: net.Dialer.
	Dialer *net.Dialer
	// BaseURL of the certmon server, for links.
	BaseURL string
}

// Validate checks cfg for a channel of type typ and fills defaults.
func (c *ChannelConfig) Validate(typ string) error {
	return errors.New("notify: channel config validation not implemented yet")
}

// Redacted is cfg as the API shows it: secrets masked, never in full.
func (c ChannelConfig) Redacted(typ string) map[string]any {
	return nil
}

// NewSender returns the sender of a channel.
func NewSender(typ string, cfg ChannelConfig, opt SenderOptions) (Sender, error) {
	return nil, errors.New("notify: senders not implemented yet")
}
