package probe_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/probe"
	"github.com/certmon/certmon/internal/target"
)

func mustTarget(t *testing.T, raw string) target.Target {
	t.Helper()
	tg, err := target.Parse(raw, "")
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func probeAddr(t *testing.T, addr string, o probe.Options) (*probe.Observation, time.Duration) {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	start := time.Now()
	obs := probe.New(o).Probe(context.Background(), probe.Request{Target: mustTarget(t, addr), SNI: "example.test"})
	return obs, time.Since(start)
}

func TestProbeCapturesChainAsSent(t *testing.T) {
	root := certtest.NewRootCA("Root")
	inter := root.Intermediate("Inter")
	leaf := inter.Leaf([]string{"example.test"})
	srv := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf, &inter.Cert)}})

	obs, _ := probeAddr(t, srv.Addr, probe.Options{})
	if obs.Err != nil {
		t.Fatalf("unexpected error: %v", obs.Err)
	}
	if len(obs.Chain) != 2 || !bytes.Equal(obs.Chain[0], leaf.DER) || !bytes.Equal(obs.Chain[1], inter.DER) {
		t.Fatalf("chain not as sent: %d certificates", len(obs.Chain))
	}
	if obs.Version != tls.VersionTLS13 || obs.CipherSuite == 0 {
		t.Errorf("version %x cipher %x", obs.Version, obs.CipherSuite)
	}
	if obs.SNI != "example.test" || obs.Address != srv.Addr {
		t.Errorf("sni %q address %q", obs.SNI, obs.Address)
	}
	if obs.ClientAuthRequested {
		t.Error("client auth reported though not requested")
	}
}

func TestProbeSendsSNIOnlyWhenAsked(t *testing.T) {
	leaf := certtest.SelfSigned([]string{"127.0.0.1"})
	got := make(chan string, 2)
	srv := certtest.ServeTLS(t, &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		got <- h.ServerName
		c := certtest.TLSCertificate(leaf)
		return &c, nil
	}})
	p := probe.New(probe.Options{Timeout: 2 * time.Second})
	tg := mustTarget(t, srv.Addr)
	p.Probe(context.Background(), probe.Request{Target: tg, SNI: probe.DefaultSNI(tg)})
	if sni := <-got; sni != "" {
		t.Errorf("IP target sent SNI %q, want none", sni)
	}
	p.Probe(context.Background(), probe.Request{Target: tg, SNI: "named.test"})
	if sni := <-got; sni != "named.test" {
		t.Errorf("sent SNI %q, want named.test", sni)
	}
}

func TestProbeClientCertificate(t *testing.T) {
	root := certtest.NewRootCA("Root")
	leaf := root.Leaf([]string{"example.test"})
	client := root.Leaf([]string{"client.test"})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			srv := certtest.ServeTLS(t, &tls.Config{
				Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    certtest.Pool(root),
				MaxVersion:   v,
				Time:         func() time.Time { return certtest.Now },
			})
			// Without a certificate the server refuses us, but the chain
			// it sent first is still recorded.
			obs, _ := probeAddr(t, srv.Addr, probe.Options{})
			if !obs.ClientAuthRequested {
				t.Error("client auth request not recorded")
			}
			if len(obs.Chain) != 1 || !bytes.Equal(obs.Chain[0], leaf.DER) {
				t.Fatalf("chain lost after client-auth failure: %d certificates", len(obs.Chain))
			}
			if obs.Err == nil {
				t.Fatal("server rejected us but no error was recorded")
			}
			// With a certificate the handshake completes.
			cc := certtest.TLSCertificate(client)
			obs, _ = probeAddr(t, srv.Addr, probe.Options{ClientCertificate: &cc})
			if obs.Err != nil || obs.Version != v {
				t.Fatalf("mTLS handshake: err %v version %x", obs.Err, obs.Version)
			}
		})
	}
}

// rawServer serves a handler that speaks raw bytes, not TLS.
func rawServer(t *testing.T, h func(c net.Conn)) string {
	return certtest.Serve(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		h(c)
	}).Addr
}

