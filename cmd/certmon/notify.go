package main

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/certmon/certmon/internal/config"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/secret"
	"github.com/certmon/certmon/internal/server"
	"github.com/certmon/certmon/internal/store"
)

// notifier is the server's notification side: the key that seals channel
// settings, what senders share, the outbox worker and the scheduled
// status report (nil when not configured).
type notifier struct {
	secrets *secret.Box
	opts    notify.SenderOptions
	worker  *notify.Worker
	report  *notify.StatusReport
}

// newNotifier builds the notifier from the configuration. A bad key, CA
// file or report setting is a configuration error (exit 2).
func newNotifier(cfg config.Server, st *store.Store, replica string, metrics *server.Metrics, log *slog.Logger) (*notifier, error) {
	n := &notifier{}
	nc := cfg.Notify
	// On SQLite one server owns the data directory, so a key can be made
	// there once; PostgreSQL replicas must be given the same key.
	keyFile := ""
	if cfg.DatabaseURL == "" {
		keyFile = filepath.Join(cfg.Data, "secret.key")
	}
	if nc.SecretKey != "" || keyFile != "" {
		box, err := secret.LoadOrCreate(nc.SecretKey, keyFile)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("notifications.secret_key: %w", err)}
		}
		n.secrets = box
	} else {
		log.Warn("notifications.secret_key is not set: notification channels cannot be created or used (replicas sharing PostgreSQL need one shared key)")
	}
	caFiles := cfg.CAFiles
	if nc.SMTP.CAFile != "" {
		caFiles = append(append([]string{}, caFiles...), nc.SMTP.CAFile)
	}
	roots, err := loadRoots(caFiles)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	n.opts = notify.SenderOptions{Timeout: nc.Timeout.Std(), RootCAs: roots, BaseURL: baseURL(cfg)}

	var smtp *notify.ChannelConfig
	if nc.SMTP.Host != "" {
		smtp = &notify.ChannelConfig{Host: nc.SMTP.Host, Port: nc.SMTP.Port, TLS: nc.SMTP.TLS,
			Username: nc.SMTP.Username, Password: nc.SMTP.Password, From: nc.SMTP.From}
	}
	dests := &notify.StoreDestinations{Store: st, Options: n.opts, SMTP: smtp}
	if n.secrets != nil {
		dests.Secrets = n.secrets
	}
	n.worker = notify.NewWorker(notify.WorkerConfig{
		Owner:         replica + "/notify",
		Workers:       nc.Workers,
		Lease:         max(time.Minute, 4*nc.Timeout.Std()),
		MaxAttempts:   nc.MaxAttempts,
		RetryMin:      nc.RetryMin.Std(),
		RetryMax:      nc.RetryMax.Std(),
		RatePerMinute: nc.RatePerMinute,
		GroupMax:      nc.GroupMax,
		BaseURL:       n.opts.BaseURL,
		Metrics:       metrics,
	}, st, dests, log)

	if r := nc.Report; r.Schedule != "" {
		loc, err := time.LoadLocation(r.TimeZone)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("notifications.report.time_zone: %w", err)}
		}
		mail := *smtp
		mail.To = r.To
		if err := mail.Validate(notify.TypeEmail); err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("notifications.smtp: %w", err)}
		}
		sender, err := notify.NewSender(notify.TypeEmail, mail, n.opts)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("notifications.report: %w", err)}
		}
		n.report = &notify.StatusReport{Store: st, Sender: sender, Schedule: r.Schedule, Location: loc,
			OnlyWhenAttention: r.OnlyWhenAttention, BaseURL: n.opts.BaseURL, Owner: replica, Logger: log}
		if err := n.report.Validate(); err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("notifications.report: %w", err)}
		}
	}
	return n, nil
}

// baseURL is notifications.base_url, or a guess from the listen address
// (links then work on this machine at least).
func baseURL(cfg config.Server) string {
	if cfg.Notify.BaseURL != "" {
		return cfg.Notify.BaseURL
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// alertPolicy is the state machine's alerting from the configuration.
func alertPolicy(cfg config.Server) monitor.AlertPolicy {
	return monitor.AlertPolicy{
		ReminderDays:     cfg.Notify.ReminderDays,
		TagReminderDays:  cfg.Notify.TagReminderDays,
		UnreachableAfter: cfg.Notify.UnreachableAfter,
	}
}
