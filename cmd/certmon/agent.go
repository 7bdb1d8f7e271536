package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certmon/certmon/internal/agent"
)

// agentKeys maps each agent flag to its environment variable; the env
// file uses the same names.
var agentKeys = []struct{ flag, env string }{
	{"server", "CERTMON_SERVER"},
	{"agent-id", "CERTMON_AGENT_ID"},
	{"agent-key", "CERTMON_AGENT_KEY"},
	{"ca-file", "CERTMON_AGENT_CA_FILE"},
	{"insecure", "CERTMON_AGENT_INSECURE"},
	{"allow-networks", "CERTMON_AGENT_ALLOW_NETWORKS"},
	{"spool-dir", "CERTMON_AGENT_SPOOL_DIR"},
	{"concurrency", "CERTMON_AGENT_CONCURRENCY"},
	{"metrics-listen", "CERTMON_AGENT_METRICS_LISTEN"},
	{"log-level", "CERTMON_LOG_LEVEL"},
}

// agentSettings is the agent's configuration after layering.
type agentSettings struct {
	cfg           agent.Config
	caFile        string
	envFile       string
	metricsListen string
	logLevel      slog.Level
}

// newAgentCommand takes stdout for symmetry with the other commands; the
// agent writes only logs, to stderr.
func newAgentCommand(_, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Probe targets inside a private network for a certmon server",
		Long: `Run a self-hosted agent: it dials out to the certmon server over one
WebSocket (no inbound port), probes the targets the server sends and
returns what it saw. Unacknowledged results are spooled to disk and resent
after a reconnect.

Create the agent on the server to get its ID and key. Settings come from
flags, then the environment (CERTMON_SERVER, CERTMON_AGENT_ID,
CERTMON_AGENT_KEY, CERTMON_AGENT_CA_FILE, CERTMON_AGENT_INSECURE,
CERTMON_AGENT_ALLOW_NETWORKS, CERTMON_AGENT_SPOOL_DIR,
CERTMON_AGENT_CONCURRENCY, CERTMON_AGENT_METRICS_LISTEN, CERTMON_LOG_LEVEL),
then --env-file, which holds KEY=VALUE lines with the same names. Prefer
the environment or an env file for the key: command lines are visible to
other users.

Exit status: 0 after SIGTERM or SIGINT, 1 when the server rejects or
revokes the credentials, 2 for a missing or invalid setting.`,
		Example: `  CERTMON_AGENT_KEY=... certmon agent --server https://certmon.example.com --agent-id agt_123
  certmon agent --env-file /etc/certmon/agent.env --allow-networks 10.0.0.0/8,192.168.0.0/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			args := os.Args[1:]
			if i := slices.Index(args, "agent"); i >= 0 {
				args = args[i+1:]
			}
			if action, _ := cmd.Flags().GetString("service"); action != "" {
				if err := controlAgentService(action, args); err != nil {
					return &exitError{code: 2, err: err}
				}
				return nil
			}
			s, err := resolveAgentSettings(cmd.Flags(), os.Getenv)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if underServiceManager() {
				return runAsService(func(ctx context.Context) error { return runAgent(ctx, s, stderr) }, args)
			}
			return runAgent(cmd.Context(), s, stderr)
		},
	}
	fl := cmd.Flags()
	fl.String("server", "", "server base `URL`, https://host[:port] (CERTMON_SERVER)")
	fl.String("agent-id", "", "agent `ID` given when the agent was created (CERTMON_AGENT_ID)")
	fl.String("agent-key", "", "agent `KEY`; prefer CERTMON_AGENT_KEY or --env-file, flags show in ps")
	fl.String("env-file", "", "read settings from `FILE` of KEY=VALUE lines (also CERTMON_AGENT_ENV_FILE)")
	fl.String("ca-file", "", "PEM `FILE` of extra roots trusted for the server's certificate (CERTMON_AGENT_CA_FILE)")
	fl.Bool("insecure", false, "allow a plain http:// server URL to a non-loopback host; the key travels in clear text (CERTMON_AGENT_INSECURE)")
	fl.String("allow-networks", "", "comma-separated `CIDRs`: refuse jobs for targets resolving outside them (CERTMON_AGENT_ALLOW_NETWORKS)")
	fl.String("spool-dir", "", "`DIR` for unacknowledged results (default: the user cache dir/certmon-agent) (CERTMON_AGENT_SPOOL_DIR)")
	fl.Int("concurrency", agent.DefaultConcurrency, "probes run at once (CERTMON_AGENT_CONCURRENCY)")
	fl.String("metrics-listen", "", "serve /metrics and /healthz (503 while disconnected) on `ADDR`, e.g. 127.0.0.1:9184; off by default (CERTMON_AGENT_METRICS_LISTEN)")
	fl.String("log-level", "info", "debug, info, warn or error (CERTMON_LOG_LEVEL)")
	fl.String("service", "", "`ACTION` on the agent as an OS service (Windows service, systemd, launchd): install (with the other flags given), uninstall, start, stop, restart")
	return cmd
}

// resolveAgentSettings layers the env file, the environment and the flags
// the user set, in rising precedence, and checks the result.
func resolveAgentSettings(fl *pflag.FlagSet, getenv func(string) string) (agentSettings, error) {
	var s agentSettings
	values := map[string]string{}
	for _, k := range agentKeys {
		values[k.flag] = fl.Lookup(k.flag).DefValue
	}
	s.envFile = getenv("CERTMON_AGENT_ENV_FILE")
	if fl.Changed("env-file") {
		s.envFile, _ = fl.GetString("env-file")
	}
	if s.envFile != "" {
		fileVals, err := readEnvFile(s.envFile)
		if err != nil {
			return s, err
		}
		for _, k := range agentKeys {
			if v, ok := fileVals[k.env]; ok {
				values[k.flag] = v
			}
		}
	}
	for _, k := range agentKeys {
		if v := getenv(k.env); v != "" {
			values[k.flag] = v
		}
	}
	for _, k := range agentKeys {
		if fl.Changed(k.flag) {
			values[k.flag] = fl.Lookup(k.flag).Value.String()
		}
	}

	var missing []string
	for _, m := range []struct{ flag, env, what string }{
		{"server", "CERTMON_SERVER", "server URL"},
		{"agent-id", "CERTMON_AGENT_ID", "agent ID"},
		{"agent-key", "CERTMON_AGENT_KEY", "agent key"},
	} {
		if strings.TrimSpace(values[m.flag]) == "" {
			missing = append(missing, fmt.Sprintf("%s (--%s or %s)", m.what, m.flag, m.env))
		}
	}
	if len(missing) > 0 {
		return s, fmt.Errorf("agent: missing %s; create the agent on the server to get an ID and key", strings.Join(missing, ", "))
	}

	c := &s.cfg
	c.ServerURL = strings.TrimSpace(values["server"])
	c.AgentID = strings.TrimSpace(values["agent-id"])
	c.Key = strings.TrimSpace(values["agent-key"])
	c.Version = version
	var err error
	if c.Insecure, err = strconv.ParseBool(values["insecure"]); err != nil {
		return s, fmt.Errorf("--insecure: want true or false, got %q", values["insecure"])
	}
	if c.Concurrency, err = strconv.Atoi(values["concurrency"]); err != nil || c.Concurrency < 1 || c.Concurrency > 10000 {
		return s, fmt.Errorf("--concurrency: want 1 to 10000, got %q", values["concurrency"])
	}
	if c.AllowNetworks, err = parseNetworks(values["allow-networks"]); err != nil {
		return s, err
	}
	if err := s.logLevel.UnmarshalText([]byte(values["log-level"])); err != nil {
		return s, fmt.Errorf("--log-level: want debug, info, warn or error, got %q", values["log-level"])
	}
	s.metricsListen = values["metrics-listen"]
	c.SpoolDir = values["spool-dir"]
	if c.SpoolDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return s, fmt.Errorf("--spool-dir: no default (%v); give a directory", err)
		}
		c.SpoolDir = filepath.Join(cache, "certmon-agent")
	}
	if s.caFile = values["ca-file"]; s.caFile != "" {
		if c.RootCAs, err = loadRoots([]string{s.caFile}); err != nil {
			return s, err
		}
	}
	if err := c.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

// parseNetworks reads comma-separated CIDRs; a bare address is one host.
func parseNetworks(raw string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for part := range strings.SplitSeq(raw, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			ip, ierr := netip.ParseAddr(part)
			if ierr != nil {
				return nil, fmt.Errorf("--allow-networks: %q is not a CIDR such as 10.0.0.0/8", part)
			}
			p = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// readEnvFile reads KEY=VALUE lines: '#' comments, blank lines, an
// optional "export " and quotes around the value. Unknown CERTMON_ keys
// are errors (a typo would silently drop a setting); other keys are left
// for whatever else shares the file.
func readEnvFile(name string) (map[string]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("--env-file: %w", err)
	}
	defer f.Close()
	known := map[string]bool{}
	for _, k := range agentKeys {
		known[k.env] = true
	}
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			return nil, fmt.Errorf("--env-file %s:%d: want KEY=VALUE", name, n)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		if strings.HasPrefix(key, "CERTMON_") && !known[key] {
			return nil, fmt.Errorf("--env-file %s:%d: unknown setting %s", name, n, key)
		}
		out[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--env-file %s: %w", name, err)
	}
	return out, nil
}

func runAgent(ctx context.Context, s agentSettings, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.logLevel}))
	s.cfg.Logger = log
	if s.envFile != "" {
		if st, err := os.Stat(s.envFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("env file is readable by other users and may hold the agent key", "file", s.envFile, "mode", st.Mode().Perm())
		}
	}
	a, err := agent.New(s.cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if s.metricsListen != "" {
		ln, err := net.Listen("tcp", s.metricsListen)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--metrics-listen: %w", err)}
		}
		srv := &http.Server{Handler: agentMetricsHandler(a), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}
	log.Info("agent starting", "server", s.cfg.ServerURL, "agent_id", s.cfg.AgentID, "version", version, "spool", s.cfg.SpoolDir)
	// Exit 1 covers rejected or revoked credentials (agent.ErrUnauthorized,
	// agent.ErrRevoked), the only errors Run stops with.
	if err := a.Run(ctx); err != nil {
		return &exitError{code: 1, err: err}
	}
	log.Info("agent stopped")
	return nil
}

// agentMetricsHandler serves /metrics and /healthz, which is 200 only
// while the agent is connected to its server.
func agentMetricsHandler(a *agent.Agent) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(name, help string, f func(agent.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	counter := func(name, help string, f func(agent.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(a.Stats()) }))
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("certmon_agent_connected", "1 while connected to the server.", func(s agent.Stats) float64 { return b2f(s.Connected) })
	gauge("certmon_agent_spooled_results", "Results waiting for the server's acknowledgement.", func(s agent.Stats) float64 { return float64(s.Spooled) })
	gauge("certmon_agent_spool_bytes", "Bytes of spooled results.", func(s agent.Stats) float64 { return float64(s.SpoolBytes) })
	gauge("certmon_agent_running_jobs", "Jobs accepted and not finished.", func(s agent.Stats) float64 { return float64(s.Running) })
	counter("certmon_agent_jobs_total", "Jobs finished.", func(s agent.Stats) float64 { return float64(s.JobsDone) })
	counter("certmon_agent_job_errors_total", "Failed probes, refused and dropped jobs.", func(s agent.Stats) float64 { return float64(s.Errors) })
	counter("certmon_agent_connects_total", "Successful connections to the server.", func(s agent.Stats) float64 { return float64(s.Connects) })

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Stats().Connected {
			http.Error(w, "not connected to the server", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
