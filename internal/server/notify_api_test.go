package server

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/assess"
	"github.com/certmon/certmon/internal/certtest"
	"github.com/certmon/certmon/internal/monitor"
	"github.com/certmon/certmon/internal/notify"
	"github.com/certmon/certmon/internal/secret"
	"github.com/certmon/certmon/internal/store"
)

// notifyEnv is an env whose server holds a secrets key, with the raw
// database at hand to check what is stored.
type notifyEnv struct {
	*env
	db     *sql.DB
	engine store.Engine
	box    *secret.Box
}

func forEachNotifyEngine(t *testing.T, fn func(t *testing.T, e *notifyEnv)) {
	t.Helper()
	for _, engine := range []store.Engine{store.SQLite, store.Postgres} {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			dsn := testDSN(t, engine)
			e := newEnv(t, dsn)
			key, err := secret.ParseKey(secret.NewKey())
			if err != nil {
				t.Fatal(err)
			}
			box, err := secret.New(key)
			if err != nil {
				t.Fatal(err)
			}
			cfg := e.srv.cfg
			cfg.Secrets = box
			cfg.SenderOptions = notify.SenderOptions{Timeout: 5 * time.Second}
			if e.srv, err = New(cfg); err != nil {
				t.Fatal(err)
			}
			driver := "sqlite"
			if engine == store.Postgres {
				driver = "pgx"
			}
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			fn(t, &notifyEnv{env: e, db: db, engine: engine, box: box})
		})
	}
}

