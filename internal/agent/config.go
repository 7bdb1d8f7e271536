// Package agent is the self-hosted agent: it dials out to the certmon
// server over one WebSocket (package agentlink), probes the targets it is
// sent and returns the raw Observations. Results are spooled to disk until
// the server acknowledges them, so a lost connection loses no work.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/certmon/certmon/internal/agentlink"
)

// Defaults used when Config leaves a field zero.
const (
	DefaultConcurrency   = 32
	DefaultSpoolMaxBytes = 64 << 20
	DefaultMaxJobTimeout = 60 * time.Second
	DefaultMinBackoff    = time.Second
	DefaultMaxBackoff    = 60 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	// DefaultMaxQueuedJobs bounds jobs accepted but not finished; beyond it
	// a job is dropped and the server's lease on it expires.
	DefaultMaxQueuedJobs = 4096
	defaultStatusEvery   = 30 * time.Second
	defaultWelcomeWait   = 10 * time.Second
	defaultStableAfter   = 30 * time.Second
	dialTimeout          = 15 * time.Second
	writeTimeout         = 10 * time.Second
	maxIDBytes           = 256
	maxKeyBytes          = 1024
)

// Errors Run stops with instead of retrying.
var (
	// ErrUnauthorized: the server refused the agent ID and key on dial.
	ErrUnauthorized = errors.New("server rejected the agent credentials")
	// ErrRevoked: the server revoked the credentials on an open connection.
	ErrRevoked = errors.New("server revoked the agent credentials")
	// ErrInvalidConfig is wrapped by every Validate error.
	ErrInvalidConfig = errors.New("invalid agent configuration")
)

// Resolver looks up a name's addresses; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

var _ Resolver = (*net.Resolver)(nil)

// Config configures an Agent.
type Config struct {
	// ServerURL is the server's base URL: https://host[:port][/prefix].
	ServerURL string
	AgentID   string
	Key       string
	// RootCAs verify the server's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Insecure allows a plain http:// ServerURL to a non-loopback host.
	// It never disables certificate verification of an https:// URL.
	Insecure bool
	// AllowNetworks, when not empty, is the only address space probes may
	// reach; the server cannot widen it.
	AllowNetworks []netip.Prefix
	// SpoolDir holds results until the server acknowledges them.
	SpoolDir      string
	SpoolMaxBytes int64
	// Concurrency is how many probes run at once.
	Concurrency   int
	MaxQueuedJobs int
	// MaxJobTimeout caps the timeout a job asks for.
	MaxJobTimeout time.Duration
	Logger        *slog.Logger
	// Version and Hostname are announced in Hello.
	Version  string
	Hostname string
	// Resolver resolves target names (nil: net.DefaultResolver).
	Resolver Resolver

	// Timing; zero means the default. Tests shorten them.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout: with nothing received for this long, reconnect.
	IdleTimeout    time.Duration
	WelcomeTimeout time.Duration
	StatusInterval time.Duration
	// StableAfter is how long a connection must last to reset the backoff.
	StableAfter time.Duration
	// ShutdownGrace bounds the wait for running jobs when Run's context
	// ends (default: MaxJobTimeout plus five seconds).
	ShutdownGrace time.Duration
}

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c *Config) Validate() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ServerURL == "" {
		return fail("no server URL")
	}
	if _, err := websocketURL(c.ServerURL, c.Insecure); err != nil {
		return fail("%v", err)
	}
	if c.AgentID == "" {
		return fail("no agent ID")
	}
	if len(c.AgentID) > maxIDBytes || !headerSafe(c.AgentID) {
		return fail("agent ID must be at most %d printable characters without spaces", maxIDBytes)
	}
	if c.Key == "" {
		return fail("no agent key")
	}
	if len(c.Key) > maxKeyBytes || !headerSafe(c.Key) {
		return fail("agent key must be at most %d printable characters without spaces", maxKeyBytes)
	}
	if c.SpoolDir == "" {
		return fail("no spool directory")
	}
	if c.SpoolMaxBytes < 0 || c.Concurrency < 0 || c.MaxQueuedJobs < 0 || c.MaxJobTimeout < 0 {
		return fail("spool size, concurrency, queue and job timeout must not be negative")
	}
	if c.Concurrency > 10000 {
		return fail("concurrency must be at most 10000, got %d", c.Concurrency)
	}
	for _, p := range c.AllowNetworks {
		if !p.IsValid() {
			return fail("invalid allowed network %v", p)
		}
	}
	return nil
}

func (c *Config) withDefaults() Config {
	o := *c
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxQueuedJobs == 0 {
		o.MaxQueuedJobs = DefaultMaxQueuedJobs
	}
	def(&o.MaxJobTimeout, DefaultMaxJobTimeout)
	def(&o.MinBackoff, DefaultMinBackoff)
	def(&o.MaxBackoff, DefaultMaxBackoff)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.WelcomeTimeout, defaultWelcomeWait)
	def(&o.StatusInterval, defaultStatusEvery)
	def(&o.StableAfter, defaultStableAfter)
	def(&o.ShutdownGrace, o.MaxJobTimeout+5*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return o
}

// websocketURL turns the server's base URL into the agent endpoint's
// ws:// or wss:// URL. Plain http:// carries the key in clear text, so it
// is accepted only for loopback hosts or when insecure is set.
func websocketURL(raw string, insecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("server URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		if !insecure && !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("server URL %s is plain http:// to a non-loopback host: the agent key would travel in clear text; use https:// (or --insecure)", u.Redacted())
		}
		u.Scheme = "ws"
	default:
		return "", fmt.Errorf("server URL %q: want https://host[:port]", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("server URL %q has no host", raw)
	}
	if u.User != nil {
		return "", errors.New("server URL must not contain credentials; give the key separately")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("server URL %q must not have a query or fragment", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + agentlink.Path
	u.RawPath = ""
	return u.String(), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// headerSafe: the ID and key go into HTTP headers verbatim.
func headerSafe(s string) bool {
	for _, r := range s {
		if r <= 0x20 || r >= 0x7f {
			return false
		}
	}
	return true
}
