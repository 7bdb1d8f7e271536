package probe

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/proxy"
)

// proxyDialer marks dialers that reach the target through a proxy, so the
// Observation records the target address rather than the proxy's.
type proxyDialer interface {
	Dialer
	viaProxy()
}

// ProxyDialer returns a Dialer that tunnels through the proxy at rawURL:
// http://[user:pass@]host:port (HTTP CONNECT) or socks5://[user:pass@]host:port.
func ProxyDialer(rawURL string) (Dialer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("proxy %q: %w", rawURL, err)
	}
	return newProxyDialer(u, &net.Dialer{KeepAlive: -1})
}

// EnvironmentDialer picks a proxy per target from HTTPS_PROXY, ALL_PROXY
// and NO_PROXY (and their lower-case forms), or dials directly.
func EnvironmentDialer() Dialer {
	cfg := httpproxy.FromEnvironment()
	if cfg.HTTPSProxy == "" {
		if all := firstEnv("ALL_PROXY", "all_proxy"); all != "" {
			cfg.HTTPSProxy = all
		}
	}
	if cfg.HTTPSProxy == "" {
		return &net.Dialer{KeepAlive: -1}
	}
	return &envDialer{proxyFor: cfg.ProxyFunc(), direct: &net.Dialer{KeepAlive: -1}}
}

type envDialer struct {
	proxyFor func(*url.URL) (*url.URL, error)
	direct   *net.Dialer
}

func (*envDialer) viaProxy() {}

func (d *envDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	pu, err := d.proxyFor(&url.URL{Scheme: "https", Host: addr})
	if err != nil {
		return nil, err
	}
	if pu == nil {
		return d.direct.DialContext(ctx, network, addr)
	}
	pd, err := newProxyDialer(pu, d.direct)
	if err != nil {
		return nil, err
	}
	return pd.DialContext(ctx, network, addr)
}

func newProxyDialer(u *url.URL, forward *net.Dialer) (Dialer, error) {
	if u.Host == "" {
		return nil, fmt.Errorf("proxy %q: no host", u.Redacted())
	}
	switch u.Scheme {
	case "http":
		return &connectDialer{proxy: u, forward: forward}, nil
	case "socks5", "socks5h":
		var auth *proxy.Auth
		if u.User != nil {
			pw, _ := u.User.Password()
			auth = &proxy.Auth{User: u.User.Username(), Password: pw}
		}
		d, err := proxy.SOCKS5("tcp", u.Host, auth, forward)
		if err != nil {
			return nil, err
		}
		return socksDialer{d.(proxy.ContextDialer)}, nil
	default:
		return nil, fmt.Errorf("proxy %q: scheme must be http or socks5", u.Redacted())
	}
}

type socksDialer struct{ proxy.ContextDialer }

func (socksDialer) viaProxy() {}

// connectDialer tunnels through an HTTP proxy with CONNECT.
type connectDialer struct {
	proxy   *url.URL
	forward *net.Dialer
}

func (*connectDialer) viaProxy() {}

// maxConnectResponse bounds the proxy's answer to CONNECT.
const maxConnectResponse = 16 << 10

func (d *connectDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.forward.DialContext(ctx, network, d.proxy.Host)
	if err != nil {
		return nil, fmt.Errorf("proxy %s: %w", d.proxy.Host, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: http.Header{},
	}
	if u := d.proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: %w", d.proxy.Host, err)
	}
	// Read the answer one byte at a time, bounded, so no byte of the tunnel
	// (an SMTP banner) is swallowed by a buffer.
	br := bufio.NewReaderSize(oneByteReader{io.LimitReader(conn, maxConnectResponse)}, 16)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("proxy %s: reading CONNECT answer: %w", d.proxy.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, fmt.Errorf("proxy %s refused CONNECT %s: %s", d.proxy.Host, addr, resp.Status)
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, fmt.Errorf("proxy %s sent data before the tunnel opened", d.proxy.Host)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
