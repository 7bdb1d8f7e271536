package probe

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
	"github.com/certmon/certmon/internal/target"
)

// tlsMarker stands for the server's first TLS bytes: a dialogue that stops
// reading exactly at the go-ahead leaves all of it unread.
const tlsMarker = "\x16\x03\x03TLS"

// fakeConn plays a fixed server script: reads come from it, writes are
// recorded. Deadlines are ignored.
type fakeConn struct {
	r       io.Reader
	written bytes.Buffer
}

func newFakeConn(script []byte) *fakeConn { return &fakeConn{r: bytes.NewReader(script)} }

func (f *fakeConn) Read(p []byte) (int, error)       { return f.r.Read(p) }
func (f *fakeConn) Write(p []byte) (int, error)      { return f.written.Write(p) }
func (f *fakeConn) Close() error                     { return nil }
func (f *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (f *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*fakeConn)(nil)

// runDialogue runs proto's preamble against a server script and returns
// what the client wrote and what it left unread.
func runDialogue(proto string, script []byte, o PreambleOptions) (written, unread string, err error) {
	fc := newFakeConn(script)
	pc := newPreambleConn(fc)
	err = preambles[proto](pc, o)
	rest, _ := io.ReadAll(pc.R)
	return fc.written.String(), string(rest), err
}

// berElem encodes one BER element (short or two-octet length).
func berElem(tag byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	out := []byte{tag}
	if len(body) < 0x80 {
		out = append(out, byte(len(body)))
	} else {
		out = append(out, 0x82, byte(len(body)>>8), byte(len(body)))
	}
	return append(out, body...)
}

func ldapResp(msgID, code byte, diag string) string {
	return string(berElem(0x30,
		berElem(0x02, []byte{msgID}),
		berElem(0x78, berElem(0x0a, []byte{code}), berElem(0x04), berElem(0x04, []byte(diag)), berElem(0x8a, []byte(ldapStartTLSOID))),
	))
}

// mysqlGreeting builds a HandshakeV10 packet with the given capabilities.
func mysqlGreeting(seq byte, caps uint32) string {
	p := []byte{10}
	p = append(p, "10.11.19-MariaDB\x00"...)
	p = binary.LittleEndian.AppendUint32(p, 7)
	p = append(p, "12345678\x00"...)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps))
	p = append(p, 45)
	p = binary.LittleEndian.AppendUint16(p, 2)
	p = binary.LittleEndian.AppendUint16(p, uint16(caps>>16))
	p = append(p, 21)
	p = append(p, make([]byte, 10)...)
	p = append(p, "123456789012\x00mysql_native_password\x00"...)
	return mysqlPacket(seq, p)
}

func mysqlPacket(seq byte, p []byte) string {
	return string(append([]byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), seq}, p...))
}

func pgError(fields ...string) string {
	body := strings.Join(fields, "\x00") + "\x00\x00"
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(body)+4))
	return "E" + string(n[:]) + body
}

const (
	xmppHeader   = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='example.org' version='1.0'>"
	xmppFeatures = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
	xmppProceed  = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
)

// dialogueCase is a server script and what the client must make of it.
// Successful scripts end with tlsMarker, which must be left unread.
type dialogueCase struct {
	name, proto, script string
	// wantErr is a substring of the error; empty means success.
	wantErr string
	// wantWritten, when set, must be contained in what the client sent.
	wantWritten string
}

