package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/checker"
	"github.com/certmon/certmon/internal/output"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/revocation"
	"github.com/certmon/certmon/internal/target"
)

type checkFlags struct {
	file         string
	sni          string
	starttls     string
	xmppHost     string
	timeout      time.Duration
	retries      int
	concurrency  int
	caFiles      []string
	clientCert   string
	clientKey    string
	warnDays     int
	critDays     int
	revocation   string
	lint         bool
	output       string
	allAddresses bool
	proxy        string
	noColor      bool
}

func newCheckCommand(stdout, stderr io.Writer) *cobra.Command {
	f := &checkFlags{}
	cmd := &cobra.Command{
		Use:   "check [flags] TARGET...",
		Short: "Probe targets once and judge their certificates (exit 0/1/2/3 as a Nagios plugin)",
		Long: `Probe each TARGET once, judge its certificate chain and print the result.

A target is host, host:port, [v6]:port, or a URL whose scheme names the protocol:
https, tls, smtp (STARTTLS), submission, smtps, imap, imaps, pop3, pop3s, ftp (AUTH TLS),
ftps, ldap (StartTLS), ldaps, xmpp, xmpp-server, postgres, mysql.

The exit code is that of the worst status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.`,
		Example: `  certmon check example.com
  certmon check smtp://mail.example.com:587 ldap://dc1.corp.example:389
  certmon check --file targets.txt --output json --concurrency 100
  certmon check --output nagios --warn-days 21 --crit-days 7 https://example.com`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), f, args, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.file, "file", "", "read targets from `FILE`, one per line ('#' starts a comment; - for stdin)")
	fl.StringVar(&f.sni, "sni", "", "send `NAME` as SNI and verify the certificate against it (default: the target's host)")
	fl.StringVar(&f.starttls, "starttls", "", "speak `PROTO` before TLS: "+strings.Join(target.StartTLSNames, ", ")+", or none")
	fl.StringVar(&f.xmppHost, "xmpp-host", "", "XMPP stream domain (default: the SNI or host)")
	fl.DurationVar(&f.timeout, "timeout", probe.DefaultTimeout, "time limit for one attempt: connect, STARTTLS and handshake")
	fl.IntVar(&f.retries, "retries", 1, "extra attempts, with backoff, for a target that sent no certificate")
	fl.IntVar(&f.concurrency, "concurrency", 32, "targets checked at once")
	fl.StringArrayVar(&f.caFiles, "ca-file", nil, "PEM `FILE` of extra trusted roots, added to the system roots (repeatable)")
	fl.StringVar(&f.clientCert, "client-cert", "", "PEM client certificate `FILE` offered when a server asks (mTLS)")
	fl.StringVar(&f.clientKey, "client-key", "", "PEM private key `FILE` of --client-cert")
	fl.IntVar(&f.warnDays, "warn-days", 30, "WARNING when a certificate expires within this many days")
	fl.IntVar(&f.critDays, "crit-days", 7, "CRITICAL when a certificate expires within this many days")
	fl.StringVar(&f.revocation, "revocation", "auto", "revocation checking: auto (stapled, then OCSP, then CRL) or off")
	fl.BoolVar(&f.lint, "lint", false, "run zlint on the leaf and report findings at warning or above")
	fl.StringVarP(&f.output, "output", "o", "text", "output format: "+strings.Join(output.Formats, ", "))
	fl.BoolVar(&f.allAddresses, "all-addresses", false, "probe every A/AAAA address of a name separately")
	fl.StringVar(&f.proxy, "proxy", "", "reach targets through `URL`: http://host:port (CONNECT) or socks5://host:port (default: HTTPS_PROXY/ALL_PROXY, NO_PROXY)")
	fl.BoolVar(&f.noColor, "no-color", false, "never colour the text output (also NO_COLOR)")
	return cmd
}

// usage marks an error in the user's input: UNKNOWN, exit 3.
func usage(format string, args ...any) error {
	return &exitError{code: 3, err: fmt.Errorf(format, args...)}
}

