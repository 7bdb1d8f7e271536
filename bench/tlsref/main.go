// Command tlsref is the plain Go reference for the certmon throughput
// benchmark (see docs/benchmarks.md and bench/run.sh): a pool of goroutines
// (200 by default), each doing, per endpoint, a crypto/tls handshake with
// verification switched off and no session cache, then an x509 verification
// of the received chain against the given roots, with the other certificates
// as intermediates and the target's host (an IP here) as the name to match.
// No result is cached: every chain is verified.
//
// It prints one line: endpoints, errors, elapsed and endpoints/second, and
// exits 1 if any endpoint failed.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	targetsFile := flag.String("targets", "targets.txt", "file of host:port (or tls://host:port) targets, one per line")
	caFile := flag.String("ca", "ca.pem", "PEM file of the trusted roots")
	concurrency := flag.Int("c", 200, "goroutines")
	timeout := flag.Duration("timeout", 10*time.Second, "time limit for dial + handshake of one endpoint")
	verbose := flag.Bool("v", false, "print each error")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to `FILE`")
	flag.Parse()

	targets, err := readTargets(*targetsFile)
	if err != nil {
		fatal(err)
	}
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fatal(fmt.Errorf("%s: no PEM certificates", *caFile))
	}

	var (
		next   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		first  error
	)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer f.Close()
	}
	start := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(targets) {
					return
				}
				if err := check(targets[i], roots, *timeout); err != nil {
					failed.Add(1)
					err = fmt.Errorf("%s: %w", targets[i], err)
					if *verbose {
						fmt.Fprintln(os.Stderr, err)
					}
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	pprof.StopCPUProfile()

	fmt.Printf("endpoints=%d errors=%d elapsed=%.3fs endpoints_per_s=%.1f\n",
		len(targets), failed.Load(), elapsed.Seconds(), float64(len(targets))/elapsed.Seconds())
	if failed.Load() > 0 {
		fmt.Fprintln(os.Stderr, "tlsref: first error:", first)
		os.Exit(1)
	}
}

// check handshakes with one endpoint and verifies the chain it sent.
func check(addr string, roots *x509.CertPool, timeout time.Duration) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	cfg := &tls.Config{InsecureSkipVerify: true} // verified below; no session cache
	if net.ParseIP(host) == nil {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	defer tc.Close()
	chain := tc.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       host,
		CurrentTime:   time.Now(),
	}); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

func readTargets(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" {
			continue
		}
		out = append(out, strings.TrimPrefix(line, "tls://"))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no targets", name)
	}
	return out, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tlsref:", err)
	os.Exit(2)
}