// q rewrites ? placeholders for PostgreSQL.
func (e *notifyEnv) q(query string) string {
	if e.engine != store.Postgres {
		return query
	}
	n := 0
	var b strings.Builder
	for _, c := range query {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// storedConfig reads a channel's config column and opens it.
func (e *notifyEnv) storedConfig(t *testing.T, id int64) (string, notify.ChannelConfig) {
	t.Helper()
	var raw string
	if err := e.db.QueryRow(e.q(`SELECT config FROM channels WHERE id = ?`), id).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	plain, err := e.box.Open(raw)
	if err != nil {
		t.Fatalf("stored config does not open: %v", err)
	}
	var cfg notify.ChannelConfig
	if err := json.Unmarshal(plain, &cfg); err != nil {
		t.Fatal(err)
	}
	return raw, cfg
}

type channelJSON struct {
	ID     int64          `json:"id"`
	Name   string         `json:"name"`
	Type   string         `json:"type"`
	Config map[string]any `json:"config"`
}

func (e *notifyEnv) createChannel(t *testing.T, body any) channelJSON {
	t.Helper()
	var c channelJSON
	e.do("POST", "/api/v1/channels", body).decode(t, http.StatusCreated, &c)
	return c
}

// noSecrets fails when a response body shows any of the secrets.
func noSecrets(t *testing.T, r response, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(string(r.Body), s) {
			t.Errorf("response %d shows secret %q: %s", r.Status, s, r.Body)
		}
	}
}

const (
	hookPath   = "/services/T0001/B0002/hookSECRETtoken1234"
	hookURL    = "https://hooks.example.com" + hookPath
	hookSecret = "whsec-sign-me-please"
	mailPass   = "mail-pass-hunter2"
)

func TestChannelsAPI(t *testing.T) {
	forEachNotifyEngine(t, func(t *testing.T, e *notifyEnv) {
		secrets := []string{"hookSECRETtoken", hookSecret, mailPass}
		hook := e.createChannel(t, map[string]any{"name": " ops-hook ", "type": "webhook",
			"config": map[string]any{"url": hookURL, "secret": hookSecret}})
		if hook.ID <= 0 || hook.Name != "ops-hook" || hook.Type != "webhook" {
			t.Errorf("created %+v", hook)
		}
		if u, _ := hook.Config["url"].(string); !strings.HasPrefix(u, "https://hooks.example.com/") || strings.Contains(u, "hookSECRET") {
			t.Errorf("url shown as %q", u)
		}
		if hook.Config["secret"] != notify.Masked {
			t.Errorf("secret shown as %v", hook.Config["secret"])
		}
		mail := e.createChannel(t, map[string]any{"name": "mail", "type": "email", "config": map[string]any{
			"host": "smtp.example.com", "username": "certmon", "password": mailPass,
			"from": "certmon@example.com", "to": []string{"ops@example.com"}}})
		if mail.Config["password"] != notify.Masked || mail.Config["port"] != 587.0 || mail.Config["tls"] != "starttls" {
			t.Errorf("email config %v", mail.Config)
		}

		// Stored sealed, not in clear.
		raw, cfg := e.storedConfig(t, hook.ID)
		if !strings.HasPrefix(raw, "v1:") || strings.Contains(raw, "hookSECRET") || strings.Contains(raw, hookSecret) {
			t.Errorf("stored config is not sealed: %s", raw)
		}
		if cfg.URL != hookURL || cfg.Secret != hookSecret {
			t.Errorf("stored config %+v", cfg)
		}
		if raw, _ := e.storedConfig(t, mail.ID); strings.Contains(raw, mailPass) {
			t.Errorf("password stored in clear")
		}

		// Reads never show secrets.
		r := e.do("GET", "/api/v1/channels", nil)
		noSecrets(t, r, secrets...)
		var list struct{ Channels []channelJSON }
		r.decode(t, http.StatusOK, &list)
		if len(list.Channels) != 2 || list.Channels[0].Name != "mail" || list.Channels[1].Name != "ops-hook" {
			t.Errorf("list %+v", list.Channels)
		}
		r = e.do("GET", fmt.Sprintf("/api/v1/channels/%d", hook.ID), nil)
		noSecrets(t, r, secrets...)
		var got channelJSON
		r.decode(t, http.StatusOK, &got)
		if !reflect.DeepEqual(got, hook) {
			t.Errorf("GET %+v, POST said %+v", got, hook)
		}

		// Sending back what GET showed keeps the secrets.
		r = e.do("PUT", fmt.Sprintf("/api/v1/channels/%d", hook.ID), map[string]any{"name": "renamed", "type": "webhook", "config": got.Config})
		noSecrets(t, r, secrets...)
		r.decode(t, http.StatusOK, &got)
		if got.Name != "renamed" {
			t.Errorf("renamed to %q", got.Name)
		}
		if _, cfg := e.storedConfig(t, hook.ID); cfg.URL != hookURL || cfg.Secret != hookSecret {
			t.Errorf("masked values replaced the secrets: %+v", cfg)
		}
		// So does leaving them out; a new value replaces them.
		e.do("PUT", fmt.Sprintf("/api/v1/channels/%d", hook.ID), map[string]any{"name": "renamed", "type": "webhook",
			"config": map[string]any{}}).decode(t, http.StatusOK, nil)
		if _, cfg := e.storedConfig(t, hook.ID); cfg.URL != hookURL || cfg.Secret != hookSecret {
			t.Errorf("omitted secrets were dropped: %+v", cfg)
		}
		e.do("PUT", fmt.Sprintf("/api/v1/channels/%d", hook.ID), map[string]any{"name": "renamed", "type": "webhook",
			"config": map[string]any{"url": "https://other.example.com/new/path/abcdefgh", "secret": "new-secret"}}).decode(t, http.StatusOK, nil)
		if _, cfg := e.storedConfig(t, hook.ID); cfg.URL != "https://other.example.com/new/path/abcdefgh" || cfg.Secret != "new-secret" {
			t.Errorf("new secrets not stored: %+v", cfg)
		}
		e.do("PUT", fmt.Sprintf("/api/v1/channels/%d", mail.ID), map[string]any{"name": "mail", "type": "email",
			"config": mail.Config}).decode(t, http.StatusOK, nil)
		if _, cfg := e.storedConfig(t, mail.ID); cfg.Password != mailPass {
			t.Errorf("password not kept")
		}

		// Conflicts, validation, absence.
		e.do("POST", "/api/v1/channels", map[string]any{"name": "mail", "type": "slack",
			"config": map[string]any{"url": "https://hooks.slack.com/services/x"}}).wantError(t, http.StatusConflict, "conflict", `"mail"`)
		e.do("PUT", fmt.Sprintf("/api/v1/channels/%d", hook.ID), map[string]any{"name": "mail", "type": "webhook",
			"config": map[string]any{}}).wantError(t, http.StatusConflict, "conflict", `"mail"`)
		for _, c := range []struct {
			body any
			want string
		}{
			{map[string]any{"name": "x", "type": "webhook", "config": map[string]any{}}, "config: url is required"},
			{map[string]any{"name": "x", "type": "webhook", "config": map[string]any{"url": "ftp://example.com/x"}}, "config: url"},
			{map[string]any{"name": "x", "type": "pager", "config": map[string]any{}}, "type"},
			{map[string]any{"name": "x", "type": "slack", "config": map[string]any{"url": "https://h.example.com/x", "nope": 1}}, "config.nope"},
			{map[string]any{"name": "x", "type": "email", "config": map[string]any{"host": "smtp.example.com", "from": "a@example.com"}}, "config: to"},
			{map[string]any{"name": "   ", "type": "slack", "config": map[string]any{"url": "https://h.example.com/x"}}, "name"},
			{map[string]any{"name": "x", "type": "slack"}, "config"},
		} {
			e.do("POST", "/api/v1/channels", c.body).wantError(t, http.StatusBadRequest, "invalid_field", c.want)
		}
		e.do("GET", "/api/v1/channels/9999", nil).wantError(t, http.StatusNotFound, "not_found", "channel 9999")
		e.do("PUT", "/api/v1/channels/9999", map[string]any{"name": "x", "type": "slack",
			"config": map[string]any{"url": "https://h.example.com/x"}}).wantError(t, http.StatusNotFound, "not_found", "channel 9999")
		e.do("POST", "/api/v1/channels/9999/test", nil).wantError(t, http.StatusNotFound, "not_found", "channel 9999")

		e.do("DELETE", fmt.Sprintf("/api/v1/channels/%d", mail.ID), nil).decode(t, http.StatusNoContent, nil)
		e.do("GET", fmt.Sprintf("/api/v1/channels/%d", mail.ID), nil).wantError(t, http.StatusNotFound, "not_found", "")
		e.do("DELETE", fmt.Sprintf("/api/v1/channels/%d", mail.ID), nil).wantError(t, http.StatusNotFound, "not_found", "")
	})
}

// Without a key nothing is stored: channel writes and tests answer 503.
func TestChannelsWithoutKey(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		body := map[string]any{"name": "x", "type": "slack", "config": map[string]any{"url": "https://h.example.com/x"}}
		e.do("POST", "/api/v1/channels", body).wantError(t, http.StatusServiceUnavailable, "secrets_unavailable", "notifications.secret_key")
		e.do("PUT", "/api/v1/channels/1", body).wantError(t, http.StatusServiceUnavailable, "secrets_unavailable", "notifications.secret_key")
		e.do("POST", "/api/v1/channels/1/test", nil).wantError(t, http.StatusServiceUnavailable, "secrets_unavailable", "notifications.secret_key")
		// A channel stored under a key this server lacks shows config null.
		if _, err := e.store.CreateChannel(context.Background(), store.Channel{TeamID: store.DefaultTeamID, Name: "old",
			Type: "slack", Config: "v1:AAAA"}); err != nil {
			t.Fatal(err)
		}
		var list struct{ Channels []map[string]any }
		e.do("GET", "/api/v1/channels", nil).decode(t, http.StatusOK, &list)
		if len(list.Channels) != 1 || list.Channels[0]["config"] != nil || list.Channels[0]["name"] != "old" {
			t.Errorf("list %v", list.Channels)
		}
	})
}

