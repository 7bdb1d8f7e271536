// Command tlsfarm serves many TLS endpoints on loopback for the certmon
// throughput benchmark (see docs/benchmarks.md and bench/run.sh).
//
// It listens on N ports of one loopback address (127.0.0.1 by default), each
// endpoint serving a leaf + intermediate chain under one root. In the default
// distinct mode every endpoint has its own leaf key and certificate, so all
// chains differ; with -shared every endpoint serves the same chain. Session
// tickets are disabled, so every handshake is a full one.
//
// With -out DIR it writes DIR/targets.txt (one host:port per line) and
// DIR/ca.pem (the root), then prints "ready" on stdout and serves until
// SIGTERM or SIGINT. On exit it reports on stderr how many handshakes it
// completed, failed and resumed (always zero resumed).
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 2000, "number of TLS endpoints")
	shared := flag.Bool("shared", false, "serve the same leaf+intermediate chain on every endpoint (default: a distinct leaf key and certificate per endpoint)")
	keyType := flag.String("key", "ecdsa", "leaf key type: ecdsa (P-256) or rsa (2048 bits)")
	keyPool := flag.Int("keypool", 0, "reuse this many leaf keys round-robin in distinct mode, each certificate still distinct (0: one key per endpoint; useful with -key rsa, whose keys are slow to make)")
	host := flag.String("host", "127.0.0.1", "loopback IPv4 address to listen on (must be in 127.0.0.0/8)")
	out := flag.String("out", "", "directory to write targets.txt and ca.pem into (required)")
	flag.Parse()

	if err := run(*n, *shared, *keyType, *keyPool, *host, *out); err != nil {
		fmt.Fprintln(os.Stderr, "tlsfarm:", err)
		os.Exit(1)
	}
}

type stats struct {
	ok, failed, resumed atomic.Int64
}

func run(n int, shared bool, keyType string, keyPool int, host, out string) error {
	if n < 1 {
		return fmt.Errorf("-n must be positive, got %d", n)
	}
	if out == "" {
		return errors.New("-out DIR is required")
	}
	if keyType != "ecdsa" && keyType != "rsa" {
		return fmt.Errorf("-key must be ecdsa or rsa, got %q", keyType)
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-host must be an IPv4 address in 127.0.0.0/8, got %q", host)
	}
	if err := raiseNoFile(uint64(2*n + 1024)); err != nil {
		fmt.Fprintln(os.Stderr, "tlsfarm: warning:", err)
	}

	start := time.Now()
	pki, err := newPKI()
	if err != nil {
		return err
	}
	sans := []net.IP{net.IPv4(127, 0, 0, 1)}
	if !ip.Equal(sans[0]) {
		sans = append(sans, ip)
	}
	configs, err := leafConfigs(pki, n, shared, keyType, keyPool, sans)
	if err != nil {
		return err
	}
	gen := time.Since(start)

	var st stats
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	var targets strings.Builder
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			return fmt.Errorf("listener %d of %d: %w", i+1, n, err)
		}
		listeners = append(listeners, l)
		targets.WriteString(l.Addr().String())
		targets.WriteByte('\n')
	}
	for i, l := range listeners {
		go acceptLoop(l, configs[i%len(configs)], &st)
	}

	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(out, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: pki.root.Raw})); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(out, "targets.txt"), []byte(targets.String())); err != nil {
		return err
	}
	mode := "distinct"
	if shared {
		mode = "shared"
	}
	fmt.Fprintf(os.Stderr, "tlsfarm: %d endpoints on %s, %s mode, %s leaf keys, %d distinct chain(s), certificates made in %s\n",
		n, ip, mode, keyType, len(configs), gen.Round(time.Millisecond))
	fmt.Println("ready")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	fmt.Fprintf(os.Stderr, "tlsfarm: handshakes ok=%d failed=%d resumed=%d\n", st.ok.Load(), st.failed.Load(), st.resumed.Load())
	return nil
}

func acceptLoop(l net.Listener, cfg *tls.Config, st *stats) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off briefly rather than spin.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go serve(c, cfg, st)
	}
}

func serve(c net.Conn, cfg *tls.Config, st *stats) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		st.failed.Add(1)
		return
	}
	st.ok.Add(1)
	if tc.ConnectionState().DidResume {
		st.resumed.Add(1)
	}
	// Let the client close first (it is done after the handshake).
	_, _ = io.Copy(io.Discard, tc)
}

type pki struct {
	root, inter *x509.Certificate
	interKey    crypto.Signer
}

func newPKI() (*pki, error) {
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{
			SerialNumber:          randSerial(),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"certmon bench"}},
			NotBefore:             now.Add(-24 * time.Hour),
			NotAfter:              now.AddDate(5, 0, 0),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
	}
	rt := caTmpl("certmon bench root")
	rootDER, err := x509.CreateCertificate(rand.Reader, rt, rt, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	it := caTmpl("certmon bench intermediate")
	it.MaxPathLenZero = true
	interDER, err := x509.CreateCertificate(rand.Reader, it, root, interKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	inter, err := x509.ParseCertificate(interDER)
	if err != nil {
		return nil, err
	}
	return &pki{root: root, inter: inter, interKey: interKey}, nil
}

// leafConfigs returns one server config per distinct chain: one in shared
// mode, n otherwise. Keys and certificates are made on every CPU.
func leafConfigs(p *pki, n int, shared bool, keyType string, keyPool int, ips []net.IP) ([]*tls.Config, error) {
	count := n
	if shared {
		count = 1
	}
	nkeys := count
	if keyPool > 0 && keyPool < count {
		nkeys = keyPool
	}
	keys := make([]crypto.Signer, nkeys)
	if err := parallel(nkeys, func(i int) error {
		var err error
		keys[i], err = newKey(keyType)
		return err
	}); err != nil {
		return nil, err
	}
	configs := make([]*tls.Config, count)
	err := parallel(count, func(i int) error {
		cert, err := issueLeaf(p, keys[i%nkeys], keyType, i, ips)
		if err != nil {
			return err
		}
		configs[i] = &tls.Config{
			Certificates:           []tls.Certificate{cert},
			SessionTicketsDisabled: true,
		}
		return nil
	})
	return configs, err
}

func newKey(keyType string) (crypto.Signer, error) {
	if keyType == "rsa" {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func issueLeaf(p *pki, key crypto.Signer, keyType string, i int, ips []net.IP) (tls.Certificate, error) {
	now := time.Now()
	usage := x509.KeyUsageDigitalSignature
	if keyType == "rsa" {
		usage |= x509.KeyUsageKeyEncipherment
	}
	t := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: fmt.Sprintf("endpoint-%d.localhost", i), Organization: []string{"certmon bench"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, t, p.inter, key.Public(), p.interKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{
		Certificate: [][]byte{der, p.inter.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

func randSerial() *big.Int {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return s.Add(s, big.NewInt(1))
}

// parallel runs fn(0..n-1) on GOMAXPROCS workers and returns the first error.
func parallel(n int, fn func(i int) error) error {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// raiseNoFile lifts RLIMIT_NOFILE to want (if the hard limit allows or we
// may raise it) or else to the hard limit.
func raiseNoFile(want uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= want {
		return nil
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			return nil
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur < want {
		return fmt.Errorf("RLIMIT_NOFILE is %d, below the %d wanted for the listeners and connections", lim.Cur, want)
	}
	return nil
}

// writeFile writes atomically, so a reader never sees half a file.
func writeFile(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
