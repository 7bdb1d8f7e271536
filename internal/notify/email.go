package notify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

type emailSender struct {
	cfg ChannelConfig
	opt SenderOptions
	now func() time.Time
}

func newEmailSender(cfg ChannelConfig, opt SenderOptions) *emailSender {
	return &emailSender{cfg: cfg, opt: opt, now: time.Now}
}

// MessageID is the Message-ID of the email for a message key: stable, so
// a resend after a crash carries the same ID and mail clients and
// archives can tell it is the same message.
func MessageID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "<" + hex.EncodeToString(sum[:])[:32] + "@certmon>"
}

func (s *emailSender) Send(ctx context.Context, m Message) (Answer, error) {
	msg, err := s.message(m)
	if err != nil {
		return Answer{}, &SendError{Permanent: true, Err: err}
	}

	// One overall deadline for the whole conversation: go-mail's timeout
	// applies per command, so a server answering slowly to each of them
	// could otherwise stretch a send far past opt.Timeout.
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	d := &smtpDialer{cfg: s.cfg, opt: s.opt, send: ctx, deadline: deadline}
	defer d.stop()

	opts := []mail.Option{
		mail.WithPort(s.cfg.Port),
		mail.WithTimeout(s.opt.Timeout),
		mail.WithTLSConfig(&tls.Config{ServerName: s.cfg.Host, RootCAs: s.opt.RootCAs, MinVersion: tls.VersionTLS12}),
		mail.WithDialContextFunc(d.dial),
	}
	switch s.cfg.TLS {
	case TLSImplicit:
		// The dialer does the TLS handshake (go-mail skips its own when
		// given a dial function); WithSSL only turns STARTTLS off.
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuthCustom(&plainOrLogin{user: s.cfg.Username, pass: s.cfg.Password, host: s.cfg.Host}))
	}
	if _, err := os.Hostname(); err != nil {
		opts = append(opts, mail.WithHELO("certmon.localdomain")) // go-mail fails without a host name
	}
	client, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return Answer{}, &SendError{Permanent: true, Err: fmt.Errorf("email client: %v", err)}
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if msg.IsDelivered() {
			// The server took the message; only closing failed.
			return Answer{Code: 250, Body: answerBody([]byte(msg.ServerResponse()))}, nil
		}
		return smtpFailure(ctx, err)
	}
	return Answer{Code: 250, Body: answerBody([]byte(msg.ServerResponse()))}, nil
}

// message builds the email: multipart/alternative, text then HTML.
func (s *emailSender) message(m Message) (*mail.Msg, error) {
	msg := mail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("from: %v", err)
	}
	if err := msg.To(s.cfg.To...); err != nil {
		return nil, fmt.Errorf("to: %v", err)
	}
	msg.Subject(emailSubject(m))
	if key := oneLine(m.Key); key != "" {
		msg.SetGenHeader("X-Certmon-Key", clip(key, 200))
		msg.SetMessageIDWithValue(strings.Trim(MessageID(m.Key), "<>"))
	} else {
		msg.SetMessageID()
	}
	msg.SetDateWithValue(s.now())
	msg.SetUserAgent("certmon")
	// Alerts are machine mail: no vacation auto-replies back to us.
	msg.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	msg.SetGenHeader("Auto-Submitted", "auto-generated")

	text, html := "", ""
	if p := m.Prepared; p != nil {
		text, html = p.Text, p.HTML
	} else {
		text, html = renderText(m), renderHTML(m)
	}
	switch {
	case text != "" && html != "":
		msg.SetBodyString(mail.TypeTextPlain, text)
		msg.AddAlternativeString(mail.TypeTextHTML, html)
	case html != "":
		msg.SetBodyString(mail.TypeTextHTML, html)
	default:
		msg.SetBodyString(mail.TypeTextPlain, text)
	}
	return msg, nil
}

// smtpFailure classifies a failed send: an SMTP 5xx is permanent; a 4xx,
// no answer, a timeout or a TLS failure may pass and is retried.
func smtpFailure(ctx context.Context, err error) (Answer, error) {
	code, text := smtpReply(err)
	ans := Answer{Code: code, Body: answerBody([]byte(text))}
	e := err
	if ctx.Err() != nil && code == 0 {
		e = fmt.Errorf("timed out: %w", err)
	}
	var cfgErr *authConfigError
	permanent := code >= 500 && code < 600 || errors.As(err, &cfgErr)
	return ans, &SendError{Answer: ans, Permanent: permanent, Err: e}
}

