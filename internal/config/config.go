// Package config loads the server's settings: defaults, then a YAML file
// (unknown keys are errors), then CERTMON_* environment variables, then
// command-line flags. Each section validates itself.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in Go syntax ("30s", "4h") in YAML.
type Duration time.Duration

// UnmarshalYAML reads Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use Go syntax like 30s or 4h)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// Std returns the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Server is the whole `certmon server` configuration.
type Server struct {
	Listen      string   `yaml:"listen"`
	Data        string   `yaml:"data"`
	DatabaseURL string   `yaml:"database_url"`
	CAFiles     []string `yaml:"ca_file"`
	TLSCert     string   `yaml:"tls_cert"`
	TLSKey      string   `yaml:"tls_key"`
	// BootstrapToken creates an admin API token with this value at first
	// start (automation).
	BootstrapToken string `yaml:"bootstrap_token"`
	LogLevel       string `yaml:"log_level"`
	// MaxBodyBytes bounds API request bodies.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`

	Scheduler  Scheduler  `yaml:"scheduler"`
	Check      Check      `yaml:"check"`
	CloudAgent CloudAgent `yaml:"cloud_agent"`
	Notify     Notify     `yaml:"notifications"`
}

// Notify configures alerting and delivery (package notify).
type Notify struct {
	// SecretKey (base64 of 32 bytes) encrypts channel secrets at rest.
	// Empty: on SQLite a key is generated once into the data directory;
	// PostgreSQL replicas must share one, so it must be set there.
	SecretKey string `yaml:"secret_key"`
	// BaseURL is this server as users reach it, for links in messages.
	BaseURL string `yaml:"base_url"`
	// ReminderDays are the days-left thresholds of expiry reminders;
	// TagReminderDays overrides them for monitors with a tag (the first
	// of a monitor's tags that has an entry wins), a monitor's own
	// reminder_days override both.
	ReminderDays    []int            `yaml:"reminder_days"`
	TagReminderDays map[string][]int `yaml:"tag_reminder_days"`
	// UnreachableAfter is how many consecutive failed checks raise an
	// unreachable alert.
	UnreachableAfter int `yaml:"unreachable_after"`
	// MaxAttempts moves a delivery to dead letters after that many
	// failed sends; backoff starts at RetryMin and doubles up to RetryMax.
	MaxAttempts int      `yaml:"max_attempts"`
	RetryMin    Duration `yaml:"retry_min"`
	RetryMax    Duration `yaml:"retry_max"`
	// Timeout bounds one send (connect, TLS, request, answer).
	Timeout Duration `yaml:"timeout"`
	// Workers sends this many messages at once on this replica.
	Workers int `yaml:"workers"`
	// RatePerMinute limits messages per channel (and per email address);
	// what waits is grouped into one message. GroupMax bounds a group.
	RatePerMinute int `yaml:"rate_per_minute"`
	GroupMax      int `yaml:"group_max"`
	// SMTP sends the email of per-monitor recipients, digests and the
	// status report.
	SMTP SMTP `yaml:"smtp"`
	// Report is the scheduled status report email.
	Report Report `yaml:"report"`
}

