package certtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/xml"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Fault makes a STARTTLS test server misbehave in one way.
type Fault int

const (
	// Behave is a well-behaved server.
	Behave Fault = iota
	// Refuse answers the upgrade request with a refusal: SMTP 454, IMAP
	// BAD, POP3 -ERR, FTP 534, LDAP protocolError, XMPP <failure/>,
	// PostgreSQL 'N'. A MySQL server leaves CLIENT_SSL out of its
	// capabilities.
	Refuse
	// NotOffered leaves STARTTLS out of what the server advertises (SMTP
	// EHLO, XMPP features, MySQL capabilities); other protocols refuse as
	// with Refuse.
	NotOffered
	// Inject agrees to start TLS and sends plaintext in the same write
	// (CVE-2011-0411 style). A MySQL server appends it to its handshake,
	// since it says nothing after the client's SSLRequest.
	Inject
	// EndlessBanner sends a greeting or answer that never ends (a line
	// protocol's continuation lines, a binary protocol's huge length).
	EndlessBanner
	// Garbage answers with an HTTP error instead of the protocol.
	Garbage
	// Silent accepts the connection and never says anything.
	Silent
)

// InjectedPlaintext is what an Inject server sends after agreeing.
const InjectedPlaintext = "INJECTED PLAINTEXT\r\n"

// STARTTLSProtocols lists the dialogues ServeSTARTTLS speaks, named as in
// target.Protocol.StartTLS.
func STARTTLSProtocols() []string {
	return []string{"smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "xmpp-server", "postgres", "mysql"}
}

// ServeSTARTTLS serves proto's plaintext dialogue up to the upgrade, then
// TLS with cfg, until the test ends.
func ServeSTARTTLS(t testing.TB, proto string, cfg *tls.Config) *Server {
	t.Helper()
	return ServeFaultySTARTTLS(t, proto, cfg, Behave)
}

// ServeFaultySTARTTLS is ServeSTARTTLS with a server that misbehaves as f
// says; cfg may be nil for faults that never reach TLS.
func ServeFaultySTARTTLS(t testing.TB, proto string, cfg *tls.Config, f Fault) *Server {
	t.Helper()
	dialogue, ok := dialogues[proto]
	if !ok {
		t.Fatalf("certtest: no STARTTLS dialogue for %q", proto)
	}
	return Serve(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		s := &session{Conn: c, r: bufio.NewReader(c), fault: f}
		switch f {
		case Garbage:
			s.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			s.drain()
			return
		case Silent:
			s.drain()
			return
		}
		if !dialogue(s) || cfg == nil {
			s.drain()
			return
		}
		// The TLS layer reads through s.r, which may hold bytes already.
		TLSHandler(cfg)(s)
	})
}

// session is one server-side connection; reads go through r so bytes it
// buffered before TLS are not lost.
type session struct {
	net.Conn
	r     *bufio.Reader
	fault Fault
}

func (s *session) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *session) write(msg string) bool {
	_, err := io.WriteString(s.Conn, msg)
	return err == nil
}

// agree sends the go-ahead for TLS, with injected plaintext in the same
// write when asked to.
func (s *session) agree(msg string) bool {
	if s.fault == Inject {
		msg += InjectedPlaintext
	}
	return s.write(msg)
}

// endless writes chunk until the client hangs up.
func (s *session) endless(chunk string) {
	for s.write(chunk) {
	}
}

// drain holds the connection until the client closes it.
func (s *session) drain() { _, _ = io.Copy(io.Discard, s.r) }

func (s *session) readLine() (string, bool) {
	line, err := s.r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err == nil
}

// refuses reports whether this session must turn the upgrade down.
func (s *session) refuses() bool { return s.fault == Refuse || s.fault == NotOffered }

// dialogues speak each protocol's server side up to the TLS upgrade and
// report whether to go on with TLS.
var dialogues = map[string]func(s *session) bool{
	"smtp":        smtpServer,
	"imap":        imapServer,
	"pop3":        pop3Server,
	"ftp":         ftpServer,
	"ldap":        ldapServer,
	"xmpp":        func(s *session) bool { return xmppServer(s, "jabber:client") },
	"xmpp-server": func(s *session) bool { return xmppServer(s, "jabber:server") },
	"postgres":    postgresServer,
	"mysql":       mysqlServer,
}

