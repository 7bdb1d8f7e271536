package notify

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestValidateEmail(t *testing.T) {
	base := func() ChannelConfig {
		return ChannelConfig{Host: "smtp.example.com", From: "certmon@example.com", To: []string{"ops@example.com"}}
	}
	tests := []struct {
		name    string
		mod     func(c *ChannelConfig)
		wantErr string // substring; "" for valid
		check   func(t *testing.T, c ChannelConfig)
	}{
		{name: "defaults", check: func(t *testing.T, c ChannelConfig) {
			if c.Port != 587 || c.TLS != TLSStartTLS {
				t.Errorf("port %d tls %q, want 587 starttls", c.Port, c.TLS)
			}
		}},
		{name: "implicit tls port", mod: func(c *ChannelConfig) { c.TLS = "TLS" }, check: func(t *testing.T, c ChannelConfig) {
			if c.Port != 465 || c.TLS != TLSImplicit {
				t.Errorf("port %d tls %q, want 465 tls", c.Port, c.TLS)
			}
		}},
		{name: "explicit port kept", mod: func(c *ChannelConfig) { c.Port = 2525; c.TLS = "none" }, check: func(t *testing.T, c ChannelConfig) {
			if c.Port != 2525 || c.TLS != TLSNone {
				t.Errorf("port %d tls %q", c.Port, c.TLS)
			}
		}},
		{name: "named addresses", mod: func(c *ChannelConfig) {
			c.From = "certmon <certmon@example.com>"
			c.To = []string{" Ops <ops@example.com> ", "b@example.org"}
		}, check: func(t *testing.T, c ChannelConfig) {
			if c.To[0] != "Ops <ops@example.com>" {
				t.Errorf("to[0] = %q, want trimmed", c.To[0])
			}
		}},
		{name: "auth", mod: func(c *ChannelConfig) { c.Username = "u"; c.Password = "p" }},
		{name: "ipv6 host in brackets", mod: func(c *ChannelConfig) { c.Host = "[::1]" }, check: func(t *testing.T, c ChannelConfig) {
			if c.Host != "::1" {
				t.Errorf("host %q", c.Host)
			}
		}},
		{name: "auth without tls to loopback", mod: func(c *ChannelConfig) { c.Host = "127.0.0.1"; c.TLS = "none"; c.Username = "u" }},
		{name: "no host", mod: func(c *ChannelConfig) { c.Host = " " }, wantErr: "host is required"},
		{name: "bad host", mod: func(c *ChannelConfig) { c.Host = "smtp example.com" }, wantErr: "host is not a valid"},
		{name: "bad port", mod: func(c *ChannelConfig) { c.Port = 70000 }, wantErr: "port must be between 1 and 65535"},
		{name: "negative port", mod: func(c *ChannelConfig) { c.Port = -1 }, wantErr: "port must be between"},
		{name: "bad tls", mod: func(c *ChannelConfig) { c.TLS = "ssl" }, wantErr: `tls must be "starttls", "tls" or "none"`},
		{name: "no from", mod: func(c *ChannelConfig) { c.From = "" }, wantErr: "from is required"},
		{name: "bad from", mod: func(c *ChannelConfig) { c.From = "not an address" }, wantErr: "from is not a valid email address"},
		{name: "no to", mod: func(c *ChannelConfig) { c.To = nil }, wantErr: "to needs at least one address"},
		{name: "bad to", mod: func(c *ChannelConfig) { c.To = []string{"ops@example.com", "nope"} }, wantErr: "to[1] is not a valid email address"},
		{name: "empty to entry", mod: func(c *ChannelConfig) { c.To = []string{""} }, wantErr: "to[0] is empty"},
		{name: "header injection in to", mod: func(c *ChannelConfig) { c.To = []string{"a@example.com\r\nBcc: x@evil.example"} }, wantErr: "to[0] is not a valid"},
		{name: "too many to", mod: func(c *ChannelConfig) { c.To = make([]string, 101) }, wantErr: "at most 100"},
		{name: "password without username", mod: func(c *ChannelConfig) { c.Password = "p" }, wantErr: "password is set but username is not"},
		{name: "clear-text auth", mod: func(c *ChannelConfig) { c.TLS = "none"; c.Username = "u"; c.Password = "p" }, wantErr: "username needs tls"},
		{name: "url on email", mod: func(c *ChannelConfig) { c.URL = "https://x.example" }, wantErr: "url is not a setting of an email channel"},
		{name: "secret on email", mod: func(c *ChannelConfig) { c.Secret = "s" }, wantErr: "secret is not a setting of an email channel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			if tt.mod != nil {
				tt.mod(&c)
			}
			err := c.Validate(TypeEmail)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateHTTPChannels(t *testing.T) {
	const secretPath = "/services/T000/B000/XXXXSECRETAbCd"
	tests := []struct {
		typ     string
		cfg     ChannelConfig
		wantErr string
	}{
		{TypeSlack, ChannelConfig{URL: "https://hooks.slack.com" + secretPath}, ""},
		{TypeTeams, ChannelConfig{URL: "https://example.webhook.office.com/webhookb2/abc"}, ""},
		{TypeWebhook, ChannelConfig{URL: "http://127.0.0.1:8080/hook", Secret: "s3cret"}, ""},
		{TypeWebhook, ChannelConfig{URL: "https://example.com/hook"}, ""}, // secret optional
		{TypeSlack, ChannelConfig{}, "url is required"},
		{TypeSlack, ChannelConfig{URL: "ftp://example.com" + secretPath}, "url must start with https://"},
		{TypeSlack, ChannelConfig{URL: "hooks.slack.com" + secretPath}, "url must start with https://"},
		{TypeTeams, ChannelConfig{URL: "https://" + secretPath}, "url has no host"},
		{TypeTeams, ChannelConfig{URL: "https://exa mple.com" + secretPath}, "url is not a valid URL"},
		{TypeTeams, ChannelConfig{URL: "https://example.com:99999" + secretPath}, "url"},
		{TypeWebhook, ChannelConfig{URL: "https://example.com/" + strings.Repeat("a", 3000)}, "url must be at most"},
		{TypeSlack, ChannelConfig{URL: "https://hooks.slack.com/x", Secret: "s"}, "secret is not a setting of a slack channel"},
		{TypeTeams, ChannelConfig{URL: "https://x.example/x", Host: "h"}, "host is not a setting of a teams channel"},
		{TypeWebhook, ChannelConfig{URL: "https://x.example/x", To: []string{"a@b.c"}}, "to is not a setting of a webhook channel"},
		{TypeWebhook, ChannelConfig{URL: "https://x.example/x", Password: "p"}, "password is not a setting of a webhook channel"},
		{"sms", ChannelConfig{URL: "https://x.example/x"}, `unknown channel type "sms"`},
		{"", ChannelConfig{}, "channel type is required"},
	}
	for _, tt := range tests {
		t.Run(tt.typ+" "+tt.wantErr, func(t *testing.T) {
			err := tt.cfg.Validate(tt.typ)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error repeats the secret url: %v", err)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		cfg  ChannelConfig
		want map[string]any
	}{
		{"email", TypeEmail, ChannelConfig{Host: "smtp.example.com", Port: 587, TLS: "starttls", Username: "u", Password: "hunter2",
			From: "a@example.com", To: []string{"b@example.com"}},
			map[string]any{"host": "smtp.example.com", "port": 587, "tls": "starttls", "username": "u", "password": Masked,
				"from": "a@example.com", "to": []string{"b@example.com"}}},
		{"email without password", TypeEmail, ChannelConfig{Host: "h", Port: 25, TLS: "none", From: "a@example.com", To: []string{"b@example.com"}},
			map[string]any{"host": "h", "port": 25, "tls": "none", "from": "a@example.com", "to": []string{"b@example.com"}}},
		{"slack", TypeSlack, ChannelConfig{URL: "https://hooks.slack.com/services/T000/B000/XXXXXXXXAbCd"},
			map[string]any{"url": "https://hooks.slack.com/…AbCd"}},
		{"teams with query", TypeTeams, ChannelConfig{URL: "https://prod.westeurope.logic.azure.com:443/workflows/123/triggers/manual/paths/invoke?api-version=2016-06-01&sig=abcdefWXYZ"},
			map[string]any{"url": "https://prod.westeurope.logic.azure.com:443/…WXYZ"}},
		{"webhook with secret", TypeWebhook, ChannelConfig{URL: "https://user:pass@example.com/hooks/certmon-1234", Secret: "k"},
			map[string]any{"url": "https://example.com/…1234", "secret": Masked}},
		{"short path shows no suffix", TypeWebhook, ChannelConfig{URL: "https://example.com/hook"},
			map[string]any{"url": "https://example.com/…"}},
		{"bare host", TypeWebhook, ChannelConfig{URL: "https://example.com"},
			map[string]any{"url": "https://example.com/"}},
		{"stray fields of another type are not shown", TypeSlack, ChannelConfig{URL: "https://hooks.slack.com/services/T/B/XXXXXXXXXXXXwxyz", Password: "stray-pass", Secret: "stray-secret"},
			map[string]any{"url": "https://hooks.slack.com/…wxyz"}},
		{"unparsable url", TypeWebhook, ChannelConfig{URL: "::not a url"}, map[string]any{"url": Masked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Redacted(tt.typ)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Redacted = %#v\nwant %#v", got, tt.want)
			}
			b, _ := json.Marshal(got)
			for _, secret := range []string{tt.cfg.Password, tt.cfg.Secret, "services/T000", "pass@", "sig=", "hooks/certmon"} {
				if secret != "" && strings.Contains(string(b), secret) {
					t.Errorf("redacted JSON %s contains %q", b, secret)
				}
			}
		})
	}
}

func TestKeepSecrets(t *testing.T) {
	oldHook := ChannelConfig{URL: "https://example.com/hooks/abcdefghijkl", Secret: "old-secret"}
	oldMail := ChannelConfig{Host: "h", Username: "u", Password: "old-pass", From: "a@example.com", To: []string{"b@example.com"}}
	tests := []struct {
		name string
		typ  string
		in   ChannelConfig
		old  ChannelConfig
		want ChannelConfig
	}{
		{"webhook: empty keeps", TypeWebhook, ChannelConfig{}, oldHook, oldHook},
		{"webhook: what GET showed keeps", TypeWebhook,
			ChannelConfig{URL: "https://example.com/…ijkl", Secret: Masked}, oldHook, oldHook},
		{"webhook: new values replace", TypeWebhook,
			ChannelConfig{URL: "https://example.com/hooks/new", Secret: "new"}, oldHook,
			ChannelConfig{URL: "https://example.com/hooks/new", Secret: "new"}},
		{"webhook: a different redacted url is not the old one", TypeWebhook,
			ChannelConfig{URL: "https://other.example/…ijkl", Secret: "new"}, oldHook,
			ChannelConfig{URL: "https://other.example/…ijkl", Secret: "new"}},
		{"slack: secret is not copied", TypeSlack, ChannelConfig{}, oldHook, ChannelConfig{URL: oldHook.URL}},
		{"email: masked keeps", TypeEmail, ChannelConfig{Host: "h2", Username: "u", Password: Masked}, oldMail,
			ChannelConfig{Host: "h2", Username: "u", Password: "old-pass"}},
		{"email: empty keeps", TypeEmail, ChannelConfig{Username: "u"}, oldMail, ChannelConfig{Username: "u", Password: "old-pass"}},
		{"email: new password", TypeEmail, ChannelConfig{Username: "u", Password: "new"}, oldMail, ChannelConfig{Username: "u", Password: "new"}},
		{"email: no username drops the password", TypeEmail, ChannelConfig{}, oldMail, ChannelConfig{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in
			c.KeepSecrets(tt.typ, tt.old)
			if !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("KeepSecrets = %#v\nwant %#v", c, tt.want)
			}
		})
	}

	// The round trip a client does: GET (redacted), PUT it back.
	got := oldHook.Redacted(TypeWebhook)
	back := ChannelConfig{URL: got["url"].(string), Secret: got["secret"].(string)}
	back.KeepSecrets(TypeWebhook, oldHook)
	if !reflect.DeepEqual(back, oldHook) {
		t.Fatalf("round trip = %#v, want %#v", back, oldHook)
	}
}

func TestNewSenderValidates(t *testing.T) {
	if _, err := NewSender(TypeSlack, ChannelConfig{URL: "nope"}, SenderOptions{}); err == nil {
		t.Fatal("NewSender accepted an invalid config")
	}
	if _, err := NewSender("pager", ChannelConfig{}, SenderOptions{}); err == nil {
		t.Fatal("NewSender accepted an unknown type")
	}
	for _, typ := range []string{TypeTeams, TypeSlack, TypeWebhook} {
		if s, err := NewSender(typ, ChannelConfig{URL: "https://example.com/x"}, SenderOptions{}); err != nil || s == nil {
			t.Fatalf("NewSender(%s): %v", typ, err)
		}
	}
	cfg := ChannelConfig{Host: "smtp.example.com", From: "a@example.com", To: []string{" b@example.com"}}
	if _, err := NewSender(TypeEmail, cfg, SenderOptions{}); err != nil {
		t.Fatalf("NewSender(email): %v", err)
	}
	if cfg.To[0] != " b@example.com" {
		t.Error("NewSender changed the caller's To slice")
	}
}
