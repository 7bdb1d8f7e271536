// Package checker runs a stream of targets through probe and assess on a
// bounded pool of workers and hands each Result on as soon as it is ready.
// It is the engine of `certmon check`; memory stays flat however long the
// target list is.
package checker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

// Job is one target as the user wrote it.
type Job struct {
	Raw string
	// Origin says where it came from ("args", "targets.txt:12") for errors.
	Origin string
}

// Config wires a Checker.
type Config struct {
	Prober   *probe.Prober
	Assessor *assess.Assessor
	// Policy holds the thresholds and switches; Hostname is set per target.
	Policy assess.Policy
	// SNI overrides the server name sent and verified.
	SNI string
	// StartTLS overrides the preamble the scheme implies.
	StartTLS string
	// AllAddresses probes every A/AAAA record separately.
	AllAddresses bool
	Concurrency  int
	// Now is the assessment instant (injected for tests).
	Now func() time.Time
}

// Checker runs jobs.
type Checker struct {
	cfg Config
}

// New returns a Checker.
func New(cfg Config) *Checker {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Checker{cfg: cfg}
}

// Run checks every job from jobs until it is closed or ctx ends, calling
// emit (never concurrently) with each result as it finishes. An emit error
// stops the run and is returned.
func (c *Checker) Run(ctx context.Context, jobs <-chan Job, emit func(*assess.Result) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu      sync.Mutex
		emitErr error
		wg      sync.WaitGroup
	)
	send := func(r *assess.Result) {
		mu.Lock()
		defer mu.Unlock()
		if emitErr != nil {
			return
		}
		if err := emit(r); err != nil {
			emitErr = err
			cancel()
		}
	}
	for range c.cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j, ok := <-jobs:
					if !ok {
						return
					}
					c.check(ctx, j, send)
				}
			}
		}()
	}
	wg.Wait()
	if emitErr != nil {
		return emitErr
	}
	return nil
}

// check runs one job, emitting one result per probed address.
func (c *Checker) check(ctx context.Context, j Job, send func(*assess.Result)) {
	t, err := target.Parse(j.Raw, c.cfg.StartTLS)
	if err != nil {
		send(InvalidResult(j, err))
		return
	}
	sni, hostname := probe.DefaultSNI(t), t.Host
	if c.cfg.SNI != "" {
		sni, hostname = c.cfg.SNI, c.cfg.SNI
	}
	pol := c.cfg.Policy
	pol.Hostname = hostname
	addrs := []string{""}
	if c.cfg.AllAddresses && !t.IsIP() {
		// A failed lookup falls through to one ordinary probe, which
		// reports the DNS error as UNREACHABLE.
		if found, err := c.cfg.Prober.Addresses(ctx, t); err == nil && len(found) > 0 {
			addrs = found
		}
	}
	for _, addr := range addrs {
		if ctx.Err() != nil {
			return
		}
		obs := c.cfg.Prober.Probe(ctx, probe.Request{Target: t, SNI: sni, Address: addr})
		r := c.cfg.Assessor.Assess(ctx, obs, pol, c.cfg.Now())
		send(&r)
	}
}

// InvalidResult is the UNKNOWN result for input that is not a target.
func InvalidResult(j Job, err error) *assess.Result {
	msg := err.Error()
	if j.Origin != "" {
		msg = j.Origin + ": " + msg
	}
	return &assess.Result{
		Target:   j.Raw,
		Status:   assess.Unknown,
		Problems: []assess.Problem{},
		Chain:    []assess.Certificate{},
		Verification: assess.Verification{
			Revocation: assess.RevocationNotChecked,
		},
		Error: &msg,
	}
}

// maxTargetLine bounds one line of a targets file.
const maxTargetLine = 64 << 10

// ReadTargets streams the targets of a file, one per line; blank lines and
// text after '#' are ignored. It closes jobs when done and stops early when
// ctx ends.
func ReadTargets(ctx context.Context, r io.Reader, name string, jobs chan<- Job) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxTargetLine)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		select {
		case jobs <- Job{Raw: line, Origin: fmt.Sprintf("%s:%d", name, n)}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s: a line is longer than %d bytes", name, maxTargetLine)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
