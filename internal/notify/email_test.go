package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	gmsmtp "github.com/wneessen/go-mail/smtp"

	"github.com/certmon/certmon/internal/certtest"
)

// smtpTest is a certtest.Mailbox with the pool that trusts its
// certificate and the credentials it accepts.
type smtpTest struct {
	*certtest.Mailbox
	user, pass string
	pool       *x509.CertPool
}

// startSMTP serves mode: "starttls" (STARTTLS offered), "tls" (implicit
// TLS) or "none" (plain text, no STARTTLS).
func startSMTP(t *testing.T, mode string, opts certtest.SMTPOptions) *smtpTest {
	t.Helper()
	ca := certtest.NewRootCA("certmon notify test CA")
	leaf := ca.Leaf([]string{"127.0.0.1"}, certtest.WithValidity(time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)))
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{certtest.TLSCertificate(leaf)}, MinVersion: tls.VersionTLS12}
	switch mode {
	case "starttls":
		opts.TLS = tlsCfg
	case "tls":
		opts.TLS, opts.Implicit = tlsCfg, true
	}
	return &smtpTest{Mailbox: certtest.ServeSMTP(t, opts), user: opts.User, pass: opts.Pass, pool: certtest.Pool(ca)}
}

func (st *smtpTest) config(tlsMode string) ChannelConfig {
	return ChannelConfig{
		Host: st.Host(), Port: st.Port(), TLS: tlsMode, Username: st.user, Password: st.pass,
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

func TestEmailSTARTTLSWithAuth(t *testing.T) {
	st := startSMTP(t, "starttls", certtest.SMTPOptions{User: "certmon", Pass: "s3cret"})
	m := Message{Key: "evt-1:chan-1", Items: []Item{expiredItem()}}
	ans, err := emailSend(t, st.config("starttls"), st.options(), m)
	if err != nil || ans.Code != 250 {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	mails := st.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails received", len(mails))
	}
	got := mails[0]
	if got.From != "certmon@example.com" {
		t.Errorf("MAIL FROM %q", got.From)
	}
	if strings.Join(got.To, ",") != "ops@example.com,sec@example.org" {
		t.Errorf("RCPT TO %q, want exactly cfg.To", got.To)
	}

	p := certtest.ParseMail(t, got.Data)
	if subject, want := p.Subject, "[certmon] CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired"; subject != want {
		t.Errorf("Subject %q, want %q", subject, want)
	}
	if from, err := p.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "certmon@example.com" {
		t.Errorf("From %v (%v)", from, err)
	}
	if to, err := p.Header.AddressList("To"); err != nil || len(to) != 2 || to[1].Address != "sec@example.org" {
		t.Errorf("To %v (%v)", to, err)
	}
	if got, want := p.Header.Get("Message-ID"), MessageID("evt-1:chan-1"); got != want || len(want) != len("<@certmon>")+32 {
		t.Errorf("Message-ID %q, want %q", got, want)
	}
	if p.Header.Get("X-Certmon-Key") != "evt-1:chan-1" {
		t.Errorf("X-Certmon-Key %q", p.Header.Get("X-Certmon-Key"))
	}
	if _, err := p.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if !strings.Contains(p.Text, "CRITICAL <script>alert(1)</script>.example.com:443 — certificate expired") ||
		!strings.Contains(p.Text, "Expires:   2026-06-13T12:00:00Z") {
		t.Errorf("text part:\n%s", p.Text)
	}
	if p.HTML == "" || strings.Contains(p.HTML, "<script>") {
		t.Fatalf("HTML part missing or unescaped:\n%s", p.HTML)
	}
	if !strings.Contains(p.HTML, "&lt;script&gt;alert(1)&lt;/script&gt;.example.com:443") {
		t.Errorf("HTML lacks the escaped target:\n%s", p.HTML)
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	st := startSMTP(t, "tls", certtest.SMTPOptions{User: "certmon", Pass: "s3cret"})
	var items []Item
	for i := range 12 {
		items = append(items, reminderItem(i))
	}
	ans, err := emailSend(t, st.config("tls"), st.options(), Message{Key: "group-1", Items: items})
	if err != nil || ans.Code != 250 {
		t.Fatalf("Send = %+v, %v", ans, err)
	}
	mails := st.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d mails", len(mails))
	}
	p := certtest.ParseMail(t, mails[0].Data)
	if subject := p.Subject; subject != "[certmon] 12 alerts: 12 warning" {
		t.Errorf("Subject %q", subject)
	}
	if !strings.Contains(p.HTML, "host11.example.com:443") || !strings.Contains(p.Text, "host11.example.com:443") {
		t.Error("group body lacks an item")
	}
}

func TestEmailAuthLogin(t *testing.T) {
	st := startSMTP(t, "starttls", certtest.SMTPOptions{User: "certmon", Pass: "s3cret", Mechanisms: []string{sasl.Login}})
	if _, err := emailSend(t, st.config("starttls"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(st.Mails()) != 1 {
		t.Fatal("not received")
	}
}

func TestEmailWrongPassword(t *testing.T) {
	st := startSMTP(t, "starttls", certtest.SMTPOptions{User: "certmon", Pass: "s3cret"})
	cfg := st.config("starttls")
	cfg.Password = "wrong"
	ans, err := emailSend(t, cfg, st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	if !Permanent(err) || ans.Code != 535 {
		t.Fatalf("Send = %+v, %v; want permanent 535", ans, err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("error shows the password: %v", err)
	}
	if len(st.Mails()) != 0 {
		t.Error("a mail went through")
	}
}

func TestEmailRecipientRejected(t *testing.T) {
	for _, tt := range []struct {
		code      int
		permanent bool
	}{{451, false}, {452, false}, {550, true}} {
		st := startSMTP(t, "starttls", certtest.SMTPOptions{RcptErr: &smtp.SMTPError{Code: tt.code, EnhancedCode: smtp.EnhancedCode{tt.code / 100, 1, 1}, Message: "not now " + strconv.Itoa(tt.code)}})
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
	st := startSMTP(t, "starttls", certtest.SMTPOptions{User: "certmon", Pass: "s3cret", Mechanisms: []string{}})
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
	st := startSMTP(t, "none", certtest.SMTPOptions{})
	ans, err := emailSend(t, st.config("starttls"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}})
	if err == nil || Permanent(err) || ans.Code != 0 {
		t.Fatalf("Send = %+v, %v; want a retryable failure", ans, err)
	}
	if len(st.Mails()) != 0 {
		t.Error("a mail went through without TLS")
	}

	// tls=none is allowed to deliver in clear.
	if _, err := emailSend(t, st.config("none"), st.options(), Message{Key: "k", Items: []Item{reminderItem(0)}}); err != nil {
		t.Fatalf("tls=none: %v", err)
	}
	if len(st.Mails()) != 1 {
		t.Error("tls=none: not received")
	}
}

func TestEmailUntrustedCertificate(t *testing.T) {
	st := startSMTP(t, "starttls", certtest.SMTPOptions{})
	opt := st.options()
	opt.RootCAs = x509.NewCertPool() // trusts nothing
	_, err := emailSend(t, st.config("starttls"), opt, Message{Key: "k", Items: []Item{reminderItem(0)}})
	var ue x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &ue) {
		t.Fatalf("Send = %v; want an unknown-authority error", err)
	}
	if len(st.Mails()) != 0 {
		t.Error("a mail went through to an untrusted server")
	}
}

func TestEmailPreparedAndStableMessageID(t *testing.T) {
	st := startSMTP(t, "starttls", certtest.SMTPOptions{})
	m := Message{Key: "report-2026-06", Subject: "certmon weekly report", Prepared: &Prepared{HTML: "<h1>Report</h1>", Text: "Report"}}
	for range 2 { // a resend after a crash
		if _, err := emailSend(t, st.config("starttls"), st.options(), m); err != nil {
			t.Fatal(err)
		}
	}
	mails := st.Mails()
	if len(mails) != 2 {
		t.Fatalf("%d mails", len(mails))
	}
	a, b := certtest.ParseMail(t, mails[0].Data), certtest.ParseMail(t, mails[1].Data)
	if a.Header.Get("Message-ID") != b.Header.Get("Message-ID") || a.Header.Get("Message-ID") != MessageID("report-2026-06") {
		t.Errorf("Message-IDs %q %q", a.Header.Get("Message-ID"), b.Header.Get("Message-ID"))
	}
	if a.Header.Get("Subject") != "certmon weekly report" {
		t.Errorf("Subject %q", a.Header.Get("Subject"))
	}
	if strings.TrimSpace(a.HTML) != "<h1>Report</h1>" || strings.TrimSpace(a.Text) != "Report" {
		t.Errorf("prepared parts changed: %q %q", a.HTML, a.Text)
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