var dialogueCases = []dialogueCase{
	{name: "smtp ok", proto: "smtp",
		script:      "220-mx.example.org ESMTP\r\n220 hi\r\n250-mx.example.org\r\n250-SIZE 1000\r\n250-starttls\r\n250 8BITMIME\r\n220 2.0.0 go ahead\r\n" + tlsMarker,
		wantWritten: "EHLO certmon.invalid\r\nSTARTTLS\r\n"},
	{name: "smtp STARTTLS last", proto: "smtp",
		script: "220 hi\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n" + tlsMarker},
	{name: "smtp greeting 554", proto: "smtp", script: "554 5.7.1 no service for you\r\n",
		wantErr: `server refused the session: "554 5.7.1 no service for you"`},
	{name: "smtp EHLO refused", proto: "smtp", script: "220 hi\r\n502 5.5.2 what\r\n", wantErr: "EHLO refused"},
	{name: "smtp not offered", proto: "smtp", script: "220 hi\r\n250-mx\r\n250-STARTTLSX\r\n250 SIZE\r\n",
		wantErr: "server does not offer STARTTLS"},
	{name: "smtp 454", proto: "smtp", script: "220 hi\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not available\r\n",
		wantErr: `STARTTLS refused: "454 4.7.0 TLS not available"`},
	{name: "smtp garbage", proto: "smtp", script: "SSH-2.0-OpenSSH_9.2\r\n", wantErr: "malformed reply"},
	{name: "smtp code changes", proto: "smtp", script: "220-hi\r\n250 there\r\n", wantErr: "reply code changed"},
	{name: "smtp closed", proto: "smtp", script: "220 hi\r\n250-mx\r\n", wantErr: "server closed the connection"},

	{name: "imap ok", proto: "imap",
		script:      "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n* CAPABILITY IMAP4rev1\r\na001 OK Begin TLS\r\n" + tlsMarker,
		wantWritten: "a001 STARTTLS\r\n"},
	{name: "imap preauth, lower case", proto: "imap", script: "* PREAUTH hi\r\na001 ok go\r\n" + tlsMarker},
	{name: "imap BYE greeting", proto: "imap", script: "* BYE too busy\r\n", wantErr: `server refused the session: "* BYE too busy"`},
	{name: "imap BAD", proto: "imap", script: "* OK hi\r\na001 BAD unknown command\r\n", wantErr: `STARTTLS refused: "a001 BAD unknown command"`},
	{name: "imap NO", proto: "imap", script: "* OK hi\r\na001 NO not now\r\n", wantErr: "STARTTLS refused"},
	{name: "imap BYE after", proto: "imap", script: "* OK hi\r\n* BYE shutting down\r\n", wantErr: "server closed the session"},
	{name: "imap continuation", proto: "imap", script: "* OK hi\r\n+ go on\r\n", wantErr: "unexpected answer to STARTTLS"},
	{name: "imap garbage", proto: "imap", script: "220 smtp here\r\n", wantErr: "malformed greeting"},

	{name: "pop3 ok", proto: "pop3", script: "+OK POP3 ready <1.2@x>\r\n+OK Begin TLS\r\n" + tlsMarker, wantWritten: "STLS\r\n"},
	{name: "pop3 ERR greeting", proto: "pop3", script: "-ERR go away\r\n", wantErr: "server refused the session"},
	{name: "pop3 ERR STLS", proto: "pop3", script: "+OK hi\r\n-ERR no TLS\r\n", wantErr: `STLS refused: "-ERR no TLS"`},
	{name: "pop3 garbage", proto: "pop3", script: "* OK imap\r\n", wantErr: "malformed greeting"},

	{name: "ftp ok", proto: "ftp", script: "220-welcome\r\n any text\r\n220-more\r\n220 ready\r\n234 Proceed\r\n" + tlsMarker, wantWritten: "AUTH TLS\r\n"},
	{name: "ftp 120 first", proto: "ftp", script: "120 wait\r\n220 ready\r\n234 AUTH TLS OK.\r\n" + tlsMarker},
	{name: "ftp 421", proto: "ftp", script: "421 too many users\r\n", wantErr: "server refused the session"},
	{name: "ftp AUTH refused", proto: "ftp", script: "220 hi\r\n530 Please login with USER and PASS.\r\n", wantErr: `AUTH TLS refused: "530 Please login`},
	{name: "ftp garbage", proto: "ftp", script: "hello\r\n", wantErr: "malformed reply"},

	{name: "ldap ok", proto: "ldap", script: ldapResp(1, 0, "") + tlsMarker, wantWritten: ldapStartTLSRequest},
	{name: "ldap long-form length", proto: "ldap", script: "\x30\x81" + ldapResp(1, 0, "")[1:] + tlsMarker},
	{name: "ldap refused", proto: "ldap", script: ldapResp(1, 2, "unsupported extended operation"),
		wantErr: `StartTLS refused: result code 2 (protocolError): "unsupported extended operation"`},
	{name: "ldap disconnection", proto: "ldap", script: ldapResp(0, 52, "shutting down"), wantErr: "notice of disconnection: result code 52 (unavailable)"},
	{name: "ldap other message ID", proto: "ldap", script: ldapResp(7, 0, ""), wantErr: "unknown message ID 7"},
	{name: "ldap indefinite length", proto: "ldap", script: "\x30\x80\x02\x01\x01\x00\x00", wantErr: "indefinite"},
	{name: "ldap huge length", proto: "ldap", script: "\x30\x84\x01\x00\x00\x00", wantErr: "BER length announces 16777216 bytes, over the limit of 65536"},
	{name: "ldap not ldap", proto: "ldap", script: "HTTP/1.1 400 Bad Request\r\n", wantErr: "not an LDAP message"},
	{name: "ldap truncated", proto: "ldap", script: ldapResp(1, 0, "")[:8], wantErr: "server closed the connection"},
	{name: "ldap bind response", proto: "ldap", script: "\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x00\x04\x00\x04\x00", wantErr: "expected an ExtendedResponse"},

	{name: "xmpp ok", proto: "xmpp", script: xmppHeader + "\n " + xmppFeatures + "\n" + xmppProceed + tlsMarker,
		wantWritten: "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"},
	{name: "xmpp proceed with end tag", proto: "xmpp", script: xmppHeader + xmppFeatures + "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>" + tlsMarker},
	{name: "xmpp other prefixes", proto: "xmpp",
		script: "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client'><s:features><tls:starttls xmlns:tls='urn:ietf:params:xml:ns:xmpp-tls'/></s:features><tls:proceed xmlns:tls='urn:ietf:params:xml:ns:xmpp-tls'/>" + tlsMarker},
	{name: "xmpp not offered", proto: "xmpp", script: xmppHeader + "<stream:features><starttls xmlns='other'/></stream:features>", wantErr: "server does not offer STARTTLS"},
	{name: "xmpp failure", proto: "xmpp", script: xmppHeader + xmppFeatures + "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>", wantErr: "STARTTLS refused (<failure/>)"},
	{name: "xmpp stream error", proto: "xmpp",
		script:  xmppHeader + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such domain</text></stream:error></stream:stream>",
		wantErr: `stream error <host-unknown/>: "no such domain"`},
	{name: "xmpp stream closed", proto: "xmpp", script: xmppHeader + "</stream:stream>", wantErr: "expected stream features, got the end of the stream"},
	{name: "xmpp not a stream", proto: "xmpp", script: "<html><body>", wantErr: "expected a stream header"},
	{name: "xmpp garbage", proto: "xmpp", script: "220 smtp here\r\n", wantErr: `expected an XML stream, got "220 smtp here\r\n"`},
	{name: "xmpp text before features", proto: "xmpp", script: xmppHeader + "oops<stream:features/>", wantErr: `unexpected text in the stream features: "oops"`},
	{name: "xmpp bad XML", proto: "xmpp", script: xmppHeader + "<stream:features><a></b>", wantErr: "malformed XML"},
	{name: "xmpp closed", proto: "xmpp", script: xmppHeader + "<stream:features>", wantErr: "xmpp:"},
	{name: "xmpp-server ok", proto: "xmpp-server", script: strings.Replace(xmppHeader, "jabber:client", "jabber:server", 1) + xmppFeatures + xmppProceed + tlsMarker,
		wantWritten: "xmlns='jabber:server' xmlns:db='jabber:server:dialback'"},

	{name: "postgres ok", proto: "postgres", script: "S" + tlsMarker, wantWritten: "\x00\x00\x00\x08\x04\xd2\x16\x2f"},
	{name: "postgres N", proto: "postgres", script: "N", wantErr: "server does not accept TLS"},
	{name: "postgres error", proto: "postgres",
		script:  pgError("SFATAL", "VFATAL", "C28000", `Mno pg_hba.conf entry for host "10.0.0.1"`),
		wantErr: `server refused the connection: "FATAL 28000: no pg_hba.conf entry for host \"10.0.0.1\""`},
	{name: "postgres huge error", proto: "postgres", script: "E\x7f\xff\xff\xff", wantErr: "error response announces 2147483647 bytes, over the limit of 8192"},
	{name: "postgres garbage", proto: "postgres", script: "HTTP/1.1 400", wantErr: `unexpected answer 'H'`},
	{name: "postgres closed", proto: "postgres", script: "", wantErr: "server closed the connection"},

	{name: "mysql ok", proto: "mysql", script: mysqlGreeting(0, 0x000ff7ff|mysqlClientSSL) + tlsMarker},
	{name: "mysql without TLS", proto: "mysql", script: mysqlGreeting(0, 0x000ff7ff), wantErr: "server does not support TLS"},
	{name: "mysql ERR", proto: "mysql", script: mysqlPacket(0, []byte("\xff\x10\x04Too many connections")), wantErr: `error 1040: "Too many connections"`},
	{name: "mysql ERR with state", proto: "mysql", script: mysqlPacket(0, []byte("\xff\x6a\x04#HY000Host '10.0.0.1' is not allowed")), wantErr: "error 1130 (HY000)"},
	{name: "mysql protocol 9", proto: "mysql", script: mysqlPacket(0, []byte("\x09old\x00")), wantErr: "unsupported protocol version 9"},
	{name: "mysql truncated handshake", proto: "mysql", script: mysqlPacket(0, []byte("\x0a5.0\x00abc")), wantErr: "malformed handshake"},
	{name: "mysql huge packet", proto: "mysql", script: "\xff\xff\xff\x00", wantErr: "handshake packet announces 16777215 bytes, over the limit of 65536"},
	{name: "mysql garbage", proto: "mysql", script: "HTTP/1.1 400 Bad Request\r\n", wantErr: "over the limit of 65536"},
	{name: "ldap 9-octet length", proto: "ldap", script: "\x30\x89\x01", wantErr: "a 9-octet BER length over the limit"},
}