// receiver is a webhook receiver on 127.0.0.1 that answers status and
// body and records what it got.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
}

func newReceiver(t *testing.T, status int, answer string) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, b)
		rc.sigs = append(rc.sigs, r.Header.Get(notify.HeaderSignature))
		rc.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

type testAnswer struct {
	OK    bool   `json:"ok"`
	Code  int    `json:"code"`
	Body  string `json:"body"`
	Error string `json:"error"`
}

func TestChannelTestMessage(t *testing.T) {
	forEachNotifyEngine(t, func(t *testing.T, e *notifyEnv) {
		const path = "/hook/TESTSECRETpath0987654321"
		ok := newReceiver(t, http.StatusOK, "thanks")
		c := e.createChannel(t, map[string]any{"name": "good", "type": "webhook",
			"config": map[string]any{"url": ok.srv.URL + path, "secret": hookSecret}})
		r := e.do("POST", fmt.Sprintf("/api/v1/channels/%d/test", c.ID), nil)
		noSecrets(t, r, "TESTSECRET", hookSecret)
		var a testAnswer
		r.decode(t, http.StatusOK, &a)
		if !a.OK || a.Code != 200 || a.Body != "thanks" || a.Error != "" {
			t.Errorf("answer %+v", a)
		}
		ok.mu.Lock()
		if len(ok.bodies) != 1 {
			t.Fatalf("receiver got %d requests", len(ok.bodies))
		}
		var p notify.WebhookPayload
		if err := json.Unmarshal(ok.bodies[0], &p); err != nil {
			t.Fatal(err)
		}
		if !p.Test || len(p.Items) != 1 || p.Items[0].Kind != "test" || !strings.Contains(p.Items[0].Text, `"good"`) || p.Key == "" {
			t.Errorf("payload %s", ok.bodies[0])
		}
		if !strings.HasPrefix(ok.sigs[0], "sha256=") {
			t.Errorf("no signature: %q", ok.sigs[0])
		}
		ok.mu.Unlock()

		// A refusal is the receiver's answer, not an error of the API.
		bad := newReceiver(t, http.StatusInternalServerError, "boom")
		c = e.createChannel(t, map[string]any{"name": "bad", "type": "webhook", "config": map[string]any{"url": bad.srv.URL + path}})
		r = e.do("POST", fmt.Sprintf("/api/v1/channels/%d/test", c.ID), nil)
		noSecrets(t, r, "TESTSECRET")
		r.decode(t, http.StatusOK, &a)
		if a.OK || a.Code != 500 || a.Body != "boom" || !strings.Contains(a.Error, "500") {
			t.Errorf("answer %+v", a)
		}

		// Nobody listening: ok false, no code, and the URL stays secret.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + l.Addr().String()
		l.Close()
		c = e.createChannel(t, map[string]any{"name": "down", "type": "slack", "config": map[string]any{"url": closed + path}})
		r = e.do("POST", fmt.Sprintf("/api/v1/channels/%d/test", c.ID), nil)
		noSecrets(t, r, "TESTSECRET")
		a = testAnswer{}
		r.decode(t, http.StatusOK, &a)
		if a.OK || a.Code != 0 || a.Error == "" {
			t.Errorf("answer %+v", a)
		}
	})
}

