package certtest

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPOptions configures ServeSMTP.
type SMTPOptions struct {
	// TLS, when set, is offered with STARTTLS (or served from the first
	// byte with Implicit). Without it the server speaks plain text only.
	TLS *tls.Config
	// Implicit serves TLS on connect (SMTPS) instead of STARTTLS.
	Implicit bool
	// User and Pass are the only credentials accepted. When User is set,
	// AUTH is required before MAIL FROM (502 5.7.0 otherwise,
	// smtp.ErrAuthRequired); AUTH is only offered over TLS.
	User, Pass string
	// Mechanisms are the AUTH mechanisms advertised when User is set: nil
	// means PLAIN, an empty non-nil slice none at all. PLAIN and LOGIN are
	// both served whatever is advertised.
	Mechanisms []string
	// RcptErr, when set, answers every RCPT TO (an *smtp.SMTPError keeps
	// its code).
	RcptErr error
}

// Mail is one message a Mailbox accepted, with its envelope.
type Mail struct {
	From string
	To   []string
	Data []byte
}

// Mailbox is a real SMTP server (emersion/go-smtp) on 127.0.0.1:0 that
// keeps every message it accepts.
type Mailbox struct {
	// Addr is the listening host:port.
	Addr string

	host string
	port int
	opts SMTPOptions
	mu   sync.Mutex
	mail []Mail
}

// ServeSMTP starts a Mailbox as opts says, closed at the end of the test.
func ServeSMTP(t testing.TB, opts SMTPOptions) *Mailbox {
	t.Helper()
	if opts.Implicit && opts.TLS == nil {
		t.Fatal("certtest: implicit TLS needs SMTPOptions.TLS")
	}
	box := &Mailbox{opts: opts}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &smtpSession{box: box}, nil
	}))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.MaxMessageBytes = 1 << 20
	s.MaxRecipients = 50
	s.AllowInsecureAuth = false // AUTH only after STARTTLS (or on implicit TLS)
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.TLSConfig = opts.TLS

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	a := ln.Addr().(*net.TCPAddr)
	box.Addr, box.host, box.port = a.String(), a.IP.String(), a.Port
	if opts.Implicit {
		ln = tls.NewListener(ln, opts.TLS)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-done
	})
	return box
}

// Host is the listening IP address (127.0.0.1).
func (b *Mailbox) Host() string { return b.host }

// Port is the listening port.
func (b *Mailbox) Port() int { return b.port }

// Mails returns the messages accepted so far, in order.
func (b *Mailbox) Mails() []Mail {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Mail(nil), b.mail...)
}

// smtpSession is one client connection to a Mailbox.
type smtpSession struct {
	box    *Mailbox
	authed bool
	cur    Mail
}

func (s *smtpSession) AuthMechanisms() []string {
	o := s.box.opts
	if o.User == "" {
		return nil
	}
	if o.Mechanisms != nil {
		return o.Mechanisms
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.box.opts.User || pass != s.box.opts.Pass {
			return smtp.ErrAuthFailed // 535 5.7.8
		}
		s.authed = true
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN (go-sasl has only the
// client): ask for the user name, then the password.
type loginServer struct {
	step  int
	user  string
	check func(user, pass string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		if len(resp) > 0 { // initial response: the user name
			l.user, l.step = string(resp), 2
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.box.opts.User != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.cur = Mail{From: from}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.box.opts.RcptErr != nil {
		return s.box.opts.RcptErr
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.box.mu.Lock()
	s.box.mail = append(s.box.mail, s.cur)
	s.box.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = Mail{} }
func (s *smtpSession) Logout() error { return nil }

// ParsedMail is a message taken apart with net/mail and mime/multipart.
type ParsedMail struct {
	Header mail.Header
	// Subject is the Subject header with its encoded words decoded.
	Subject string
	// Text and HTML are the decoded text/plain and text/html bodies: the
	// parts of a multipart message (nested multiparts are walked), or the
	// body of a single-part one (HTML if it is text/html, Text otherwise).
	Text, HTML string
}

// ParseMail parses a message as a Mailbox received it, failing the test if
// it does not parse, and reporting a part that is neither text nor HTML.
func ParseMail(t testing.TB, data []byte) ParsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadMessage: %v\n%s", err, data)
	}
	p := ParsedMail{Header: msg.Header}
	if p.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatalf("Subject %q: %v", msg.Header.Get("Subject"), err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body := decodeBody(t, msg.Body, msg.Header.Get("Content-Transfer-Encoding"))
		if mt == "text/html" {
			p.HTML = body
		} else {
			p.Text = body
		}
		return p
	}
	p.walk(t, msg.Body, params["boundary"])
	return p
}

// walk reads the parts of a multipart body into p.
func (p *ParsedMail) walk(t testing.TB, r io.Reader, boundary string) {
	t.Helper()
	mr := multipart.NewReader(r, boundary)
	for {
		part, err := mr.NextRawPart() // the transfer encoding is undone below
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		pt, params, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type %q: %v", part.Header.Get("Content-Type"), err)
		}
		if strings.HasPrefix(pt, "multipart/") {
			p.walk(t, part, params["boundary"])
			continue
		}
		body := decodeBody(t, part, part.Header.Get("Content-Transfer-Encoding"))
		switch pt {
		case "text/plain":
			p.Text = body
		case "text/html":
			p.HTML = body
		default:
			t.Errorf("unexpected part %q", pt)
		}
	}
}

// decodeBody reads r, undoing a quoted-printable or base64 transfer
// encoding.
func decodeBody(t testing.TB, r io.Reader, encoding string) string {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("body (%s): %v", encoding, err)
	}
	return string(b)
}
