package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	gmsmtp "github.com/wneessen/go-mail/smtp"

	"github.com/certmon/certmon/internal/certtest"
)

// smtpTest is a real SMTP server (emersion/go-smtp) on loopback that
// records what it accepts.
type smtpTest struct {
	user, pass string   // AUTH required when user is set
	mechs      []string // offered mechanisms (default PLAIN)
	rcptErr    *smtp.SMTPError

	host string
	port int
	pool *x509.CertPool

	mu    sync.Mutex
	mails []smtpMail
}

type smtpMail struct {
	from  string
	rcpts []string
	data  []byte
}

// start serves mode: "starttls" (STARTTLS offered), "tls" (implicit
// TLS) or "none" (plain text, no STARTTLS).
func (st *smtpTest) start(t *testing.T, mode string) {
	t.Helper()
	ca := certtest.NewRootCA("certmon notify test CA")
	leaf := ca.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)))
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}, MinVersion: tls.VersionTLS12}
	st.pool = certtest.Pool(ca)

	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{st: st}, nil }))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.MaxMessageBytes = 1 << 20
	s.MaxRecipients = 50
	s.AllowInsecureAuth = false // AUTH only after STARTTLS (or on implicit TLS)
	s.ErrorLog = log.New(io.Discard, "", 0)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	switch mode {
	case "starttls":
		s.TLSConfig = tlsCfg
	case "tls":
		s.TLSConfig = tlsCfg
		ln = tls.NewListener(ln, tlsCfg)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	addr := ln.Addr().(*net.TCPAddr)
	st.host, st.port = addr.IP.String(), addr.Port
}

func (st *smtpTest) received() []smtpMail {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]smtpMail(nil), st.mails...)
}

type smtpSession struct {
	st     *smtpTest
	authed bool
	cur    smtpMail
}

func (s *smtpSession) AuthMechanisms() []string {
	if s.st.user == "" {
		return nil
	}
	if s.st.mechs != nil {
		return s.st.mechs
	}
	return []string{sasl.Plain}
}