type ruleJSON struct {
	ID         int64    `json:"id"`
	Name       string   `json:"name"`
	Tags       []string `json:"tags"`
	Monitors   []int64  `json:"monitors"`
	Severities []string `json:"severities"`
	Events     []string `json:"events"`
	Channels   []int64  `json:"channels"`
}

func TestRulesAPI(t *testing.T) {
	forEachNotifyEngine(t, func(t *testing.T, e *notifyEnv) {
		a := e.createChannel(t, map[string]any{"name": "a", "type": "slack", "config": map[string]any{"url": "https://h.example.com/a"}})
		b := e.createChannel(t, map[string]any{"name": "b", "type": "slack", "config": map[string]any{"url": "https://h.example.com/b"}})

		var r ruleJSON
		e.do("POST", "/api/v1/rules", map[string]any{"name": "prod", "tags": []string{"prod", " prod"}, "monitors": []int64{4, 4},
			"severities": []string{"critical", "warning"}, "events": []string{"expired", "invalid"},
			"channels": []int64{a.ID, b.ID}}).decode(t, http.StatusCreated, &r)
		if r.ID <= 0 || r.Name != "prod" || !slices.Equal(r.Tags, []string{"prod"}) || !slices.Equal(r.Monitors, []int64{4}) ||
			!slices.Equal(r.Severities, []string{"critical", "warning"}) || !slices.Equal(r.Events, []string{"expired", "invalid"}) ||
			!slices.Equal(r.Channels, []int64{a.ID, b.ID}) {
			t.Errorf("created %+v", r)
		}
		// Empty selectors are [] (everything), never null.
		resp := e.do("POST", "/api/v1/rules", map[string]any{"name": "all", "channels": []int64{a.ID}})
		for _, k := range []string{`"tags":[]`, `"monitors":[]`, `"severities":[]`, `"events":[]`} {
			if !strings.Contains(string(resp.Body), k) {
				t.Errorf("body lacks %s: %s", k, resp.Body)
			}
		}
		var all ruleJSON
		resp.decode(t, http.StatusCreated, &all)

		var list struct{ Rules []ruleJSON }
		e.do("GET", "/api/v1/rules", nil).decode(t, http.StatusOK, &list)
		if len(list.Rules) != 2 || list.Rules[0].Name != "all" || list.Rules[1].Name != "prod" {
			t.Errorf("list %+v", list.Rules)
		}
		var got ruleJSON
		e.do("GET", fmt.Sprintf("/api/v1/rules/%d", r.ID), nil).decode(t, http.StatusOK, &got)
		if !reflect.DeepEqual(got, r) {
			t.Errorf("GET %+v, POST said %+v", got, r)
		}

		for _, c := range []struct {
			body any
			want string
		}{
			{map[string]any{"name": "x", "channels": []int64{a.ID, 9999}}, "channels[1]: channel 9999 does not exist"},
			{map[string]any{"name": "x", "events": []string{"expired", "bogus"}}, "events[1]"},
			{map[string]any{"name": "x", "severities": []string{"fatal"}}, "severities[0]"},
			{map[string]any{"name": "x", "tags": []string{""}}, "tags[0]"},
			{map[string]any{"name": "x", "monitors": []int64{0}}, "monitors[0]"},
			{map[string]any{"tags": []string{"a"}}, "name"},
			{map[string]any{"name": "x", "what": 1}, "what"},
		} {
			e.do("POST", "/api/v1/rules", c.body).wantError(t, http.StatusBadRequest, "invalid_field", c.want)
		}
		e.do("POST", "/api/v1/rules", map[string]any{"name": "prod"}).wantError(t, http.StatusConflict, "conflict", `"prod"`)

		e.do("PUT", fmt.Sprintf("/api/v1/rules/%d", r.ID), map[string]any{"name": "prod2", "channels": []int64{b.ID}}).decode(t, http.StatusOK, &got)
		if got.Name != "prod2" || len(got.Tags) != 0 || len(got.Events) != 0 || !slices.Equal(got.Channels, []int64{b.ID}) {
			t.Errorf("replaced %+v", got)
		}
		e.do("PUT", fmt.Sprintf("/api/v1/rules/%d", r.ID), map[string]any{"name": "all"}).wantError(t, http.StatusConflict, "conflict", "")
		e.do("PUT", "/api/v1/rules/9999", map[string]any{"name": "x"}).wantError(t, http.StatusNotFound, "not_found", "rule 9999")

		// Deleting a channel takes it out of the rules.
		e.do("DELETE", fmt.Sprintf("/api/v1/channels/%d", b.ID), nil).decode(t, http.StatusNoContent, nil)
		e.do("GET", fmt.Sprintf("/api/v1/rules/%d", r.ID), nil).decode(t, http.StatusOK, &got)
		if got.Channels == nil || len(got.Channels) != 0 {
			t.Errorf("channels after delete %v", got.Channels)
		}

		e.do("DELETE", fmt.Sprintf("/api/v1/rules/%d", r.ID), nil).decode(t, http.StatusNoContent, nil)
		e.do("GET", fmt.Sprintf("/api/v1/rules/%d", r.ID), nil).wantError(t, http.StatusNotFound, "not_found", "")
		e.do("DELETE", fmt.Sprintf("/api/v1/rules/%d", r.ID), nil).wantError(t, http.StatusNotFound, "not_found", "")
	})
}