func (f *checkFlags) validate(args []string) error {
	if len(args) == 0 && f.file == "" {
		return usage("no targets: give TARGET arguments or --file")
	}
	if f.timeout <= 0 {
		return usage("--timeout must be positive, got %s", f.timeout)
	}
	if f.retries < 0 || f.retries > 10 {
		return usage("--retries must be from 0 to 10, got %d", f.retries)
	}
	if f.concurrency < 1 || f.concurrency > 10000 {
		return usage("--concurrency must be from 1 to 10000, got %d", f.concurrency)
	}
	if f.warnDays < 0 || f.critDays < 0 {
		return usage("--warn-days and --crit-days must not be negative")
	}
	if f.critDays > f.warnDays {
		return usage("--crit-days (%d) must not exceed --warn-days (%d)", f.critDays, f.warnDays)
	}
	if f.revocation != "auto" && f.revocation != "off" {
		return usage("--revocation must be auto or off, got %q", f.revocation)
	}
	if (f.clientCert == "") != (f.clientKey == "") {
		return usage("--client-cert and --client-key go together")
	}
	if f.starttls != "" {
		if _, err := target.Parse("x.invalid", f.starttls); err != nil {
			return usage("--starttls: unknown protocol %q (want one of %s, or none)", f.starttls, strings.Join(target.StartTLSNames, ", "))
		}
	}
	return nil
}

func runCheck(ctx context.Context, f *checkFlags, args []string, stdout, stderr io.Writer) error {
	if err := f.validate(args); err != nil {
		return err
	}
	// A check run is short-lived and its live heap small and bounded (the
	// verification cache and in-flight probes): trade some memory for
	// less collector CPU, unless the user set GOGC.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	roots, err := loadRoots(f.caFiles)
	if err != nil {
		return usage("%v", err)
	}
	popts := probe.Options{Timeout: f.timeout, Retries: f.retries, XMPPHost: f.xmppHost}
	if f.clientCert != "" {
		cert, err := tls.LoadX509KeyPair(f.clientCert, f.clientKey)
		if err != nil {
			return usage("--client-cert %s / --client-key %s: %v", f.clientCert, f.clientKey, err)
		}
		popts.ClientCertificate = &cert
	}
	if f.proxy != "" {
		d, err := probe.ProxyDialer(f.proxy)
		if err != nil {
			return usage("--proxy: %v", err)
		}
		popts.Dialer = d
	} else {
		popts.Dialer = probe.EnvironmentDialer()
	}
	out, err := output.New(f.output, stdout, output.Options{
		Color:    f.output == "text" && !f.noColor && os.Getenv("NO_COLOR") == "" && isTerminal(stdout),
		WarnDays: f.warnDays,
		CritDays: f.critDays,
	})
	if err != nil {
		return usage("--output: %v", err)
	}
	var input io.Reader
	if f.file != "" {
		if f.file == "-" {
			input = os.Stdin
		} else {
			file, err := os.Open(f.file)
			if err != nil {
				return usage("--file: %v", err)
			}
			defer file.Close()
			input = file
		}
	}

	fetcher := revocation.NewFetcher(revocation.Options{Timeout: f.timeout})
	// A small verification cache: it pays off for chains many targets
	// share; a long list of distinct chains must not grow memory.
	acfg := assess.Config{Roots: roots, Issuers: fetcher, CacheSize: 1000}
	if f.revocation == "auto" {
		acfg.Revocation = fetcher
	}
	if f.lint {
		acfg.Linter = assess.ZLint
	}
	chk := checker.New(checker.Config{
		Prober:   probe.New(popts),
		Assessor: assess.New(acfg),
		Policy: assess.Policy{
			WarnDays:   f.warnDays,
			CritDays:   f.critDays,
			Revocation: f.revocation == "auto",
			Lint:       f.lint,
		},
		SNI:          f.sni,
		StartTLS:     f.starttls,
		AllAddresses: f.allAddresses,
		Concurrency:  f.concurrency,
	})

	jobs := make(chan checker.Job, f.concurrency)
	readErr := make(chan error, 1)
	go func() {
		defer close(jobs)
		for _, a := range args {
			select {
			case jobs <- checker.Job{Raw: a}:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
		}
		if input != nil {
			readErr <- checker.ReadTargets(ctx, input, f.file, jobs)
			return
		}
		readErr <- nil
	}()

	worst := assess.OK
	count := 0
	runErr := chk.Run(ctx, jobs, func(r *assess.Result) error {
		count++
		worst = assess.Worse(worst, r.Status)
		return out.Write(r)
	})
	closeErr := out.Close()
	if err := errors.Join(runErr, <-readErr); err != nil {
		return &exitError{code: 3, err: err}
	}
	if closeErr != nil {
		return &exitError{code: 3, err: fmt.Errorf("writing output: %w", closeErr)}
	}
	if count == 0 {
		return usage("no targets in %s", f.file)
	}
	if code := worst.ExitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// loadRoots returns the system roots plus every certificate in files.
func loadRoots(files []string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificates found", name)
		}
	}
	return pool, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
