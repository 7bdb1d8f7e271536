package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/auth"
	"github.com/certmon/certmon/internal/config"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/server"
	"github.com/certmon/certmon/internal/store"
)

func newServerCommand(stdout, stderr io.Writer) *cobra.Command {
	var configFile string
	flagCfg := config.Default()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane: API, scheduler, built-in agent and store",
		Long: `Run the certmon server.

With no flags it listens on :8080, keeps its data in ./certmon-data/certmon.db
(SQLite), runs the built-in agent and prints the URL and a one-time admin API
token. --database-url postgres://... switches to PostgreSQL; any number of
replicas may share one database.

Every setting can also come from a YAML file (--config) or a CERTMON_*
environment variable named after its key (CERTMON_SCHEDULER_WORKERS for
scheduler.workers). Flags win over the environment, which wins over the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := serverConfig(cmd.Flags(), configFile, flagCfg)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			return runServer(cmd.Context(), cfg, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&configFile, "config", "", "YAML configuration `FILE` (also CERTMON_CONFIG)")
	fl.StringVar(&flagCfg.Listen, "listen", flagCfg.Listen, "listen address (CERTMON_LISTEN)")
	fl.StringVar(&flagCfg.Data, "data", flagCfg.Data, "data directory for the SQLite database (CERTMON_DATA)")
	fl.StringVar(&flagCfg.DatabaseURL, "database-url", "", "postgres://... to use PostgreSQL instead of SQLite (CERTMON_DATABASE_URL)")
	fl.StringArrayVar(&flagCfg.CAFiles, "ca-file", nil, "PEM `FILE` of extra trusted roots for private PKI (CERTMON_CA_FILE, comma-separated)")
	fl.StringVar(&flagCfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate `FILE` (CERTMON_TLS_CERT)")
	fl.StringVar(&flagCfg.TLSKey, "tls-key", "", "private key `FILE` for --tls-cert (CERTMON_TLS_KEY)")
	fl.StringVar(&flagCfg.LogLevel, "log-level", flagCfg.LogLevel, "debug, info, warn or error (CERTMON_LOG_LEVEL)")
	return cmd
}

// serverConfig layers defaults, the file, the environment and the flags
// the user set explicitly.
func serverConfig(fl *pflag.FlagSet, configFile string, flagCfg config.Server) (config.Server, error) {
	cfg := config.Default()
	if configFile == "" {
		configFile = os.Getenv("CERTMON_CONFIG")
	}
	if configFile != "" {
		if err := cfg.LoadFile(configFile); err != nil {
			return cfg, err
		}
	}
	if err := cfg.LoadEnv(os.LookupEnv); err != nil {
		return cfg, err
	}
	set := map[string]func(){
		"listen":       func() { cfg.Listen = flagCfg.Listen },
		"data":         func() { cfg.Data = flagCfg.Data },
		"database-url": func() { cfg.DatabaseURL = flagCfg.DatabaseURL },
		"ca-file":      func() { cfg.CAFiles = flagCfg.CAFiles },
		"tls-cert":     func() { cfg.TLSCert = flagCfg.TLSCert },
		"tls-key":      func() { cfg.TLSKey = flagCfg.TLSKey },
		"log-level":    func() { cfg.LogLevel = flagCfg.LogLevel },
	}
	fl.Visit(func(f *pflag.Flag) {
		if apply, ok := set[f.Name]; ok {
			apply()
		}
	})
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	if _, err := monitor.ParseSchedule(cfg.Scheduler.DefaultSchedule); err != nil {
		return cfg, fmt.Errorf("configuration: scheduler.default_schedule: %w", err)
	}
	return cfg, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func runServer(ctx context.Context, cfg config.Server, stdout, stderr io.Writer) error {
	log := newLogger(stderr, cfg.LogLevel)
	roots, err := loadRoots(cfg.CAFiles)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := store.Open(openCtx, cfg.DatabaseURLOrDefault(), log)
	cancel()
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("opening the store: %w", err)}
	}
	defer st.Close()

	if n, err := st.ReleaseStaleClaims(ctx); err != nil {
		return &exitError{code: 1, err: err}
	} else if n > 0 {
		log.Info("released checks claimed by a previous run that did not stop cleanly", "count", n)
	}
	adminToken, err := bootstrapToken(ctx, st, cfg.BootstrapToken)
	if err != nil {
		return &exitError{code: 1, err: err}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := server.NewMetrics(reg, st.CountByStatus)

	fetcher := revocation.NewFetcher(revocation.Options{Timeout: cfg.Check.Timeout.Std()})
	acfg := assess.Config{Roots: roots, Issuers: fetcher, Logger: log}
	if cfg.Check.Revocation == "auto" {
		acfg.Revocation = fetcher
	}
	deny, err := probe.ParsePrefixes(cfg.CloudAgent.DenyNetworks)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("cloud_agent.deny_networks: %w", err)}
	}
	checker := monitor.NewLocalChecker(
		probe.New(probe.Options{Timeout: cfg.Check.Timeout.Std()}),
		acfg,
		assess.Policy{WarnDays: cfg.Check.WarnDays, CritDays: cfg.Check.CritDays, Revocation: cfg.Check.Revocation == "auto"},
		monitor.WithReach(probe.Reach{Deny: deny}),
	)
	host, _ := os.Hostname()
	replica := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomHex(4))
	schedCfg := monitor.SchedulerConfig{
		Owner:      replica,
		Pools:      []string{monitor.CloudPool},
		Workers:    cfg.Scheduler.Workers,
		Batch:      cfg.Scheduler.Batch,
		Lease:      cfg.Scheduler.Lease.Std(),
		Poll:       cfg.Scheduler.Poll.Std(),
		RetryDelay: cfg.Scheduler.RetryDelay.Std(),
		Alerts:     alertPolicy(cfg),
	}
	sched := monitor.NewScheduler(schedCfg, st, checker, metrics, log)
	notifier, err := newNotifier(cfg, st, replica, metrics, log)
	if err != nil {
		return err
	}

	// Self-hosted agents: this replica claims the due checks of the pools
	// whose agents are connected to it and hands them out as jobs.
	hub, err := agentlink.NewHub(agentlink.HubConfig{Assess: checker.Assess, Version: version, Replica: replica,
		RetryDelay: cfg.Scheduler.RetryDelay.Std(), Alerts: schedCfg.Alerts}, st, log)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	agentSchedCfg := schedCfg
	agentSchedCfg.Owner = replica + "/agents"
	agentSchedCfg.Pools = nil
	agentSchedCfg.PoolsFunc = hub.PoolsFunc
	agentSched := monitor.NewScheduler(agentSchedCfg, st, hub, metrics, log)
	wake := wakers{sched, agentSched}

	srv, err := server.New(server.Config{
		Store:           st,
		Waker:           wake,
		Agents:          hub,
		DefaultSchedule: cfg.Scheduler.DefaultSchedule,
		WarnDays:        cfg.Check.WarnDays,
		CritDays:        cfg.Check.CritDays,
		MaxBodyBytes:    cfg.MaxBodyBytes,
		Logger:          log,
		Registry:        reg,
		Version:         version,
		Secrets:         notifier.secrets,
		SenderOptions:   notifier.opts,
	})
	if err != nil {
		return &exitError{code: 1, err: err}
	}

	// Load the certificate before anything listens, so a wrong file is a
	// clear start-up error, not a server that dies after printing its URL.
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("tls_cert %s / tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)}
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("listen %s: %w", cfg.Listen, err)}
	}
	// The agent endpoint authenticates agents itself (their keys are not
	// API tokens), so it sits beside the API, not behind its middleware.
	mux := http.NewServeMux()
	mux.Handle(agentlink.Path, hub)
	mux.Handle("/", srv.Handler())
	httpSrv := &http.Server{
		Handler:           mux,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "certmon %s listening on %s://%s\n", version, scheme, displayAddr(ln.Addr()))
	fmt.Fprintf(stdout, "store: %s\n", redactURL(cfg.DatabaseURLOrDefault()))
	if adminToken != "" {
		fmt.Fprintf(stdout, "admin API token (shown once, store it now): %s\n", adminToken)
	}

	serveErr := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			serveErr <- httpSrv.ServeTLS(ln, "", "")
		} else {
			serveErr <- httpSrv.Serve(ln)
		}
	}()
	// Everything that runs until shutdown.
	loops := []func(context.Context) error{sched.Run, agentSched.Run, hub.Run, notifier.worker.Run}
	if notifier.report != nil {
		loops = append(loops, notifier.report.Run)
	}
	schedDone := make(chan error, len(loops))
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	for _, run := range loops {
		go func() { schedDone <- run(schedCtx) }()
	}
	waitScheds := func() error {
		var errs []error
		for range loops {
			errs = append(errs, <-schedDone)
		}
		return errors.Join(errs...)
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		stopSched()
		_ = waitScheds()
		return &exitError{code: 1, err: fmt.Errorf("http server: %w", err)}
	}
	stopSched()
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancelShut()
	_ = httpSrv.Shutdown(shutCtx)
	if err := waitScheds(); err != nil {
		log.Error("scheduler shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// bootstrapToken makes the first admin token: CERTMON_BOOTSTRAP_TOKEN's
// value if set, else a random one that is printed once. It returns the
// secret to print ("" when nothing new was made or the value came from the
// environment).
func bootstrapToken(ctx context.Context, st *store.Store, fixed string) (string, error) {
	n, err := st.CountTokens(ctx)
	if err != nil {
		return "", fmt.Errorf("counting API tokens: %w", err)
	}
	if fixed != "" {
		if _, err := st.TokenByHash(ctx, auth.Hash(fixed)); err == nil {
			return "", nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
		if n > 0 {
			// Only at first start: a changed variable must not mint a
			// new admin on a running installation.
			return "", nil
		}
		if len(fixed) < 16 {
			return "", errors.New("CERTMON_BOOTSTRAP_TOKEN must be at least 16 characters")
		}
		_, err := st.CreateToken(ctx, store.DefaultTeamID, "bootstrap", "admin", auth.Hash(fixed))
		return "", err
	}
	if n > 0 {
		return "", nil
	}
	secret, hash := auth.GenerateToken()
	if _, err := st.CreateToken(ctx, store.DefaultTeamID, "admin", "admin", hash); err != nil {
		return "", fmt.Errorf("creating the admin token: %w", err)
	}
	return secret, nil
}

// wakers wakes every scheduler: a new monitor may belong to any pool.
type wakers []*monitor.Scheduler

func (w wakers) Wake() {
	for _, s := range w {
		s.Wake()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// redactURL hides a password in a database URL.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 {
			cred := rest[:at]
			if c := strings.Index(cred, ":"); c >= 0 {
				return u[:i+3] + cred[:c] + ":***" + rest[at:]
			}
		}
	}
	return u
}