// The enum tags of event kinds spell out monitor.NotifiableKinds().
func TestEventKindEnumsInSync(t *testing.T) {
	want := monitor.NotifiableKinds()
	slices.Sort(want)
	for _, typ := range []reflect.Type{reflect.TypeFor[RuleFields](), reflect.TypeFor[NotificationFields]()} {
		f, _ := typ.FieldByName("Events")
		got := strings.Split(f.Tag.Get("enum"), ",")
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s.Events enum %v, want %v", typ.Name(), got, want)
		}
	}
}

type userJSON struct {
	ID            int64  `json:"id"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	Notifications struct {
		Mode       string   `json:"mode"`
		DigestAt   string   `json:"digest_at"`
		Events     []string `json:"events"`
		QuietStart string   `json:"quiet_start"`
		QuietEnd   string   `json:"quiet_end"`
		TimeZone   string   `json:"time_zone"`
	} `json:"notifications"`
}

func TestUsersAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		var u userJSON
		e.do("POST", "/api/v1/users", map[string]any{"email": " Ops@Example.com ", "name": "Ops", "notifications": map[string]any{
			"mode": "digest", "digest_at": "7:30", "events": []string{"expired", "invalid"}, "quiet_start": "22:00",
			"quiet_end": "07:00", "time_zone": "Europe/Berlin"}}).decode(t, http.StatusCreated, &u)
		n := u.Notifications
		if u.ID <= 0 || u.Email != "ops@example.com" || u.Name != "Ops" || n.Mode != "digest" || n.DigestAt != "07:30" ||
			!slices.Equal(n.Events, []string{"expired", "invalid"}) || n.QuietStart != "22:00" || n.QuietEnd != "07:00" || n.TimeZone != "Europe/Berlin" {
			t.Errorf("created %+v", u)
		}
		// Defaults are shown as they apply.
		var d userJSON
		r := e.do("POST", "/api/v1/users", map[string]any{"email": "a@example.com"})
		if !strings.Contains(string(r.Body), `"events":[]`) {
			t.Errorf("events not []: %s", r.Body)
		}
		r.decode(t, http.StatusCreated, &d)
		if d.Notifications.Mode != "immediate" || d.Notifications.TimeZone != "UTC" || d.Notifications.DigestAt != "" {
			t.Errorf("defaults %+v", d.Notifications)
		}
		var dg userJSON
		e.do("POST", "/api/v1/users", map[string]any{"email": "b@example.com", "notifications": map[string]any{"mode": "digest"}}).
			decode(t, http.StatusCreated, &dg)
		if dg.Notifications.DigestAt != "08:00" {
			t.Errorf("digest default %+v", dg.Notifications)
		}

		e.do("POST", "/api/v1/users", map[string]any{"email": "OPS@example.com"}).wantError(t, http.StatusConflict, "conflict", "ops@example.com")
		for _, c := range []struct {
			body any
			want string
		}{
			{map[string]any{"email": "not-an-address"}, "email"},
			{map[string]any{"email": "Ops <ops2@example.com>"}, "email"},
			{map[string]any{"email": "a@b.com, c@d.com"}, "email"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"mode": "weekly"}}, "notifications.mode"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"digest_at": "25:00"}}, "notifications.digest_at"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"quiet_start": "22:00"}}, "notifications.quiet_end"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"quiet_end": "07:00"}}, "notifications.quiet_start"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"quiet_start": "22:00", "quiet_end": "7h"}}, "notifications.quiet_end"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"time_zone": "Mars/Olympus"}}, "notifications.time_zone"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"time_zone": "Local"}}, "notifications.time_zone"},
			{map[string]any{"email": "x@example.com", "notifications": map[string]any{"events": []string{"bogus"}}}, "notifications.events"},
			{map[string]any{"name": "no address"}, "email"},
		} {
			e.do("POST", "/api/v1/users", c.body).wantError(t, http.StatusBadRequest, "invalid_field", c.want)
		}

		var list struct{ Users []userJSON }
		e.do("GET", "/api/v1/users", nil).decode(t, http.StatusOK, &list)
		if len(list.Users) != 3 || list.Users[0].Email != "a@example.com" || list.Users[2].Email != "ops@example.com" {
			t.Errorf("list %+v", list.Users)
		}
		var got userJSON
		e.do("GET", fmt.Sprintf("/api/v1/users/%d", u.ID), nil).decode(t, http.StatusOK, &got)
		if !reflect.DeepEqual(got, u) {
			t.Errorf("GET %+v, POST said %+v", got, u)
		}
		e.do("PUT", fmt.Sprintf("/api/v1/users/%d", u.ID), map[string]any{"email": "ops@example.com"}).decode(t, http.StatusOK, &got)
		if got.Name != "" || got.Notifications.Mode != "immediate" || len(got.Notifications.Events) != 0 || got.Notifications.QuietStart != "" {
			t.Errorf("replaced %+v", got)
		}
		e.do("PUT", fmt.Sprintf("/api/v1/users/%d", u.ID), map[string]any{"email": "a@example.com"}).wantError(t, http.StatusConflict, "conflict", "")
		e.do("PUT", "/api/v1/users/9999", map[string]any{"email": "z@example.com"}).wantError(t, http.StatusNotFound, "not_found", "user 9999")
		e.do("DELETE", fmt.Sprintf("/api/v1/users/%d", u.ID), nil).decode(t, http.StatusNoContent, nil)
		e.do("GET", fmt.Sprintf("/api/v1/users/%d", u.ID), nil).wantError(t, http.StatusNotFound, "not_found", "")
	})
}

func TestDeliveriesAPI(t *testing.T) {
	forEachNotifyEngine(t, func(t *testing.T, e *notifyEnv) {
		m := e.create(t, map[string]any{"target": "example.com"})
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := e.db.Exec(e.q(q), args...); err != nil {
				t.Fatal(err)
			}
		}
		at := t0.Add(-time.Hour).UnixMilli()
		exec(`INSERT INTO events (team_id, monitor_id, occurred_at, kind, status, severity, message, data, event_key)
			VALUES (1, ?, ?, 'expired', 'CRITICAL', 'critical', 'example.com expired', '{"serial":"0a"}', 'ev_test1')`, m.id(), at)
		ins := `INSERT INTO deliveries (team_id, event_key, channel_id, address, status, attempts, next_at, last_error, last_code, created_at, sent_at)
			VALUES (1, 'ev_test1', ?, ?, ?, ?, ?, ?, ?, ?, ?)`
		exec(ins, 0, "ops@example.com", "dead", 8, at, "550 mailbox unavailable", 550, at, nil)
		exec(ins, 7, "", "sent", 1, at, "", 200, at, at+1000)

		var page struct {
			Deliveries []map[string]any `json:"deliveries"`
			NextCursor *string          `json:"next_cursor"`
		}
		e.do("GET", "/api/v1/deliveries", nil).decode(t, http.StatusOK, &page)
		if len(page.Deliveries) != 2 || page.NextCursor != nil {
			t.Fatalf("page %+v", page)
		}
		sent, dead := page.Deliveries[0], page.Deliveries[1]
		if sent["status"] != "sent" || sent["channel_id"] != 7.0 || sent["sent_at"] == nil || sent["address"] != "" {
			t.Errorf("sent %v", sent)
		}
		if dead["status"] != "dead" || dead["channel_id"] != nil || dead["address"] != "ops@example.com" || dead["sent_at"] != nil ||
			dead["attempts"] != 8.0 || dead["last_error"] != "550 mailbox unavailable" || dead["last_code"] != 550.0 {
			t.Errorf("dead %v", dead)
		}
		ev, _ := dead["event"].(map[string]any)
		data, _ := ev["data"].(map[string]any)
		if ev["key"] != "ev_test1" || ev["kind"] != "expired" || ev["severity"] != "critical" || ev["status"] != "CRITICAL" ||
			ev["monitor_id"] != float64(m.id()) || ev["message"] != "example.com expired" || data["serial"] != "0a" ||
			ev["at"] != t0.Add(-time.Hour).Format(time.RFC3339) || ev["id"] == nil {
			t.Errorf("event %v", ev)
		}

		e.do("GET", "/api/v1/deliveries?status=dead", nil).decode(t, http.StatusOK, &page)
		if len(page.Deliveries) != 1 || page.Deliveries[0]["status"] != "dead" {
			t.Errorf("dead only: %v", page.Deliveries)
		}
		e.do("GET", "/api/v1/deliveries?limit=1", nil).decode(t, http.StatusOK, &page)
		if len(page.Deliveries) != 1 || page.NextCursor == nil {
			t.Fatalf("first page %+v", page)
		}
		e.do("GET", "/api/v1/deliveries?limit=1&cursor="+*page.NextCursor, nil).decode(t, http.StatusOK, &page)
		if len(page.Deliveries) != 1 || page.Deliveries[0]["status"] != "dead" || page.NextCursor != nil {
			t.Errorf("second page %+v", page)
		}
		e.do("GET", "/api/v1/deliveries?status=lost", nil).wantError(t, http.StatusBadRequest, "invalid_field", "status")
		e.do("GET", "/api/v1/deliveries?cursor=x", nil).wantError(t, http.StatusBadRequest, "invalid_field", "cursor")

		// A dead letter goes back to the outbox, due now.
		var d map[string]any
		id := int64(dead["id"].(float64))
		e.do("POST", fmt.Sprintf("/api/v1/deliveries/%d/retry", id), nil).decode(t, http.StatusOK, &d)
		if d["status"] != "pending" || d["attempts"] != 0.0 || d["next_at"] != t0.Format(time.RFC3339) || d["event"] == nil {
			t.Errorf("retried %v", d)
		}
		e.do("POST", fmt.Sprintf("/api/v1/deliveries/%d/retry", id), nil).wantError(t, http.StatusConflict, "conflict", "pending or sent")
		e.do("POST", fmt.Sprintf("/api/v1/deliveries/%d/retry", int64(sent["id"].(float64))), nil).wantError(t, http.StatusConflict, "conflict", "")
		e.do("POST", "/api/v1/deliveries/9999/retry", nil).wantError(t, http.StatusNotFound, "not_found", "delivery 9999")
	})
}

func TestSilenceAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		m := e.create(t, map[string]any{"target": "a.example.com"})
		if m["snoozed_until"] != nil || m["acknowledged"] != false {
			t.Errorf("new monitor: snoozed_until %v acknowledged %v", m["snoozed_until"], m["acknowledged"])
		}
		path := fmt.Sprintf("/api/v1/monitors/%d", m.id())
		until := t0.Add(48 * time.Hour)
		var got monitorJSON
		e.do("POST", path+"/snooze", map[string]any{"until": until.Format(time.RFC3339)}).decode(t, http.StatusOK, &got)
		if got["snoozed_until"] != until.Format(time.RFC3339) || got["acknowledged"] != false {
			t.Errorf("snoozed: %v %v", got["snoozed_until"], got["acknowledged"])
		}
		for _, body := range []any{
			map[string]any{"until": t0.Add(-time.Minute).Format(time.RFC3339)},
			map[string]any{"until": t0.AddDate(1, 1, 0).Format(time.RFC3339)},
			map[string]any{"until": "tomorrow"},
			map[string]any{},
		} {
			e.do("POST", path+"/snooze", body).wantError(t, http.StatusBadRequest, "invalid_field", "until")
		}

		// Before any certificate, the acknowledgement is of "no certificate".
		e.do("POST", path+"/acknowledge", map[string]any{}).decode(t, http.StatusOK, &got)
		if got["acknowledged"] != true || got["snoozed_until"] != until.Format(time.RFC3339) {
			t.Errorf("acknowledged: %v, snooze %v kept?", got["acknowledged"], got["snoozed_until"])
		}
		// A certificate arriving ends it; acknowledging again holds for it.
		root := certtest.NewRootCA("Silence Root")
		leaf := root.Leaf([]string{"a.example.com"})
		e.recordCheck(t, m.id(), t0, assess.OK, nil, leaf)
		e.do("GET", path, nil).decode(t, http.StatusOK, &got)
		if got["acknowledged"] != false {
			t.Errorf("acknowledgement survived a new certificate")
		}
		e.do("POST", path+"/acknowledge", nil).decode(t, http.StatusOK, &got)
		if got["acknowledged"] != true {
			t.Errorf("not acknowledged")
		}
		if mw, err := e.store.GetMonitor(context.Background(), store.DefaultTeamID, m.id()); err != nil || mw.AckedSHA256 != certInfoOf(leaf).SHA256 {
			t.Errorf("acked %q, want the leaf (%v)", mw.AckedSHA256, err)
		}
		// Snoozing keeps the acknowledgement.
		e.do("POST", path+"/snooze", map[string]any{"until": t0.Add(time.Hour).Format(time.RFC3339)}).decode(t, http.StatusOK, &got)
		if got["acknowledged"] != true || got["snoozed_until"] != t0.Add(time.Hour).Format(time.RFC3339) {
			t.Errorf("after snooze: %v %v", got["acknowledged"], got["snoozed_until"])
		}

		e.do("DELETE", path+"/silence", nil).decode(t, http.StatusOK, &got)
		if got["acknowledged"] != false || got["snoozed_until"] != nil {
			t.Errorf("after unsilence: %v %v", got["acknowledged"], got["snoozed_until"])
		}
		for _, p := range []string{"/snooze", "/acknowledge"} {
			var body any
			if p == "/snooze" {
				body = map[string]any{"until": until.Format(time.RFC3339)}
			}
			e.do("POST", "/api/v1/monitors/9999"+p, body).wantError(t, http.StatusNotFound, "not_found", "monitor 9999")
		}
		e.do("DELETE", "/api/v1/monitors/9999/silence", nil).wantError(t, http.StatusNotFound, "not_found", "monitor 9999")
	})
}

func TestMonitorReminderDays(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		m := e.create(t, map[string]any{"target": "example.com"})
		if fmt.Sprint(m["reminder_days"]) != "[]" {
			t.Errorf("default reminder_days %v, want []", m["reminder_days"])
		}
		m = e.create(t, map[string]any{"target": "example.com", "reminder_days": []int{7, 30, 7, 1}})
		if fmt.Sprint(m["reminder_days"]) != "[30 7 1]" {
			t.Errorf("reminder_days %v, want [30 7 1]", m["reminder_days"])
		}
		path := fmt.Sprintf("/api/v1/monitors/%d", m.id())
		var got monitorJSON
		e.do("GET", path, nil).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[30 7 1]" {
			t.Errorf("GET reminder_days %v", got["reminder_days"])
		}
		e.do("PATCH", path, map[string]any{"owner": "x"}).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[30 7 1]" {
			t.Errorf("PATCH without reminder_days changed them: %v", got["reminder_days"])
		}
		e.do("PATCH", path, map[string]any{"reminder_days": []int{14}}).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[14]" {
			t.Errorf("PATCH reminder_days %v", got["reminder_days"])
		}
		e.do("PATCH", path, map[string]any{"reminder_days": []int{}}).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[]" {
			t.Errorf("PATCH [] left %v", got["reminder_days"])
		}
		e.do("PUT", path, map[string]any{"target": "example.com", "reminder_days": []int{60}}).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[60]" {
			t.Errorf("PUT reminder_days %v", got["reminder_days"])
		}
		e.do("PUT", path, map[string]any{"target": "example.com"}).decode(t, http.StatusOK, &got)
		if fmt.Sprint(got["reminder_days"]) != "[]" {
			t.Errorf("PUT without reminder_days left %v", got["reminder_days"])
		}
		for _, days := range [][]int{{0}, {30, 3651}, {-1}} {
			e.do("POST", "/api/v1/monitors", map[string]any{"target": "example.com", "reminder_days": days}).
				wantError(t, http.StatusBadRequest, "invalid_field", "reminder_days")
			e.do("PATCH", path, map[string]any{"reminder_days": days}).wantError(t, http.StatusBadRequest, "invalid_field", "reminder_days")
		}
	})
}

func TestNotifyOpenAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		var doc struct {
			Paths map[string]map[string]struct {
				Responses map[string]any `json:"responses"`
			} `json:"paths"`
		}
		e.doAuth("GET", "/api/v1/openapi.json", nil, "").decode(t, http.StatusOK, &doc)
		for path, methods := range map[string][]string{
			"/api/v1/channels":                  {"get", "post"},
			"/api/v1/channels/{id}":             {"get", "put", "delete"},
			"/api/v1/channels/{id}/test":        {"post"},
			"/api/v1/rules":                     {"get", "post"},
			"/api/v1/rules/{id}":                {"get", "put", "delete"},
			"/api/v1/users":                     {"get", "post"},
			"/api/v1/users/{id}":                {"get", "put", "delete"},
			"/api/v1/deliveries":                {"get"},
			"/api/v1/deliveries/{id}/retry":     {"post"},
			"/api/v1/monitors/{id}/snooze":      {"post"},
			"/api/v1/monitors/{id}/acknowledge": {"post"},
			"/api/v1/monitors/{id}/silence":     {"delete"},
		} {
			for _, m := range methods {
				if _, ok := doc.Paths[path][m]; !ok {
					t.Errorf("openapi lacks %s %s", strings.ToUpper(m), path)
				}
			}
		}
		post := doc.Paths["/api/v1/channels"]["post"].Responses
		if post["409"] == nil || post["503"] == nil {
			t.Errorf("create-channel documents %v", post)
		}
	})
}
