package notify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Channel types.
const (
	TypeEmail   = "email"
	TypeTeams   = "teams"
	TypeSlack   = "slack"
	TypeWebhook = "webhook"
)

// TLS modes of an email channel.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
	TLSNone     = "none"
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

// DefaultSendTimeout bounds a send when SenderOptions.Timeout is zero.
const DefaultSendTimeout = 30 * time.Second

// Limits on settings: generous for real use, small enough that a
// malicious config cannot make us hold or send megabytes.
const (
	maxRecipients = 100
	maxFieldLen   = 1024
	maxURLLen     = 2048
)

// Masked is what the API shows instead of a password or signing secret.
const Masked = "********"

// Validate checks cfg for a channel of type typ and fills defaults.
// Its errors are plain sentences meant for the API's users; they never
// repeat a secret.
func (c *ChannelConfig) Validate(typ string) error {
	switch typ {
	case TypeEmail:
		return c.validateEmail()
	case TypeTeams, TypeSlack, TypeWebhook:
		return c.validateHTTP(typ)
	case "":
		return errors.New("channel type is required (email, teams, slack or webhook)")
	}
	return fmt.Errorf("unknown channel type %q (email, teams, slack or webhook)", clip(oneLine(typ), 40))
}

func (c *ChannelConfig) validateEmail() error {
	if c.URL != "" {
		return notASetting("url", TypeEmail)
	}
	if c.Secret != "" {
		return notASetting("secret", TypeEmail)
	}
	c.Host = strings.TrimSpace(c.Host)
	if c.Host == "" {
		return errors.New("host is required")
	}
	if h := strings.TrimSuffix(strings.TrimPrefix(c.Host, "["), "]"); h != c.Host {
		if net.ParseIP(h) == nil {
			return errors.New("host is not a valid host name or IP address")
		}
		c.Host = h // net.JoinHostPort adds the brackets back
	}
	if !validHost(c.Host) {
		return errors.New("host is not a valid host name or IP address")
	}

	c.TLS = strings.ToLower(strings.TrimSpace(c.TLS))
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return errors.New(`tls must be "starttls", "tls" or "none"`)
	}
	switch {
	case c.Port == 0 && c.TLS == TLSImplicit:
		c.Port = 465
	case c.Port == 0:
		c.Port = 587
	case c.Port < 1 || c.Port > 65535:
		return errors.New("port must be between 1 and 65535")
	}

	if c.Password != "" && c.Username == "" {
		return errors.New("password is set but username is not")
	}
	if len(c.Username) > maxFieldLen || len(c.Password) > maxFieldLen {
		return fmt.Errorf("username and password must be at most %d characters", maxFieldLen)
	}
	if strings.ContainsAny(c.Username, "\r\n\x00") || strings.ContainsAny(c.Password, "\r\n\x00") {
		return errors.New("username and password must not contain line breaks or NUL characters")
	}
	// The client refuses to send a password in clear anyway (except to
	// the local machine); saying so here beats a failure at send time.
	if c.Username != "" && c.TLS == TLSNone && !isLoopbackHost(c.Host) {
		return errors.New(`username needs tls "starttls" or "tls": the password would cross the network in clear`)
	}

	c.From = strings.TrimSpace(c.From)
	if c.From == "" {
		return errors.New("from is required")
	}
	if err := checkAddress(c.From); err != nil {
		return fmt.Errorf("from is not a valid email address: %v", err)
	}
	if len(c.To) == 0 {
		return errors.New("to needs at least one address")
	}
	if len(c.To) > maxRecipients {
		return fmt.Errorf("to has %d addresses; at most %d are allowed", len(c.To), maxRecipients)
	}
	for i, a := range c.To {
		a = strings.TrimSpace(a)
		if a == "" {
			return fmt.Errorf("to[%d] is empty", i)
		}
		if err := checkAddress(a); err != nil {
			return fmt.Errorf("to[%d] is not a valid email address: %v", i, err)
		}
		c.To[i] = a
	}
	return nil
}

// checkAddress accepts one RFC 5322 address ("a@b.c" or "Name <a@b.c>");
// its error quotes the address (not a secret) but no more than a line.
func checkAddress(s string) error {
	if len(s) > maxFieldLen {
		return errors.New("too long")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%q", clip(oneLine(s), 100))
	}
	if !strings.Contains(a.Address, "@") {
		return fmt.Errorf("%q has no domain", clip(oneLine(s), 100))
	}
	return nil
}

