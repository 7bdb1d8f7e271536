// Package target parses what a user names as a thing to check ("example.com",
// "[::1]:8443", "smtp://mx.example.com:587") into a Target: protocol, host,
// port, SNI and the STARTTLS preamble to speak before the handshake.
package target

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Protocol describes how a scheme is reached: its default port and the
// plaintext preamble (STARTTLS) spoken before the TLS handshake, if any.
type Protocol struct {
	Name        string
	DefaultPort int
	// StartTLS names the preamble in package probe; empty means implicit TLS.
	StartTLS string
}

// protocols lists every scheme a target URL may name.
var protocols = map[string]Protocol{
	"tls":         {"tls", 443, ""},
	"https":       {"https", 443, ""},
	"smtp":        {"smtp", 25, "smtp"},
	"submission":  {"submission", 587, "smtp"},
	"smtps":       {"smtps", 465, ""},
	"imap":        {"imap", 143, "imap"},
	"imaps":       {"imaps", 993, ""},
	"pop3":        {"pop3", 110, "pop3"},
	"pop3s":       {"pop3s", 995, ""},
	"ftp":         {"ftp", 21, "ftp"},
	"ftps":        {"ftps", 990, ""},
	"ldap":        {"ldap", 389, "ldap"},
	"ldaps":       {"ldaps", 636, ""},
	"xmpp":        {"xmpp", 5222, "xmpp"},
	"xmpp-server": {"xmpp-server", 5269, "xmpp-server"},
	"postgres":    {"postgres", 5432, "postgres"},
	"postgresql":  {"postgres", 5432, "postgres"},
	"mysql":       {"mysql", 3306, "mysql"},
}

// StartTLSNames lists the values --starttls accepts.
var StartTLSNames = []string{"smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "xmpp-server", "postgres", "mysql"}

// Lookup returns the protocol for a scheme name.
func Lookup(scheme string) (Protocol, bool) {
	p, ok := protocols[strings.ToLower(scheme)]
	return p, ok
}

// Target is one endpoint to probe.
type Target struct {
	// Raw is the text the user gave, kept for output.
	Raw      string `json:"target"`
	Protocol string `json:"protocol"`
	// Host is a DNS name or an IP literal without brackets.
	Host string `json:"host"`
	Port int    `json:"port"`
	// StartTLS is the preamble to speak before TLS ("" for implicit TLS).
	StartTLS string `json:"starttls,omitempty"`
}

// HostPort returns host:port, bracketing IPv6 literals.
func (t Target) HostPort() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// IsIP reports whether the host is an IP literal.
func (t Target) IsIP() bool { return net.ParseIP(t.Host) != nil }

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid target")

// maxLen bounds a target; DNS names are at most 253 bytes, URLs add little.
const maxLen = 1024

// Parse reads a target: host, host:port, [v6]:port, or scheme://host[:port][/path].
// starttls, when not empty, overrides the preamble the scheme implies.
func Parse(raw, starttls string) (Target, error) {
	s := strings.TrimSpace(raw)
	fail := func(format string, args ...any) (Target, error) {
		return Target{}, fmt.Errorf("%w %q: %s", ErrInvalid, truncate(raw), fmt.Sprintf(format, args...))
	}
	if s == "" {
		return fail("empty")
	}
	if len(s) > maxLen {
		return fail("longer than %d bytes", maxLen)
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return fail("contains a space or control character")
		}
	}
	proto := protocols["tls"]
	hostport := s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := s[:i]
		p, ok := Lookup(scheme)
		if !ok {
			return fail("unknown scheme %q", scheme)
		}
		proto = p
		u, err := url.Parse(s)
		if err != nil {
			return fail("%v", unwrapURL(err))
		}
		if u.User != nil {
			return fail("credentials in the URL are not accepted")
		}
		hostport = u.Host
		if hostport == "" {
			return fail("no host")
		}
	}
	host, port, err := splitHostPort(hostport, proto.DefaultPort)
	if err != nil {
		return fail("%v", err)
	}
	t := Target{Raw: strings.TrimSpace(raw), Protocol: proto.Name, Host: host, Port: port, StartTLS: proto.StartTLS}
	if starttls != "" {
		name := strings.ToLower(starttls)
		if name == "none" || name == "tls" {
			t.StartTLS = ""
		} else if !validStartTLS(name) {
			return fail("unknown STARTTLS protocol %q (want one of %s)", starttls, strings.Join(StartTLSNames, ", "))
		} else {
			t.StartTLS = name
			if !strings.Contains(s, "://") {
				t.Protocol = name
			}
		}
	}
	return t, nil
}

// ParseWithProtocol reads a target as a monitor or agent job holds it: a
// protocol field names the scheme of a target written without one.
func ParseWithProtocol(raw, protocol string) (Target, error) {
	if protocol == "" || strings.Contains(raw, "://") {
		return Parse(raw, "")
	}
	if _, ok := Lookup(protocol); !ok {
		return Target{}, fmt.Errorf("%w %q: unknown protocol %q", ErrInvalid, truncate(raw), protocol)
	}
	t, err := Parse(protocol+"://"+raw, "")
	if err == nil {
		t.Raw = raw
	}
	return t, err
}

func validStartTLS(name string) bool {
	for _, n := range StartTLSNames {
		if n == name {
			return true
		}
	}
	return false
}

func splitHostPort(hp string, defaultPort int) (string, int, error) {
	host, portStr := hp, ""
	switch {
	case strings.HasPrefix(hp, "["):
		end := strings.Index(hp, "]")
		if end < 0 {
			return "", 0, errors.New("missing ']' in IPv6 address")
		}
		host = hp[1:end]
		rest := hp[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", 0, fmt.Errorf("unexpected %q after IPv6 address", rest)
			}
			portStr = rest[1:]
			if portStr == "" {
				return "", 0, errors.New("empty port")
			}
		}
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil && !strings.Contains(host, ":") {
			return "", 0, fmt.Errorf("%q is not an IPv6 address", host)
		}
	case strings.Count(hp, ":") > 1:
		// A bare IPv6 literal without a port.
		if net.ParseIP(hp) == nil {
			return "", 0, fmt.Errorf("%q is not an IPv6 address (write [addr]:port)", hp)
		}
	case strings.Contains(hp, ":"):
		i := strings.LastIndex(hp, ":")
		host, portStr = hp[:i], hp[i+1:]
		if portStr == "" {
			return "", 0, errors.New("empty port")
		}
	}
	port := defaultPort
	if portStr != "" {
		n, err := strconv.Atoi(portStr)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", portStr)
		}
		port = n
	}
	if host == "" {
		return "", 0, errors.New("no host")
	}
	if i := strings.IndexByte(host, '%'); i >= 0 && net.ParseIP(host[:i]) != nil {
		return host, port, nil // IPv6 with zone
	}
	if net.ParseIP(host) != nil {
		return host, port, nil
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if err := validHostname(host); err != nil {
		return "", 0, err
	}
	return host, port, nil
}

// validHostname accepts DNS names of letters, digits, '-', '_' and '.'.
// Underscores appear in real internal names; IDNs must be given as A-labels.
func validHostname(h string) error {
	if len(h) > 253 {
		return errors.New("host name longer than 253 bytes")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return fmt.Errorf("host %q has an empty label", h)
		}
		if len(label) > 63 {
			return fmt.Errorf("host %q has a label longer than 63 bytes", h)
		}
		for _, r := range label {
			ok := r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
			if !ok {
				return fmt.Errorf("host %q contains %q", h, r)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q has a label starting or ending with '-'", h)
		}
	}
	return nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}
