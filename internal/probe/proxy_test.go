package probe_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/probe"
)

// connectProxy is a minimal HTTP CONNECT proxy that counts tunnels.
func connectProxy(t *testing.T, tunnels *atomic.Int32) string {
	return certtest.Serve(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Method != http.MethodConnect {
			io.WriteString(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
			return
		}
		// Names under .test stand for loopback, so tests need no DNS.
		addr := req.Host
		if h, p, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(h, ".test") {
			addr = net.JoinHostPort("127.0.0.1", p)
		}
		up, err := net.Dial("tcp", addr)
		if err != nil {
			io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
			return
		}
		defer up.Close()
		tunnels.Add(1)
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		pipe(c, up)
	}).Addr
}

// socks5Proxy is a minimal no-auth SOCKS5 server (RFC 1928 CONNECT only).
func socks5Proxy(t *testing.T, tunnels *atomic.Int32) string {
	return certtest.Serve(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 262)
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf[:buf[1]]); err != nil {
			return
		}
		c.Write([]byte{5, 0})
		if _, err := io.ReadFull(c, buf[:4]); err != nil || buf[1] != 1 {
			return
		}
		var host string
		switch buf[3] {
		case 1:
			io.ReadFull(c, buf[:4])
			host = net.IP(buf[:4]).String()
		case 3:
			io.ReadFull(c, buf[:1])
			n := int(buf[0])
			io.ReadFull(c, buf[:n])
			host = string(buf[:n])
		default:
			return
		}
		io.ReadFull(c, buf[:2])
		port := binary.BigEndian.Uint16(buf[:2])
		up, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
			return
		}
		defer up.Close()
		tunnels.Add(1)
		c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
		pipe(c, up)
	}).Addr
}

func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(a, b); done <- struct{}{} }()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	<-done
}

func TestProbeThroughProxies(t *testing.T) {
	leaf := certtest.SelfSigned([]string{"example.test"})
	srv := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}})
	var tunnels atomic.Int32
	proxies := map[string]string{
		"http":   "http://" + connectProxy(t, &tunnels),
		"socks5": "socks5://" + socks5Proxy(t, &tunnels),
	}
	for name, url := range proxies {
		t.Run(name, func(t *testing.T) {
			d, err := probe.ProxyDialer(url)
			if err != nil {
				t.Fatal(err)
			}
			before := tunnels.Load()
			obs, _ := probeAddr(t, srv.Addr, probe.Options{Dialer: d})
			if obs.Err != nil {
				t.Fatalf("probe through %s: %v", name, obs.Err)
			}
			if tunnels.Load() != before+1 {
				t.Error("the proxy did not carry the connection")
			}
			if len(obs.Chain) != 1 || !bytes.Equal(obs.Chain[0], leaf.DER) {
				t.Error("chain not received through the proxy")
			}
			if obs.Address != srv.Addr {
				t.Errorf("address %q, want the target %q", obs.Address, srv.Addr)
			}
		})
	}
}

func TestProxyRefusalIsAnError(t *testing.T) {
	var tunnels atomic.Int32
	d, err := probe.ProxyDialer("http://" + connectProxy(t, &tunnels))
	if err != nil {
		t.Fatal(err)
	}
	obs, _ := probeAddr(t, closedPort(t), probe.Options{Dialer: d, Timeout: 2 * time.Second})
	if obs.Err == nil || obs.Err.Stage != probe.StageConnect {
		t.Fatalf("want a connect error, got %+v", obs.Err)
	}
}

func TestProxyDialerRejectsBadURL(t *testing.T) {
	for _, u := range []string{"ftp://proxy:21", "http://", "::bad"} {
		if _, err := probe.ProxyDialer(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func TestEnvironmentProxy(t *testing.T) {
	leaf := certtest.SelfSigned([]string{"example.test"})
	srv := certtest.ServeTLS(t, &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}})
	_, port, _ := net.SplitHostPort(srv.Addr)
	var tunnels atomic.Int32
	t.Setenv("HTTPS_PROXY", "http://"+connectProxy(t, &tunnels))
	t.Setenv("NO_PROXY", "")
	obs, _ := probeAddr(t, "example.test:"+port, probe.Options{Dialer: probe.EnvironmentDialer()})
	if obs.Err != nil || tunnels.Load() != 1 {
		t.Fatalf("HTTPS_PROXY not used: err %v tunnels %d", obs.Err, tunnels.Load())
	}
	// Loopback targets are never sent to a proxy.
	obs, _ = probeAddr(t, srv.Addr, probe.Options{Dialer: probe.EnvironmentDialer()})
	if obs.Err != nil || tunnels.Load() != 1 {
		t.Fatalf("loopback target went through the proxy: err %v tunnels %d", obs.Err, tunnels.Load())
	}
}