// smtpReply finds the server's reply code and text in a go-mail error:
// its SendError (which does not unwrap) knows the code of MAIL, RCPT and
// DATA failures; greeting, STARTTLS and AUTH failures wrap the
// textproto.Error itself.
func smtpReply(err error) (int, string) {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, fmt.Sprintf("%03d %s", te.Code, te.Msg)
	}
	var se *mail.SendError
	if errors.As(err, &se) {
		if code := se.ErrorCode(); code != 0 {
			// The text repeats the reply per recipient and names the
			// recipients; keep the first reply only.
			s, c := se.Error(), strconv.Itoa(code)
			if i := strings.Index(s, c); i >= 0 {
				s = s[i:]
			}
			if j := strings.Index(s, ", affected "); j >= 0 {
				s = s[:j]
			}
			if j := strings.Index(s[len(c):], ", "+c+" "); j >= 0 {
				s = s[:len(c)+j]
			}
			return code, s
		}
	}
	return 0, ""
}

// authConfigError is a refusal to authenticate that retrying cannot fix.
type authConfigError struct{ msg string }

func (e *authConfigError) Error() string { return e.msg }

// plainOrLogin picks AUTH PLAIN, else LOGIN, from what the server offers
// and refuses both over a connection that is not TLS (except to the
// local machine). go-mail's own auto-discovery cannot be used: it does
// not see the TLS of a connection made by our dial function.
type plainOrLogin struct {
	user, pass, host string
	auth             smtp.Auth
}

func (a *plainOrLogin) Start(server *smtp.ServerInfo) (string, []byte, error) {
	has := func(mech string) bool {
		return slices.ContainsFunc(server.Auth, func(s string) bool { return strings.EqualFold(s, mech) })
	}
	switch {
	case has("PLAIN"):
		a.auth = smtp.PlainAuth("", a.user, a.pass, a.host, false)
	case has("LOGIN"):
		a.auth = smtp.LoginAuth(a.user, a.pass, a.host, false)
	case len(server.Auth) == 0:
		return "", nil, &authConfigError{"the server offers no authentication (AUTH) here; remove username and password, or check the tls setting"}
	default:
		return "", nil, &authConfigError{"the server offers neither AUTH PLAIN nor LOGIN (it offers " + clip(oneLine(strings.Join(server.Auth, " ")), 100) + ")"}
	}
	proto, resp, err := a.auth.Start(server)
	if errors.Is(err, smtp.ErrUnencrypted) {
		return "", nil, &authConfigError{"refusing to send the password over a connection without TLS"}
	}
	return proto, resp, err
}

func (a *plainOrLogin) Next(fromServer []byte, more bool) ([]byte, error) {
	if a.auth == nil {
		return nil, errors.New("authentication not started")
	}
	return a.auth.Next(fromServer, more)
}

// smtpDialer dials the mail server for one send: through opt.Dialer,
// with TLS for implicit-TLS servers, every deadline capped at the send's
// deadline and the connection closed if the send's context ends.
type smtpDialer struct {
	cfg      ChannelConfig
	opt      SenderOptions
	send     context.Context // the whole send; dial's ctx ends with the dial
	deadline time.Time

	mu    sync.Mutex
	stops []func() bool
}

func (d *smtpDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := d.opt.Dialer
	if nd == nil {
		nd = &net.Dialer{}
	}
	raw, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.stops = append(d.stops, context.AfterFunc(d.send, func() { raw.Close() }))
	d.mu.Unlock()
	conn := &deadlineConn{Conn: raw, limit: d.deadline}
	if err := conn.SetDeadline(d.deadline); err != nil {
		raw.Close()
		return nil, err
	}
	if d.cfg.TLS != TLSImplicit {
		return conn, nil
	}
	tc := tls.Client(conn, &tls.Config{ServerName: d.cfg.Host, RootCAs: d.opt.RootCAs, MinVersion: tls.VersionTLS12})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	return tc, nil
}

// stop forgets the close-on-cancel hooks once the send is over.
func (d *smtpDialer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.stops {
		s()
	}
}

// deadlineConn never lets a deadline move past limit (go-mail extends
// deadlines before each command).
type deadlineConn struct {
	net.Conn
	limit time.Time
}

func (c *deadlineConn) cap(t time.Time) time.Time {
	if c.limit.IsZero() || (!t.IsZero() && t.Before(c.limit)) {
		return t
	}
	return c.limit
}

func (c *deadlineConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.cap(t)) }
func (c *deadlineConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.cap(t)) }
func (c *deadlineConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.cap(t)) }
