package probe

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
)

// MaxPreambleBytes bounds what a server may send before TLS starts, so an
// endless banner cannot keep a probe reading forever.
const MaxPreambleBytes = 64 << 10

// maxLine bounds one line of a line-based STARTTLS dialogue.
const maxLine = 4096

var (
	errDeadline       = errors.New("deadline exceeded")
	errPreambleTooBig = fmt.Errorf("server sent more than %d bytes before TLS", MaxPreambleBytes)
	errLineTooLong    = fmt.Errorf("server sent a line longer than %d bytes", maxLine)
)

// PreambleConn is the plaintext side of a STARTTLS dialogue: reads are
// counted and capped at MaxPreambleBytes; the connection's deadline is set
// by the caller.
type PreambleConn struct {
	net.Conn
	R *bufio.Reader
}

func newPreambleConn(c net.Conn) *PreambleConn {
	lr := &limitedReader{r: c, n: MaxPreambleBytes}
	return &PreambleConn{Conn: c, R: bufio.NewReaderSize(lr, 4096)}
}

// WriteString sends s as is.
func (p *PreambleConn) WriteString(s string) error {
	_, err := io.WriteString(p.Conn, s)
	return err
}

// Buffered reports bytes read from the wire but not consumed: after a
// STARTTLS command, a server must not have sent anything more (that would
// be plaintext injected before TLS, CVE-2011-0411 style).
func (p *PreambleConn) Buffered() int { return p.R.Buffered() }

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errPreambleTooBig
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// PreambleOptions carries what some dialogues need to know.
type PreambleOptions struct {
	// Host is the name the client claims to want (XMPP "to", EHLO peer).
	Host string
	// XMPPHost overrides the XMPP stream "to" domain.
	XMPPHost string
	// ClientName is the EHLO name we announce.
	ClientName string
}

// preambleFunc speaks one protocol's plaintext dialogue up to the point
// where the next bytes on the wire are a TLS ClientHello.
type preambleFunc func(c *PreambleConn, o PreambleOptions) error

// preambles maps target.Protocol.StartTLS names to their dialogue.
var preambles = map[string]preambleFunc{
	"smtp":        startSMTP,
	"imap":        startIMAP,
	"pop3":        startPOP3,
	"ftp":         startFTP,
	"ldap":        startLDAP,
	"xmpp":        startXMPPClient,
	"xmpp-server": startXMPPServer,
	"postgres":    startPostgres,
	"mysql":       startMySQL,
}

// ProtocolError is a server answer that breaks or refuses the dialogue.
type ProtocolError struct {
	Protocol string
	Msg      string
}

func (e *ProtocolError) Error() string { return e.Protocol + ": " + e.Msg }

func protoErr(proto, format string, args ...any) error {
	return &ProtocolError{Protocol: proto, Msg: fmt.Sprintf(format, args...)}
}

// quote shows server text safely in an error: short, printable.
func quote(s string) string {
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Sprintf("%q", s)
}