func (c *ChannelConfig) validateHTTP(typ string) error {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"host", c.Host != ""}, {"port", c.Port != 0}, {"tls", c.TLS != ""},
		{"username", c.Username != ""}, {"password", c.Password != ""},
		{"from", c.From != ""}, {"to", len(c.To) > 0},
		{"secret", c.Secret != "" && typ != TypeWebhook},
	} {
		if f.set {
			return notASetting(f.name, typ)
		}
	}
	c.URL = strings.TrimSpace(c.URL)
	if c.URL == "" {
		return errors.New("url is required")
	}
	if len(c.URL) > maxURLLen {
		return fmt.Errorf("url must be at most %d characters", maxURLLen)
	}
	// The URL is the credential: no error below quotes it.
	u, err := url.Parse(c.URL)
	if err != nil {
		return errors.New("url is not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("url must start with https:// (or http://)")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("url has no host")
	}
	if p := u.Port(); p != "" && (len(p) > 5 || portNumber(p) < 1 || portNumber(p) > 65535) {
		return errors.New("url has an invalid port")
	}
	if len(c.Secret) > maxFieldLen {
		return fmt.Errorf("secret must be at most %d characters", maxFieldLen)
	}
	return nil
}

func notASetting(field, typ string) error {
	article := "a"
	if typ == TypeEmail {
		article = "an"
	}
	return fmt.Errorf("%s is not a setting of %s %s channel", field, article, typ)
}

func portNumber(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return -1
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// validHost accepts an IP address or something shaped like a DNS name.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Redacted is cfg as the API shows it: secrets masked, never in full.
// Only the fields of typ appear, and only those that are set.
func (c ChannelConfig) Redacted(typ string) map[string]any {
	out := map[string]any{}
	put := func(k string, v string) {
		if v != "" {
			out[k] = v
		}
	}
	switch typ {
	case TypeEmail:
		put("host", c.Host)
		if c.Port != 0 {
			out["port"] = c.Port
		}
		put("tls", c.TLS)
		put("username", c.Username)
		if c.Password != "" {
			out["password"] = Masked
		}
		put("from", c.From)
		if len(c.To) > 0 {
			out["to"] = append([]string(nil), c.To...)
		}
	case TypeTeams, TypeSlack, TypeWebhook:
		put("url", RedactURL(c.URL))
		if typ == TypeWebhook && c.Secret != "" {
			out["secret"] = Masked
		}
	}
	return out
}

// RedactURL shows a secret URL as scheme://host/… plus its last four
// characters, enough to tell two webhooks apart and no more. A short
// path gets no suffix: four characters of it would be most of it.
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return Masked
	}
	if !strings.HasPrefix(strings.ToLower(raw), u.Scheme+"://") {
		return Masked
	}
	head := u.Scheme + "://" + u.Host + "/"
	// rest is all after the authority (which may carry user:password@).
	after, rest := raw[len(u.Scheme)+3:], ""
	if end := strings.IndexAny(after, "/?#"); end >= 0 {
		rest = strings.TrimPrefix(after[end:], "/")
	}
	switch {
	case rest == "":
		return head
	case utf8.RuneCountInString(rest) < 12:
		return head + "…"
	}
	r := []rune(rest)
	return head + "…" + string(r[len(r)-4:])
}

// KeepSecrets prepares an update: where c leaves a secret empty or sends
// back exactly the masked form the API showed, the old value stays. A
// password is only kept while a username is set, so clearing the
// username turns authentication off.
func (c *ChannelConfig) KeepSecrets(typ string, old ChannelConfig) {
	switch typ {
	case TypeEmail:
		if c.Username != "" && (c.Password == "" || c.Password == Masked) {
			c.Password = old.Password
		}
	case TypeTeams, TypeSlack, TypeWebhook:
		if c.URL == "" || (old.URL != "" && c.URL == RedactURL(old.URL)) {
			c.URL = old.URL
		}
		if typ == TypeWebhook && (c.Secret == "" || c.Secret == Masked) {
			c.Secret = old.Secret
		}
	}
}

// NewSender returns the sender of a channel. It validates a copy of cfg
// first, so a sender never runs on settings the API would refuse.
func NewSender(typ string, cfg ChannelConfig, opt SenderOptions) (Sender, error) {
	cfg.To = append([]string(nil), cfg.To...)
	if err := cfg.Validate(typ); err != nil {
		return nil, err
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultSendTimeout
	}
	switch typ {
	case TypeEmail:
		return newEmailSender(cfg, opt), nil
	case TypeTeams:
		return &teamsSender{post: newPoster(cfg.URL, opt), opt: opt}, nil
	case TypeSlack:
		return &slackSender{post: newPoster(cfg.URL, opt), opt: opt}, nil
	case TypeWebhook:
		return &webhookSender{post: newPoster(cfg.URL, opt), secret: cfg.Secret, now: time.Now}, nil
	}
	return nil, fmt.Errorf("unknown channel type %q", typ)
}
