package target

import (
	"net"
	"strconv"
	"testing"
)

// FuzzParseTarget checks that no input makes Parse panic and that what it
// accepts is usable: a host, a port in range, a dialable host:port.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"example.com", "example.com:8443", "[::1]:993", "::1", "[fe80::1%eth0]:25",
		"smtp://mx.example.com:587", "imap://[2001:db8::1]", "xmpp-server://chat.example.org",
		"https://example.com/path?q=1", "ldap://user:pw@host", "host:", "[::1", "a..b", "HTTPS://EXAMPLE.COM.",
		"postgres://db:0", "mysql://db:65536", "tls://" + string(rune(0x7f)),
	} {
		f.Add(s, "")
	}
	f.Add("example.com:25", "smtp")
	f.Add("example.com", "none")
	f.Add("example.com", "bogus")
	f.Fuzz(func(t *testing.T, raw, starttls string) {
		tg, err := Parse(raw, starttls)
		if err != nil {
			return
		}
		if tg.Host == "" {
			t.Fatalf("Parse(%q, %q) accepted an empty host: %+v", raw, starttls, tg)
		}
		if tg.Port < 1 || tg.Port > 65535 {
			t.Fatalf("Parse(%q, %q) accepted port %d", raw, starttls, tg.Port)
		}
		host, port, err := net.SplitHostPort(tg.HostPort())
		if err != nil || host != tg.Host || port != strconv.Itoa(tg.Port) {
			t.Fatalf("Parse(%q, %q): HostPort %q does not split back (%v)", raw, starttls, tg.HostPort(), err)
		}
		if tg.StartTLS != "" && !validStartTLS(tg.StartTLS) {
			t.Fatalf("Parse(%q, %q): unknown STARTTLS %q", raw, starttls, tg.StartTLS)
		}
	})
}