func TestProbeHostileServers(t *testing.T) {
	root := certtest.NewRootCA("Root")
	inter := root.Intermediate("Inter")
	leaf := inter.Leaf([]string{"example.test"})
	longChain := certtest.TLSCertificate(leaf)
	for range 59 {
		longChain.Certificate = append(longChain.Certificate, inter.DER)
	}
	malformed := certtest.TLSCertificate(leaf)
	malformed.Certificate = [][]byte{[]byte("\x30\x82\x01\x00not a certificate at all")}
	malformed.Leaf = nil

	cases := []struct {
		name    string
		addr    string
		stage   probe.Stage
		timeout bool
		want    string
	}{
		{
			name:  "garbage",
			addr:  rawServer(t, func(c net.Conn) { io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n"); time.Sleep(time.Second) }),
			stage: probe.StageHandshake, want: "does not look like a TLS handshake",
		},
		{
			name:  "silence",
			addr:  rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) }),
			stage: probe.StageHandshake, timeout: true,
		},
		{
			name: "endless bytes",
			addr: rawServer(t, func(c net.Conn) {
				chunk := bytes.Repeat([]byte{0x16, 0x03, 0x03, 0xff, 0xff}, 1000)
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}),
			stage: probe.StageHandshake,
		},
		{
			name:  "closes at once",
			addr:  rawServer(t, readHelloThenClose),
			stage: probe.StageHandshake, want: "EOF",
		},
		{
			name:  "60-certificate chain",
			addr:  certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{longChain}}).Addr,
			stage: probe.StageHandshake, want: "60 certificates, more than the limit of 20",
		},
		{
			name:  "malformed DER",
			addr:  certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{malformed}}).Addr,
			stage: probe.StageHandshake, want: "certificate",
		},
		{
			name:  "10 MB certificate message",
			addr:  rawServer(t, hugeCertificateMessage),
			stage: probe.StageHandshake, want: "exceeds maximum",
		},
		{
			name:  "refused",
			addr:  closedPort(t),
			stage: probe.StageConnect, want: "refused",
		},
	}
	const timeout = 1500 * time.Millisecond
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obs, took := probeAddr(t, tc.addr, probe.Options{Timeout: timeout})
			if obs.Err == nil {
				t.Fatal("hostile server gave no error")
			}
			if obs.Err.Stage != tc.stage {
				t.Errorf("stage %q, want %q (%v)", obs.Err.Stage, tc.stage, obs.Err)
			}
			if tc.timeout != obs.Err.Timeout {
				t.Errorf("timeout %v, want %v (%v)", obs.Err.Timeout, tc.timeout, obs.Err)
			}
			if !strings.Contains(obs.Err.Message, tc.want) {
				t.Errorf("message %q does not mention %q", obs.Err.Message, tc.want)
			}
			if took > timeout+time.Second {
				t.Errorf("took %v, beyond the %v timeout", took, timeout)
			}
			if obs.Version != 0 {
				t.Error("version recorded for a failed handshake")
			}
		})
	}
}

// hugeCertificateMessage answers a ClientHello with a valid TLS 1.2
// ServerHello, then announces a 10 MB Certificate message and streams it.
func hugeCertificateMessage(c net.Conn) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return
	}
	if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(hdr[3:]))); err != nil {
		return
	}
	body := []byte{0x03, 0x03}
	body = append(body, make([]byte, 32)...)    // server random
	body = append(body, 0x00, 0xc0, 0x2f, 0x00) // no session id, ECDHE-RSA-AES128-GCM, no compression
	hello := append([]byte{0x02, 0x00, 0x00, byte(len(body))}, body...)
	record := append([]byte{0x16, 0x03, 0x03, 0x00, byte(len(hello))}, hello...)
	const size = 10 << 20
	certMsg := []byte{0x0b, byte(size >> 16 & 0xff), byte(size >> 8 & 0xff), byte(size & 0xff)}
	record = append(record, 0x16, 0x03, 0x03, 0x40, 0x00)
	record = append(record, certMsg...)
	record = append(record, make([]byte, 0x4000-len(certMsg))...)
	if _, err := c.Write(record); err != nil {
		return
	}
	filler := append([]byte{0x16, 0x03, 0x03, 0x40, 0x00}, make([]byte, 0x4000)...)
	for sent := 0; sent < size; sent += 0x4000 {
		if _, err := c.Write(filler); err != nil {
			return
		}
	}
}

// readHelloThenClose reads the whole ClientHello record, then hangs up.
func readHelloThenClose(c net.Conn) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err == nil {
		io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(hdr[3:])))
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestProbeRetriesWithBackoff(t *testing.T) {
	addr := closedPort(t)
	obs, _ := probeAddr(t, addr, probe.Options{Retries: 2, RetryBackoff: 10 * time.Millisecond})
	if obs.Attempts != 3 {
		t.Errorf("attempts %d, want 3", obs.Attempts)
	}
	if obs.Err == nil || obs.Err.Reachable() {
		t.Errorf("want an unreachable error, got %v", obs.Err)
	}
}

func TestProbeCancelledContextReturnsAtOnce(t *testing.T) {
	addr := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	obs := probe.New(probe.Options{Timeout: 10 * time.Second}).Probe(ctx, probe.Request{Target: mustTarget(t, addr)})
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("cancel not honoured: took %v", took)
	}
	if obs.Err == nil {
		t.Fatal("no error after cancel")
	}
}

func TestProbeDNSFailure(t *testing.T) {
	// A resolver that fails locally: no query leaves the machine.
	r := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in this test")
	}}
	obs, _ := probeAddr(t, "no-such-host.invalid:443", probe.Options{Resolver: r})
	if obs.Err == nil || obs.Err.Stage != probe.StageResolve {
		t.Fatalf("want a resolve error, got %+v", obs.Err)
	}
}
