// Package server is certmon's HTTP face: the REST API under /api/v1 (its
// OpenAPI document generated from the Go types by huma), health and
// readiness probes, and Prometheus metrics.
package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmon/certmon/internal/auth"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/secret"
)

// Waker is told when a monitor became due at once (created, resumed,
// check-now), so the scheduler claims it within seconds instead of at its
// next poll.
type Waker interface {
	Wake()
}

// Config holds what a Server needs.
type Config struct {
	Store Store
	// Waker may be nil (no scheduler in this process).
	Waker Waker
	// Agents, when set, is told to drop the connection of an agent that
	// is revoked or deleted through the API (the agent hub).
	Agents interface{ Disconnect(agentID string) }
	// DefaultSchedule, WarnDays and CritDays apply to monitors created
	// without them.
	DefaultSchedule string
	WarnDays        int
	CritDays        int
	// MaxBodyBytes bounds request bodies; larger ones get 413.
	MaxBodyBytes int64
	Logger       *slog.Logger
	// Registry is served at /metrics; nil serves an empty registry.
	Registry *prometheus.Registry
	Version  string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Secrets seals channel settings in the store. Nil disables the
	// channel routes that need it (503): without a key nothing may be
	// stored in clear.
	Secrets *secret.Box
	// SenderOptions are used by "send a test message".
	SenderOptions notify.SenderOptions
}

// Server serves the API.
type Server struct {
	cfg     Config
	store   Store
	auth    *auth.Authenticator
	log     *slog.Logger
	handler http.Handler
	// openAPI is the document, marshalled once after every route is
	// registered.
	openAPI []byte
}

// New validates cfg and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("server: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.DefaultSchedule == "" {
		cfg.DefaultSchedule = "4h"
	}
	if _, err := monitor.ParseSchedule(cfg.DefaultSchedule); err != nil {
		return nil, fmt.Errorf("server: default schedule: %w", err)
	}
	if cfg.WarnDays < 0 || cfg.CritDays < 0 || cfg.CritDays > cfg.WarnDays {
		return nil, fmt.Errorf("server: want 0 <= crit days (%d) <= warn days (%d)", cfg.CritDays, cfg.WarnDays)
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	installErrorModel()

	s := &Server{
		cfg:   cfg,
		store: cfg.Store,
		auth:  auth.NewAuthenticator(cfg.Store),
		log:   cfg.Logger,
	}
	mux := http.NewServeMux()
	api := humago.New(mux, s.humaConfig())
	s.routes(mux, api)
	doc, err := json.Marshal(api.OpenAPI())
	if err != nil {
		return nil, fmt.Errorf("server: openapi document: %w", err)
	}
	s.openAPI = doc
	s.handler = s.logRequests(s.recoverPanics(s.requireAuth(mux)))
	return s, nil
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

func (s *Server) wake() {
	if s.cfg.Waker != nil {
		s.cfg.Waker.Wake()
	}
}

// humaConfig is huma.DefaultConfig without what certmon does not want: the
// $schema link transformer (it adds a field to every response body), the
// docs page (it loads scripts from a CDN) and huma's own spec routes (the
// document is served from a buffer built once, see openapi.go).
func (s *Server) humaConfig() huma.Config {
	cfg := huma.DefaultConfig("certmon", s.cfg.Version)
	cfg.CreateHooks = nil
	cfg.Transformers = nil
	cfg.OpenAPIPath = ""
	cfg.DocsPath = ""
	cfg.SchemasPath = ""
	// A misspelt filter must not silently return everything.
	cfg.RejectUnknownQueryParameters = true
	cfg.Info.Description = "certmon watches TLS certificates. Every route but this document " +
		"needs `Authorization: Bearer TOKEN`. Errors are `{\"error\":{\"code\":\"...\",\"message\":\"...\"}}`."
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer"},
	}
	cfg.Security = []map[string][]string{{"bearer": {}}}
	return cfg
}