func TestDialogues(t *testing.T) {
	for _, tc := range dialogueCases {
		t.Run(tc.name, func(t *testing.T) {
			written, unread, err := runDialogue(tc.proto, []byte(tc.script), PreambleOptions{Host: "example.org", ClientName: "certmon.invalid"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if unread != tlsMarker {
					t.Errorf("left %q unread, want exactly the TLS bytes %q", unread, tlsMarker)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.Contains(written, tc.wantWritten) {
				t.Errorf("client wrote %q, want it to contain %q", written, tc.wantWritten)
			}
		})
	}
}

// TestXMPPDecoderReadsNoFurther checks the assumption startXMPP rests on:
// encoding/xml reads a *bufio.Reader byte by byte, so bytes after
// <proceed/> stay in the reader even when they arrived in the same packet.
func TestXMPPDecoderReadsNoFurther(t *testing.T) {
	script := xmppHeader + xmppFeatures + xmppProceed + tlsMarker
	fc := newFakeConn([]byte(script))
	pc := newPreambleConn(fc)
	if err := startXMPPClient(pc, PreambleOptions{Host: "example.org"}); err != nil {
		t.Fatal(err)
	}
	// Everything arrived in one read, so the rest must sit in the buffer.
	if got := pc.Buffered(); got != len(tlsMarker) {
		t.Fatalf("%d bytes left buffered, want %d", got, len(tlsMarker))
	}
}

func TestXMPPHostAndEscaping(t *testing.T) {
	script := xmppHeader + xmppFeatures + xmppProceed
	written, _, err := runDialogue("xmpp", []byte(script), PreambleOptions{Host: "ignored.example", XMPPHost: "a'b<c"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(written, "to='a&#39;b&lt;c'") {
		t.Errorf("stream header %q does not carry the escaped XMPP host", written)
	}
	if _, _, err := runDialogue("xmpp", []byte(script), PreambleOptions{}); err == nil || !strings.Contains(err.Error(), "no XMPP domain") {
		t.Errorf("error %v without any host, want one about the XMPP domain", err)
	}
}

func TestLDAPStartTLSRequestEncoding(t *testing.T) {
	tag, msg, rest, err := berNext([]byte(ldapStartTLSRequest))
	if err != nil || tag != 0x30 || len(rest) != 0 {
		t.Fatalf("outer: tag 0x%02x, %d bytes after, %v", tag, len(rest), err)
	}
	tag, id, rest, err := berNext(msg)
	if err != nil || tag != berInteger || !bytes.Equal(id, []byte{1}) {
		t.Fatalf("messageID: tag 0x%02x % x %v", tag, id, err)
	}
	tag, op, rest, err := berNext(rest)
	if err != nil || tag != 0x77 || len(rest) != 0 {
		t.Fatalf("extendedReq: tag 0x%02x, %d bytes after, %v", tag, len(rest), err)
	}
	tag, oid, rest, err := berNext(op)
	if err != nil || tag != 0x80 || string(oid) != ldapStartTLSOID || len(rest) != 0 {
		t.Fatalf("requestName: tag 0x%02x %q %v", tag, oid, err)
	}
}

func TestMySQLSSLRequest(t *testing.T) {
	written, _, err := runDialogue("mysql", []byte(mysqlGreeting(0, 0xffff)), PreambleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := []byte(written)
	if len(w) != 36 || w[0] != 32 || w[1] != 0 || w[2] != 0 || w[3] != 1 {
		t.Fatalf("SSLRequest % x: want a 32-byte payload with sequence 1", w)
	}
	caps := binary.LittleEndian.Uint32(w[4:8])
	want := uint32(mysqlClientSSL | mysqlClientProtocol41 | mysqlClientSecureConnection)
	if caps&want != want {
		t.Errorf("capabilities 0x%08x lack 0x%08x", caps, want)
	}
	if w[12] != mysqlCharset || !bytes.Equal(w[13:], make([]byte, 23)) {
		t.Errorf("charset %d and filler % x", w[12], w[13:])
	}
}

func TestReplyLineParsing(t *testing.T) {
	cases := []struct {
		line     string
		code     int
		more, ok bool
	}{
		{"220 ready", 220, false, true},
		{"250-PIPELINING", 250, true, true},
		{"250", 250, false, true},
		{"25", 0, false, false},
		{"2500", 0, false, false},
		{"099 x", 0, false, false},
		{"600 x", 0, false, false},
		{"+OK", 0, false, false},
	}
	for _, c := range cases {
		code, more, ok := parseReplyLine(c.line)
		if code != c.code || more != c.more || ok != c.ok {
			t.Errorf("parseReplyLine(%q) = %d, %v, %v; want %d, %v, %v", c.line, code, more, ok, c.code, c.more, c.ok)
		}
	}
}

// probeFixture is a CA-issued leaf served by STARTTLS test servers.
type probeFixture struct {
	leaf *certtest.Cert
	cfg  *tls.Config
}

func newProbeFixture() probeFixture {
	root := certtest.NewRootCA("STARTTLS test root")
	leaf := root.Leaf([]string{"mail.example.test", "127.0.0.1"})
	return probeFixture{leaf: leaf, cfg: &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}}}
}

// probeSTARTTLS probes addr speaking proto and reports how long it took.
func probeSTARTTLS(t *testing.T, proto, addr string, timeout time.Duration) (*Observation, time.Duration) {
	t.Helper()
	tgt, err := target.Parse(proto+"://"+addr, "")
	if err != nil {
		t.Fatal(err)
	}
	if tgt.StartTLS != proto {
		t.Fatalf("target %v does not speak %s", tgt, proto)
	}
	start := time.Now()
	obs := New(Options{Timeout: timeout}).Probe(context.Background(), Request{Target: tgt, SNI: "mail.example.test"})
	return obs, time.Since(start)
}

func TestSTARTTLSProbe(t *testing.T) {
	fx := newProbeFixture()
	for _, proto := range certtest.STARTTLSProtocols() {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			srv := certtest.ServeSTARTTLS(t, proto, fx.cfg)
			obs, _ := probeSTARTTLS(t, proto, srv.Addr, 3*time.Second)
			if obs.Err != nil {
				t.Fatalf("probe failed: %v", obs.Err)
			}
			if len(obs.Chain) == 0 || !bytes.Equal(obs.Chain[0], fx.leaf.DER) {
				t.Fatalf("chain of %d certificates does not start with the served leaf", len(obs.Chain))
			}
			if obs.Version < tls.VersionTLS12 {
				t.Errorf("version %s", VersionName(obs.Version))
			}
			if obs.StartTLS <= 0 {
				t.Error("STARTTLS duration not recorded")
			}
		})
	}
}

// refusals is what each protocol's refusal says (certtest.Refuse).
var refusals = map[string]string{
	"smtp":        `STARTTLS refused: "454 4.7.0`,
	"imap":        `STARTTLS refused: "a001 BAD`,
	"pop3":        `STLS refused: "-ERR`,
	"ftp":         `AUTH TLS refused: "534`,
	"ldap":        "StartTLS refused: result code 52 (unavailable)",
	"xmpp":        "STARTTLS refused (<failure/>)",
	"xmpp-server": "STARTTLS refused (<failure/>)",
	"postgres":    "server does not accept TLS",
	"mysql":       "server does not support TLS",
}

func TestSTARTTLSFaults(t *testing.T) {
	fx := newProbeFixture()
	const timeout = 3 * time.Second
	const silentTimeout = 500 * time.Millisecond
	faults := []struct {
		name  string
		fault certtest.Fault
		check func(t *testing.T, proto string, obs *Observation, took time.Duration)
	}{
		{"refused", certtest.Refuse, func(t *testing.T, proto string, obs *Observation, _ time.Duration) {
			var pe *ProtocolError
			if !errors.As(obs.Err, &pe) || pe.Protocol != proto {
				t.Errorf("error %v is not a %s ProtocolError", obs.Err, proto)
			}
			if !strings.Contains(obs.Err.Message, refusals[proto]) {
				t.Errorf("message %q does not say %q", obs.Err.Message, refusals[proto])
			}
		}},
		{"not offered", certtest.NotOffered, func(t *testing.T, proto string, obs *Observation, _ time.Duration) {
			want := refusals[proto]
			switch proto {
			case "smtp", "xmpp", "xmpp-server":
				want = "server does not offer STARTTLS"
			}
			if !strings.Contains(obs.Err.Message, want) {
				t.Errorf("message %q does not say %q", obs.Err.Message, want)
			}
		}},
		{"garbage", certtest.Garbage, func(t *testing.T, proto string, obs *Observation, took time.Duration) {
			if obs.Err.Timeout || took > timeout/2 {
				t.Errorf("took %v (timeout %v) to reject garbage: %v", took, obs.Err.Timeout, obs.Err)
			}
			var pe *ProtocolError
			var le *lengthError
			if !errors.As(obs.Err, &pe) && !errors.As(obs.Err, &le) {
				t.Errorf("error %v is neither a ProtocolError nor a length limit", obs.Err)
			}
		}},
		{"endless banner", certtest.EndlessBanner, func(t *testing.T, proto string, obs *Observation, took time.Duration) {
			var le *lengthError
			if !errors.Is(obs.Err, errPreambleTooBig) && !errors.Is(obs.Err, errLineTooLong) && !errors.As(obs.Err, &le) {
				t.Errorf("error %v does not name a limit", obs.Err)
			}
			if took > timeout/2 {
				t.Errorf("took %v to give up on an endless banner", took)
			}
		}},
		{"silence", certtest.Silent, func(t *testing.T, proto string, obs *Observation, took time.Duration) {
			if !obs.Err.Timeout {
				t.Errorf("error %v is not a timeout", obs.Err)
			}
			if took < silentTimeout-50*time.Millisecond || took > silentTimeout+time.Second {
				t.Errorf("took %v with a %v timeout", took, silentTimeout)
			}
		}},
		{"plaintext injected", certtest.Inject, func(t *testing.T, proto string, obs *Observation, _ time.Duration) {
			if !strings.Contains(obs.Err.Message, "unexpected bytes after agreeing to start TLS") {
				t.Errorf("message %q does not report the injected bytes", obs.Err.Message)
			}
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			for _, proto := range certtest.STARTTLSProtocols() {
				t.Run(proto, func(t *testing.T) {
					t.Parallel()
					srv := certtest.ServeFaultySTARTTLS(t, proto, fx.cfg, f.fault)
					to := timeout
					if f.fault == certtest.Silent {
						to = silentTimeout
					}
					obs, took := probeSTARTTLS(t, proto, srv.Addr, to)
					if obs.Err == nil {
						t.Fatal("no error")
					}
					if obs.Err.Stage != StageStartTLS {
						t.Errorf("stage %q, want %q (%v)", obs.Err.Stage, StageStartTLS, obs.Err)
					}
					if len(obs.Chain) != 0 || obs.Version != 0 {
						t.Error("a certificate was recorded although STARTTLS failed")
					}
					t.Logf("%v (after %v)", obs.Err, took.Round(time.Millisecond))
					f.check(t, proto, obs, took)
				})
			}
		})
	}
}