func smtpServer(s *session) bool {
	if s.fault == EndlessBanner {
		s.endless("220-certtest ESMTP: this banner goes on and on and on and on\r\n")
		return false
	}
	if !s.write("220-certtest.invalid ESMTP\r\n220 multi-line greeting\r\n") {
		return false
	}
	for {
		line, ok := s.readLine()
		if !ok {
			return false
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			ext := "250-certtest.invalid\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
			if s.fault != NotOffered {
				ext += "250-STARTTLS\r\n"
			}
			s.write(ext + "250 8BITMIME\r\n")
		case "HELO":
			s.write("250 certtest.invalid\r\n")
		case "STARTTLS":
			if s.refuses() {
				s.write("454 4.7.0 TLS not available due to local problem\r\n")
				continue
			}
			return s.agree("220 2.0.0 Ready to start TLS\r\n")
		case "QUIT":
			s.write("221 2.0.0 Bye\r\n")
			return false
		default:
			s.write("502 5.5.2 Error: command not recognized\r\n")
		}
	}
}

func imapServer(s *session) bool {
	if s.fault == EndlessBanner {
		s.endless("* OK [ALERT] this server never stops talking, never, ever\r\n")
		return false
	}
	if !s.write("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] certtest ready\r\n") {
		return false
	}
	for {
		line, ok := s.readLine()
		if !ok {
			return false
		}
		tag, cmd, _ := strings.Cut(line, " ")
		switch strings.ToUpper(cmd) {
		case "STARTTLS":
			if s.refuses() {
				s.write(tag + " BAD STARTTLS not available\r\n")
				continue
			}
			return s.agree(tag + " OK Begin TLS negotiation now\r\n")
		case "CAPABILITY":
			s.write("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + " OK done\r\n")
		case "LOGOUT":
			s.write("* BYE logging out\r\n" + tag + " OK done\r\n")
			return false
		default:
			s.write(tag + " BAD unknown command\r\n")
		}
	}
}

func pop3Server(s *session) bool {
	if s.fault == EndlessBanner {
		// POP3 answers are one line: make that line endless.
		s.write("+OK ")
		s.endless("certtest POP3 server says more and more ")
		return false
	}
	if !s.write("+OK certtest POP3 ready\r\n") {
		return false
	}
	for {
		line, ok := s.readLine()
		if !ok {
			return false
		}
		switch strings.ToUpper(line) {
		case "STLS":
			if s.refuses() {
				s.write("-ERR TLS not available\r\n")
				continue
			}
			return s.agree("+OK Begin TLS negotiation\r\n")
		case "CAPA":
			s.write("+OK\r\nSTLS\r\nUSER\r\n.\r\n")
		case "QUIT":
			s.write("+OK bye\r\n")
			return false
		default:
			s.write("-ERR unknown command\r\n")
		}
	}
}

func ftpServer(s *session) bool {
	if s.fault == EndlessBanner {
		s.write("220-certtest FTP\r\n")
		s.endless("    a continuation line of a banner that never ends\r\n")
		return false
	}
	// Middle lines of an FTP multi-line reply need not carry the code.
	if !s.write("220-certtest FTP\r\n  welcome\r\n220-still welcome\r\n220 ready\r\n") {
		return false
	}
	for {
		line, ok := s.readLine()
		if !ok {
			return false
		}
		switch strings.ToUpper(line) {
		case "AUTH TLS", "AUTH SSL":
			if s.refuses() {
				s.write("534 Request denied for policy reasons\r\n")
				continue
			}
			return s.agree("234 Proceed with negotiation.\r\n")
		case "FEAT":
			s.write("211-Features:\r\n AUTH TLS\r\n211 End\r\n")
		case "QUIT":
			s.write("221 Goodbye.\r\n")
			return false
		default:
			s.write("500 Unknown command.\r\n")
		}
	}
}

// ldapStartTLSOID names the StartTLS extended operation.
const ldapStartTLSOID = "1.3.6.1.4.1.1466.20037"

// ber encodes one BER element with a definite length.
func ber(tag byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	out := []byte{tag}
	switch n := len(body); {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, body...)
}

func ldapServer(s *session) bool {
	// The request is small: SEQUENCE, one length octet, the body.
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(s.r, hdr); err != nil || hdr[0] != 0x30 || hdr[1] >= 0x80 {
		return false
	}
	req := make([]byte, hdr[1])
	if _, err := io.ReadFull(s.r, req); err != nil {
		return false
	}
	msgID := []byte{1}
	if len(req) > 3 && req[0] == 0x02 && req[1] == 1 {
		msgID = req[2:3]
	}
	if s.fault == EndlessBanner {
		// Announce a 16 MB message and keep sending it.
		s.write("\x30\x84\x01\x00\x00\x00")
		s.endless(strings.Repeat("\x04", 1024))
		return false
	}
	code, diag := byte(0), ""
	if !bytes.Contains(req, []byte(ldapStartTLSOID)) {
		code, diag = 2, "unsupported extended operation"
	} else if s.refuses() {
		code, diag = 52, "StartTLS not configured"
	}
	resp := ber(0x30,
		ber(0x02, msgID),
		ber(0x78, // ExtendedResponse
			ber(0x0a, []byte{code}),
			ber(0x04),
			ber(0x04, []byte(diag)),
			ber(0x8a, []byte(ldapStartTLSOID)),
		))
	if code != 0 {
		s.write(string(resp))
		return false
	}
	return s.agree(string(resp))
}

func xmppServer(s *session, ns string) bool {
	d := xml.NewDecoder(s.r)
	var to string
	for to == "" {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			for _, a := range se.Attr {
				if a.Name.Local == "to" {
					to = a.Value
				}
			}
			if to == "" {
				break
			}
		}
	}
	var from bytes.Buffer
	_ = xml.EscapeText(&from, []byte(to))
	header := "<?xml version='1.0'?><stream:stream xmlns='" + ns + "' xmlns:stream='http://etherx.jabber.org/streams' id='certtest-1' from='" + from.String() + "' version='1.0' xml:lang='en'>"
	if to == "" {
		s.write(header + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no to</text></stream:error></stream:stream>")
		return false
	}
	if s.fault == EndlessBanner {
		s.write(header)
		s.endless("<!-- whitespace and comments forever -->\n")
		return false
	}
	features := "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
	if s.fault == NotOffered {
		features = "<stream:features>"
	}
	features += "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
	if !s.write(header + "\n" + features) {
		return false
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return false
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "starttls" {
				return false
			}
			break
		}
	}
	if s.refuses() {
		s.write("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
		return false
	}
	return s.agree("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
}

func postgresServer(s *session) bool {
	var req [8]byte
	if _, err := io.ReadFull(s.r, req[:]); err != nil {
		return false
	}
	if binary.BigEndian.Uint32(req[:4]) != 8 || binary.BigEndian.Uint32(req[4:]) != 80877103 {
		s.write("EXXXX")
		return false
	}
	switch {
	case s.fault == EndlessBanner:
		// An ErrorResponse announcing 1 GB.
		s.write("E\x40\x00\x00\x00")
		s.endless(strings.Repeat("M", 1024))
		return false
	case s.refuses():
		s.write("N")
		return false
	}
	return s.agree("S")
}

// mysqlServer sends a HandshakeV10 like MySQL 8 and expects SSLRequest.
func mysqlServer(s *session) bool {
	if s.fault == EndlessBanner {
		// A 16 MB packet, sent forever.
		s.write("\xff\xff\xff\x00")
		s.endless(strings.Repeat("\x00", 1024))
		return false
	}
	const (
		clientSSL = 0x0800
		caps      = 0x000fffff // everything up to CLIENT_PLUGIN_AUTH
	)
	c := uint32(caps)
	if s.refuses() {
		c &^= clientSSL
	}
	p := []byte{10}
	p = append(p, "8.0.36-certtest\x00"...)
	p = binary.LittleEndian.AppendUint32(p, 42) // connection id
	p = append(p, "abcdefgh"...)                // auth-plugin-data part 1
	p = append(p, 0)                            // filler
	p = binary.LittleEndian.AppendUint16(p, uint16(c))
	p = append(p, 255)                            // charset utf8mb4_0900_ai_ci
	p = binary.LittleEndian.AppendUint16(p, 0x02) // status: autocommit
	p = binary.LittleEndian.AppendUint16(p, uint16(c>>16))
	p = append(p, 21)                    // auth-plugin-data length
	p = append(p, make([]byte, 10)...)   // reserved
	p = append(p, "ijklmnopqrst\x00"...) // auth-plugin-data part 2
	p = append(p, "caching_sha2_password\x00"...)
	pkt := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 0}
	pkt = append(pkt, p...)
	if c&clientSSL == 0 {
		s.write(string(pkt))
		return false
	}
	if !s.agree(string(pkt)) {
		return false
	}
	// SSLRequest: 32 bytes, sequence 1, CLIENT_SSL set.
	var hdr [4]byte
	if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
		return false
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if n < 32 || n > 1024 || hdr[3] != 1 {
		return false
	}
	req := make([]byte, n)
	if _, err := io.ReadFull(s.r, req); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(req)&clientSSL != 0
}