func (s *smtpSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.st.user || pass != s.st.pass {
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
	if s.st.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.cur = smtpMail{from: from}
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.st.rcptErr != nil {
		return s.st.rcptErr
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.st.mu.Lock()
	s.st.mails = append(s.st.mails, s.cur)
	s.st.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = smtpMail{} }
func (s *smtpSession) Logout() error { return nil }

func (st *smtpTest) config(tlsMode string) ChannelConfig {
	return ChannelConfig{
		Host: st.host, Port: st.port, TLS: tlsMode, Username: st.user, Password: st.pass,
		From: "certmon <certmon@example.com>", To: []string{"ops@example.com", "Sec Team <sec@example.org>"},
	}
}

func (st *smtpTest) options() SenderOptions {
	return SenderOptions{Timeout: 5 * time.Second, RootCAs: st.pool, BaseURL: "https://certmon.example.com"}
}

func emailSend(t *testing.T, cfg ChannelConfig, opt SenderOptions, m Message) (Answer, error) {
	t.Helper()
	s, err := NewSender(TypeEmail, cfg, opt)
	if err != nil {
		t.Fatalf("NewSender: %v", err)
	}
	return s.Send(context.Background(), m)
}

// parsedMail is a received message taken apart with net/mail and
// mime/multipart.
type parsedMail struct {
	header mail.Header
	text   string
	html   string
}

func parseMail(t *testing.T, data []byte) parsedMail {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("ReadMessage: %v\n%s", err, data)
	}
	p := parsedMail{header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if mt != "multipart/alternative" {
		body, _ := io.ReadAll(msg.Body)
		if strings.HasPrefix(mt, "text/html") {
			p.html = string(body)
		} else {
			p.text = string(body)
		}
		return p
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("NextPart: %v", err)
		}
		var r io.Reader = part // NextPart already undoes quoted-printable
		if strings.EqualFold(part.Header.Get("Content-Transfer-Encoding"), "base64") {
			r = base64.NewDecoder(base64.StdEncoding, part)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		pt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		switch pt {
		case "text/plain":
			p.text = string(body)
		case "text/html":
			p.html = string(body)
		default:
			t.Errorf("unexpected part %q", pt)
		}
	}
	return p
}

func TestEmailSTARTTLSWithAuth(t *testing.T) {
	st := &smtpTest{user: "certmon", pass: "s3cret"}
	st.start(t, "starttls")
	m := Message{Key: "evt-1:chan-1", Items: []Item{expiredItem()}}
	ans, err := emailSend(t, st.config("starttls"), st.options(), m)
	if err != nil || ans.Code != 250 {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	mails := st.received()
	if len(mails) != 1 {
		t.Fatalf("%d mails received", len(mails))
	}
	got := mails[0]
	if got.from != "certmon@example.com" {
		t.Errorf("MAIL FROM %q", got.from)
	}
	if strings.Join(got.rcpts, ",") != "ops@example.com,sec@example.org" {
		t.Errorf("RCPT TO %q, want exactly cfg.To", got.rcpts)
	}

	p := parseMail(t, got.data)
	subject, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "[certmon] CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired"; subject != want {
		t.Errorf("Subject %q, want %q", subject, want)
	}
	if from, err := p.header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "certmon@example.com" {
		t.Errorf("From %v (%v)", from, err)
	}
	if to, err := p.header.AddressList("To"); err != nil || len(to) != 2 || to[1].Address != "sec@example.org" {
		t.Errorf("To %v (%v)", to, err)
	}
	if got, want := p.header.Get("Message-ID"), MessageID("evt-1:chan-1"); got != want || len(want) != len("<@certmon>")+32 {
		t.Errorf("Message-ID %q, want %q", got, want)
	}
	if p.header.Get("X-Certmon-Key") != "evt-1:chan-1" {
		t.Errorf("X-Certmon-Key %q", p.header.Get("X-Certmon-Key"))
	}
	if _, err := p.header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if !strings.Contains(p.text, "CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired") ||
		!strings.Contains(p.text, "Expires:   2026-06-13T12:00:00Z") {
		t.Errorf("text part:\n%s", p.text)
	}
	if p.html == "" || strings.Contains(p.html, "<script>") {
		t.Fatalf("HTML part missing or unescaped:\n%s", p.html)
	}
	if !strings.Contains(p.html, "&lt;script&gt;alert(1)&lt;/script&gt;.example.com:443") {
		t.Errorf("HTML lacks the escaped target:\n%s", p.html)
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	st := &smtpTest{user: "certmon", pass: "s3cret"}
	st.start(t, "tls")
	var items []Item
	for i := range 12 {
		items = append(items, reminderItem(i))
	}
	ans, err := emailSend(t, st.config("tls"), st.options(), Message{Key: "group-1", Items: items})
	if err != nil || ans.Code != 250 {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	mails := st.received()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	p := parseMail(t, mails[0].data)
	subject, _ := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if subject != "[certmon] 12 alerts: 12 warning" {
		t.Errorf("Subject %q", subject)
	}
	if !strings.Contains(p.html, "host11.example.com:443") || !strings.Contains(p.text, "host11.example.com:443") {
		t.Error("group body lacks an item")
	}
}

func TestEmailAuthLogin(t *testing.T) {
	st := &smtpTest{user: "certmon", pass: "s3cret", mechs: []string{sasl.Login}}
	st.start(t, "starttls")
	if _, err := emailSend(t, st.config("starttls"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(st.received()) != 1 {
		t.Fatal("not received")
	}
}

func TestEmailWrongPassword(t *testing.T) {
	st := &smtpTest{user: "certmon", pass: "s3cret"}
	st.start(t, "starttls")
	cfg := st.config("starttls")
	cfg.Password = "wrong"
	ans, err := emailSend(t, cfg, st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	if !Permanent(err) || ans.Code != 535 {
		t.Fatalf("Send = %+v, %v; want permanent 535", ans, err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error shows the password: %v", err)
	}
	if len(st.received()) != 0 {
		t.Error("a mail went through")
	}
}

func TestEmailRecipientRejected(t *testing.T) {
	for _, tt := range []struct {
		code      int
		permanent bool
	}{{451, false}, {452, false}, {550, true}} {
		st := &smtpTest{rcptErr: &smtp.SMTPError{Code: tt.code, EnhancedCode: smtp.EnhancedCode{tt.code / 100, 1, 1}, Message: "not now " + strconv.Itoa(tt.code)}}
		st.start(t, "starttls")
		cfg := st.config("starttls")
		cfg.Username, cfg.Password = "", ""
		ans, err := emailSend(t, cfg, st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
		if err == nil || Permanent(err) != tt.permanent || ans.Code != tt.code {
			t.Errorf("%d: Send = %+v, %v (permanent %v)", tt.code, ans, err, Permanent(err))
		}
		if !strings.Contains(ans.Body, "not now") || strings.Contains(ans.Body, "affected") || strings.Count(ans.Body, "not now") != 1 {
			t.Errorf("%d: answer body %q lacks the server's text", tt.code, ans.Body)
		}
	}
}

func TestEmailAuthConfigErrors(t *testing.T) {
	// A server that offers no AUTH at all: retrying cannot help.
	st := &smtpTest{user: "certmon", pass: "s3cret", mechs: []string{}}
	st.start(t, "starttls")
	_, err := emailSend(t, st.config("starttls"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	if !Permanent(err) || !strings.Contains(err.Error(), "offers no authentication") {
		t.Fatalf("Send = %v; want a permanent configuration error", err)
	}

	// The password never goes to a remote server without TLS.
	a := &plainOrLogin{user: "u", pass: "p", host: "mail.example.com"}
	for _, mechs := range [][]string{{"PLAIN"}, {"LOGIN"}} {
		_, _, err := a.Start(&gmsmtp.ServerInfo{Name: "mail.example.com", TLS: false, Auth: mechs})
		var ce *authConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%v without TLS: %v", mechs, err)
		}
	}
	if proto, _, err := a.Start(&gmsmtp.ServerInfo{Name: "mail.example.com", TLS: true, Auth: []string{"CRAM-MD5", "LOGIN", "PLAIN"}}); err != nil || proto != "PLAIN" {
		t.Errorf("with TLS: %q, %v; want PLAIN", proto, err)
	}
	if _, _, err := a.Start(&gmsmtp.ServerInfo{Name: "mail.example.com", TLS: true, Auth: []string{"CRAM-MD5"}}); err == nil {
		t.Error("accepted a server without PLAIN or LOGIN")
	}
}

func TestEmailRefusesWithoutTLS(t *testing.T) {
	// The server offers no STARTTLS: with tls=starttls nothing is sent.
	st := &smtpTest{}
	st.start(t, "none")
	ans, err := emailSend(t, st.config("starttls"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	if err == nil || Permanent(err) || ans.Code != 0 {
		t.Fatalf("Send = %+v, %v; want a retryable failure", ans, err)
	}
	if len(st.received()) != 0 {
		t.Error("a mail went through without TLS")
	}

	// tls=none is allowed to deliver in clear.
	if _, err := emailSend(t, st.config("none"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}}); err != nil {
		t.Fatalf("tls=none: %v", err)
	}
	if len(st.received()) != 1 {
		t.Error("tls=none: not received")
	}
}

func TestEmailUntrustedCertificate(t *testing.T) {
	st := &smtpTest{}
	st.start(t, "starttls")
	opt := st.options()
	opt.RootCAs = x509.NewCertPool() // trusts nothing
	_, err := emailSend(t, st.config("starttls"), opt, Message{Key: "k", Items: []Item{reminderItem(0)}})
	var ue x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ue) {
		t.Fatalf("Send = %v; want an unknown-authority error", err)
	}
	if len(st.received()) != 0 {
		t.Error("a mail went through to an untrusted server")
	}
}

func TestEmailPreparedAndStableMessageID(t *testing.T) {
	st := &smtpTest{}
	st.start(t, "starttls")
	m := Message{Key: "report-2026-06", Subject: "certmon weekly report", Prepared: &Prepared{HTML: "<h1>Report</h1>", Text: "Report"}}
	for range 2 { // a resend after a crash
		if _, err := emailSend(t, st.config("starttls"), st.options(), m); err != nil {
			t.Fatal(err)
		}
	}
	mails := st.received()
	if len(mails) != 2 {
		t.Fatalf("%d mails", len(mails))
	}
	a, b := parseMail(t, mails[0].data), parseMail(t, mails[1].data)
	if a.header.Get("Message-ID") != b.header.Get("Message-ID") || a.header.Get("Message-ID") != MessageID("report-2026-06") {
		t.Errorf("Message-IDs %q %q", a.header.Get("Message-ID"), b.header.Get("Message-ID"))
	}
	if a.header.Get("Subject") != "certmon weekly report" {
		t.Errorf("Subject %q", a.header.Get("Subject"))
	}
	if strings.TrimSpace(a.html) != "<h1>Report</h1>" || strings.TrimSpace(a.text) != "Report" {
		t.Errorf("prepared parts changed: %q %q", a.html, a.text)
	}
}

func TestEmailTimeout(t *testing.T) {
	// A server that accepts and never greets.
	srv := certtest.Serve(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	})
	host, portStr, _ := net.SplitHostPort(srv.Addr)
	port, _ := strconv.Atoi(portStr)
	cfg := ChannelConfig{Host: host, Port: port, From: "a@example.com", To: []string{"b@example.com"}}
	start := time.Now()
	ans, err := emailSend(t, cfg, SenderOptions{Timeout: 300 * time.Millisecond}, Message{Key: "k", Items: []Item{reminderItem(0)}})
	if err == nil || Permanent(err) || ans.Code != 0 {
		t.Fatalf("Send = %+v, %v; want retryable", ans, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v with a 300ms timeout", took)
	}
}