// SMTP is an outgoing mail server.
type SMTP struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLS: "starttls" (required), "tls" (implicit, port 465), "none".
	TLS      string `yaml:"tls"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	From     string `yaml:"from"`
	// CAFile adds trusted roots for the mail server's certificate.
	CAFile string `yaml:"ca_file"`
}

// Report is the scheduled HTML status report.
type Report struct {
	// Schedule is a 5-field cron expression; empty disables the report.
	Schedule string   `yaml:"schedule"`
	TimeZone string   `yaml:"time_zone"`
	To       []string `yaml:"to"`
	// OnlyWhenAttention skips the email when every monitor is OK.
	OnlyWhenAttention bool `yaml:"only_when_attention"`
}

// CloudAgent limits the server's built-in agent.
type CloudAgent struct {
	// DenyNetworks are never probed by the built-in agent: by default
	// link-local (cloud metadata at 169.254.169.254) and the other
	// clouds' metadata addresses, so a monitor cannot read the server's
	// own cloud credentials. Addresses or CIDRs.
	DenyNetworks []string `yaml:"deny_networks"`
}

// Validate checks every network parses.
func (c *CloudAgent) Validate() error {
	for _, n := range c.DenyNetworks {
		if _, err := netip.ParsePrefix(n); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(n); err != nil {
			return fmt.Errorf("cloud_agent.deny_networks: %q is not a CIDR or address", n)
		}
	}
	return nil
}

// Scheduler tunes how due checks are claimed and run.
type Scheduler struct {
	// Workers bounds concurrent checks on this replica.
	Workers int `yaml:"workers"`
	// Lease is how long a claimed check is held before another replica
	// may take it over.
	Lease Duration `yaml:"lease"`
	// Poll is how often the store is asked for due work when idle.
	Poll Duration `yaml:"poll"`
	// Batch is how many due checks are claimed at once.
	Batch int `yaml:"batch"`
	// RetryDelay is the pause before a failed check is retried once.
	RetryDelay Duration `yaml:"retry_delay"`
	// DefaultSchedule applies to monitors created without one.
	DefaultSchedule string `yaml:"default_schedule"`
}

// Check holds the defaults of every probe the server runs.
type Check struct {
	Timeout    Duration `yaml:"timeout"`
	WarnDays   int      `yaml:"warn_days"`
	CritDays   int      `yaml:"crit_days"`
	Revocation string   `yaml:"revocation"`
}

// Default returns the settings `certmon server` runs with when given none.
func Default() Server {
	return Server{
		Listen:       ":8080",
		Data:         "certmon-data",
		LogLevel:     "info",
		MaxBodyBytes: 1 << 20,
		Scheduler: Scheduler{
			Workers:         64,
			Lease:           Duration(2 * time.Minute),
			Poll:            Duration(time.Second),
			Batch:           200,
			RetryDelay:      Duration(20 * time.Second),
			DefaultSchedule: "4h",
		},
		CloudAgent: CloudAgent{DenyNetworks: []string{
			"169.254.0.0/16", "fe80::/10", "100.100.100.200/32", "fd00:ec2::254/128",
		}},
		Check: Check{
			Timeout:    Duration(10 * time.Second),
			WarnDays:   30,
			CritDays:   7,
			Revocation: "auto",
		},
		Notify: Notify{
			ReminderDays:     []int{30, 14, 7, 3, 1},
			UnreachableAfter: 2,
			MaxAttempts:      8,
			RetryMin:         Duration(30 * time.Second),
			RetryMax:         Duration(time.Hour),
			Timeout:          Duration(15 * time.Second),
			Workers:          16,
			RatePerMinute:    30,
			GroupMax:         500,
			SMTP:             SMTP{Port: 587, TLS: "starttls"},
			Report:           Report{TimeZone: "UTC"},
		},
	}
}

// DatabaseURLOrDefault is the PostgreSQL URL, or the SQLite file in Data.
func (s *Server) DatabaseURLOrDefault() string {
	if s.DatabaseURL != "" {
		return s.DatabaseURL
	}
	return strings.TrimRight(s.Data, "/") + "/certmon.db"
}

// LoadFile overlays the YAML file at path onto s. Unknown keys are errors.
func (s *Server) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// EnvPrefix starts every environment variable the server reads.
const EnvPrefix = "CERTMON_"

// LoadEnv overlays CERTMON_* variables named after the YAML keys:
// scheduler.workers is CERTMON_SCHEDULER_WORKERS; lists are comma-separated.
func (s *Server) LoadEnv(lookup func(string) (string, bool)) error {
	return overlayEnv(reflect.ValueOf(s).Elem(), EnvPrefix, lookup)
}

// EnvNames lists every variable LoadEnv reads, for documentation and tests.
func EnvNames() []string {
	var names []string
	_ = overlayEnv(reflect.ValueOf(&Server{}).Elem(), EnvPrefix, func(name string) (string, bool) {
		names = append(names, name)
		return "", false
	})
	return names
}

var durationType = reflect.TypeOf(Duration(0))

func overlayEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		name := prefix + strings.ToUpper(key)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := overlayEnv(fv, name+"_", lookup); err != nil {
				return err
			}
			continue
		}
		raw, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, raw); err != nil {
			return fmt.Errorf("environment %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

func setFromString(fv reflect.Value, raw string) error {
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("not a duration (use Go syntax like 30s or 4h)")
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(raw)
	case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("not a whole number")
		}
		fv.SetInt(n)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("not true or false")
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Int:
		days, err := parseInts(raw, ",")
		if err != nil {
			return err
		}
		fv.Set(reflect.ValueOf(days))
	case fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.Slice:
		// tag=30/14/7;other=7/1
		m := map[string][]int{}
		for _, entry := range strings.Split(raw, ";") {
			if entry = strings.TrimSpace(entry); entry == "" {
				continue
			}
			tag, list, ok := strings.Cut(entry, "=")
			if !ok || strings.TrimSpace(tag) == "" {
				return errors.New("want tag=30/14/7;other=7/1")
			}
			days, err := parseInts(list, "/")
			if err != nil {
				return err
			}
			m[strings.TrimSpace(tag)] = days
		}
		fv.Set(reflect.ValueOf(m))
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		fv.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported setting type %s", fv.Type())
	}
	return nil
}

func parseInts(raw, sep string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(raw, sep) {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a whole number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Validate reports every invalid setting at once.
func (s *Server) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: want host:port or :port", s.Listen))
	}
	if s.DatabaseURL == "" && s.Data == "" {
		errs = append(errs, errors.New("data: a directory is needed for the SQLite database"))
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	switch s.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", s.LogLevel))
	}
	if s.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_body_bytes %d: at least 1024", s.MaxBodyBytes))
	}
	errs = append(errs, s.Scheduler.Validate(), s.Check.Validate(), s.CloudAgent.Validate(), s.Notify.Validate())
	return errors.Join(errs...)
}

// Validate checks the scheduler section.
func (s *Scheduler) Validate() error {
	var errs []error
	if s.Workers < 1 || s.Workers > 10000 {
		errs = append(errs, fmt.Errorf("scheduler.workers %d: want 1 to 10000", s.Workers))
	}
	if s.Lease.Std() < 5*time.Second {
		errs = append(errs, fmt.Errorf("scheduler.lease %s: at least 5s", s.Lease.Std()))
	}
	if s.Poll.Std() < 10*time.Millisecond || s.Poll.Std() > time.Minute {
		errs = append(errs, fmt.Errorf("scheduler.poll %s: want 10ms to 1m", s.Poll.Std()))
	}
	if s.Batch < 1 || s.Batch > 5000 {
		errs = append(errs, fmt.Errorf("scheduler.batch %d: want 1 to 5000", s.Batch))
	}
	if s.RetryDelay.Std() < 0 {
		errs = append(errs, errors.New("scheduler.retry_delay must not be negative"))
	}
	if s.DefaultSchedule == "" {
		errs = append(errs, errors.New("scheduler.default_schedule is empty"))
	}
	return errors.Join(errs...)
}

// Validate checks the check defaults.
func (c *Check) Validate() error {
	var errs []error
	if c.Timeout.Std() <= 0 {
		errs = append(errs, errors.New("check.timeout must be positive"))
	}
	if c.WarnDays < 0 || c.CritDays < 0 || c.CritDays > c.WarnDays {
		errs = append(errs, fmt.Errorf("check.warn_days %d / crit_days %d: want 0 <= crit_days <= warn_days", c.WarnDays, c.CritDays))
	}
	if c.Revocation != "auto" && c.Revocation != "off" {
		errs = append(errs, fmt.Errorf("check.revocation %q: want auto or off", c.Revocation))
	}
	return errors.Join(errs...)
}

// Validate checks the notifications section.
func (n *Notify) Validate() error {
	var errs []error
	checkDays := func(name string, days []int) {
		for _, d := range days {
			if d < 1 || d > 3650 {
				errs = append(errs, fmt.Errorf("%s: %d days: want 1 to 3650", name, d))
			}
		}
	}
	checkDays("notifications.reminder_days", n.ReminderDays)
	for tag, days := range n.TagReminderDays {
		checkDays("notifications.tag_reminder_days."+tag, days)
	}
	if n.UnreachableAfter < 1 || n.UnreachableAfter > 100 {
		errs = append(errs, fmt.Errorf("notifications.unreachable_after %d: want 1 to 100", n.UnreachableAfter))
	}
	if n.MaxAttempts < 1 || n.MaxAttempts > 100 {
		errs = append(errs, fmt.Errorf("notifications.max_attempts %d: want 1 to 100", n.MaxAttempts))
	}
	if n.RetryMin.Std() <= 0 || n.RetryMax.Std() < n.RetryMin.Std() {
		errs = append(errs, fmt.Errorf("notifications.retry_min %s / retry_max %s: want 0 < retry_min <= retry_max", n.RetryMin.Std(), n.RetryMax.Std()))
	}
	if n.Timeout.Std() <= 0 {
		errs = append(errs, errors.New("notifications.timeout must be positive"))
	}
	if n.Workers < 1 || n.Workers > 1000 {
		errs = append(errs, fmt.Errorf("notifications.workers %d: want 1 to 1000", n.Workers))
	}
	if n.RatePerMinute < 1 {
		errs = append(errs, fmt.Errorf("notifications.rate_per_minute %d: at least 1", n.RatePerMinute))
	}
	if n.GroupMax < 1 || n.GroupMax > 1000 {
		errs = append(errs, fmt.Errorf("notifications.group_max %d: want 1 to 1000", n.GroupMax))
	}
	switch n.SMTP.TLS {
	case "starttls", "tls", "none":
	default:
		errs = append(errs, fmt.Errorf("notifications.smtp.tls %q: want starttls, tls or none", n.SMTP.TLS))
	}
	if n.SMTP.Host != "" && (n.SMTP.Port < 1 || n.SMTP.Port > 65535) {
		errs = append(errs, fmt.Errorf("notifications.smtp.port %d: want 1 to 65535", n.SMTP.Port))
	}
	if n.Report.Schedule != "" {
		if n.SMTP.Host == "" {
			errs = append(errs, errors.New("notifications.report needs notifications.smtp.host"))
		}
		if len(n.Report.To) == 0 {
			errs = append(errs, errors.New("notifications.report.to is empty"))
		}
	}
	if _, err := time.LoadLocation(n.Report.TimeZone); err != nil {
		errs = append(errs, fmt.Errorf("notifications.report.time_zone %q: %v", n.Report.TimeZone, err))
	}
	return errors.Join(errs...)
}
