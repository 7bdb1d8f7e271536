package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/certtest"
)

func TestAuthRequired(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		for _, h := range []string{"", "Bearer", "Bearer cm_nope", "Basic " + e.token, e.token} {
			r := e.doAuth("GET", "/api/v1/monitors", nil, h)
			r.wantError(t, http.StatusUnauthorized, "unauthorized", "token")
			if r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%q: no WWW-Authenticate", h)
			}
		}
		// Unknown API paths do not reveal themselves to strangers.
		e.doAuth("GET", "/api/v1/nothing", nil, "").wantError(t, http.StatusUnauthorized, "unauthorized", "")
		// The document and the probes need no token.
		for _, p := range []string{"/api/v1/openapi.json", "/healthz", "/readyz", "/metrics"} {
			if r := e.doAuth("GET", p, nil, ""); r.Status != http.StatusOK {
				t.Errorf("%s without token: %d %s", p, r.Status, r.Body)
			}
		}
	})
}

// monitorJSON is a decoded monitor, loosely typed so null is visible.
type monitorJSON map[string]any

func (m monitorJSON) id() int64 { return int64(m["id"].(float64)) }

func (e *env) create(t testing.TB, body any) monitorJSON {
	t.Helper()
	var m monitorJSON
	e.do("POST", "/api/v1/monitors", body).decode(t, http.StatusCreated, &m)
	return m
}

func TestCreateAndGetMonitor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		root := certtest.NewRootCA("Private Root")
		in := map[string]any{
			"target":     "smtp://mx.example.com:587",
			"sni":        "mail.example.com",
			"schedule":   "0 6 * * 1-5",
			"warn_days":  20,
			"crit_days":  5,
			"tags":       []string{"prod", " mail ", "prod"},
			"owner":      "ops@example.com",
			"recipients": []string{"ops@example.com"},
			"agent_pool": "dc1",
			"ca_pem":     string(root.Cert.PEM()),
		}
		m := e.create(t, in)
		if e.waker.n.Load() != 1 {
			t.Errorf("Wake called %d times, want 1", e.waker.n.Load())
		}
		want := map[string]any{
			"target": "smtp://mx.example.com:587", "protocol": "", "sni": "mail.example.com",
			"schedule": "0 6 * * 1-5", "warn_days": 20.0, "crit_days": 5.0, "owner": "ops@example.com",
			"agent_pool": "dc1", "ca_pem": string(root.Cert.PEM()), "paused": false,
			"status": nil, "tls": nil, "verification": nil, "error": nil, "last_check_at": nil,
			"next_check_at": t0.Format(time.RFC3339),
		}
		for k, v := range want {
			if fmt.Sprint(m[k]) != fmt.Sprint(v) {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
		if fmt.Sprint(m["tags"]) != "[prod mail]" || fmt.Sprint(m["recipients"]) != "[ops@example.com]" {
			t.Errorf("tags %v recipients %v", m["tags"], m["recipients"])
		}
		if fmt.Sprint(m["problems"]) != "[]" || fmt.Sprint(m["chain"]) != "[]" {
			t.Errorf("problems %v chain %v, want [] before the first check", m["problems"], m["chain"])
		}
		if m["created_at"] == nil || m["updated_at"] == nil || m.id() <= 0 {
			t.Errorf("id/created_at/updated_at missing: %v", m)
		}

		var got monitorJSON
		e.do("GET", fmt.Sprintf("/api/v1/monitors/%d", m.id()), nil).decode(t, http.StatusOK, &got)
		for k := range m {
			if fmt.Sprint(got[k]) != fmt.Sprint(m[k]) {
				t.Errorf("GET %s = %v, POST said %v", k, got[k], m[k])
			}
		}

		// Defaults from the server config.
		d := e.create(t, map[string]any{"target": "example.com"})
		for k, v := range map[string]any{"schedule": "4h", "warn_days": 30.0, "crit_days": 7.0, "agent_pool": "cloud"} {
			if d[k] != v {
				t.Errorf("default %s = %v, want %v", k, d[k], v)
			}
		}
		// Only warn_days below the default crit_days: crit follows it.
		d = e.create(t, map[string]any{"target": "example.com", "warn_days": 3})
		if d["crit_days"] != 3.0 {
			t.Errorf("crit_days = %v, want 3", d["crit_days"])
		}
		// A protocol for a bare host.
		d = e.create(t, map[string]any{"target": "mx.example.com", "protocol": "SMTP"})
		if d["protocol"] != "smtp" {
			t.Errorf("protocol = %v", d["protocol"])
		}
	})
}

func TestMonitorValidation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		big := `{"target":"example.com","owner":"` + strings.Repeat("x", 5000) + `"}`
		cases := []struct {
			name   string
			body   any
			status int
			code   string
			msg    string
		}{
			{"space in host", `{"target":"https://exa mple.com"}`, 400, "invalid_field", "target: "},
			{"unknown scheme", `{"target":"gopher://example.com"}`, 400, "invalid_field", `target: invalid target "gopher://example.com": unknown scheme "gopher"`},
			{"empty target", `{"target":""}`, 400, "invalid_field", "target"},
			{"missing target", `{"owner":"me"}`, 400, "invalid_field", "target: required"},
			{"bad cron", `{"target":"example.com","schedule":"61 * * * *"}`, 400, "invalid_field", "schedule: "},
			{"short interval", `{"target":"example.com","schedule":"1s"}`, 400, "invalid_field", "schedule: "},
			{"crit above warn", `{"target":"example.com","warn_days":5,"crit_days":10}`, 400, "invalid_field", "crit_days: must be <= warn_days (5)"},
			{"negative warn", `{"target":"example.com","warn_days":-1}`, 400, "invalid_field", "warn_days: must be >= 0"},
			{"unknown field", `{"targett":"example.com"}`, 400, "invalid_field", "targett: unknown field"},
			{"unknown protocol", `{"target":"example.com","protocol":"gopher"}`, 400, "invalid_field", `protocol: unknown protocol "gopher"`},
			{"conflicting protocol", `{"target":"smtp://example.com","protocol":"imap"}`, 400, "invalid_field", "protocol: "},
			{"bad sni", `{"target":"example.com","sni":"a b"}`, 400, "invalid_field", "sni: "},
			{"empty tag", `{"target":"example.com","tags":["a",""]}`, 400, "invalid_field", "tags[1]: must not be empty"},
			{"bad ca_pem", `{"target":"example.com","ca_pem":"hello"}`, 400, "invalid_field", "ca_pem: no PEM certificate"},
			{"key in ca_pem", `{"target":"example.com","ca_pem":` + fmt.Sprintf("%q", certtest.NewRootCA("r").Cert.KeyPEM()) + `}`, 400, "invalid_field", "ca_pem: "},
			{"wrong type", `{"target":"example.com","warn_days":"thirty"}`, 400, "invalid_field", "warn_days: expected integer"},
			{"revocation from agent on cloud", `{"target":"example.com","revocation_from":"agent"}`, 400, "invalid_field", "revocation_from: agent needs a self-hosted agent_pool"},
			{"revocation from elsewhere", `{"target":"example.com","agent_pool":"dc1","revocation_from":"moon"}`, 400, "invalid_field", "revocation_from: "},
			{"wrong type list", `{"target":"example.com","tags":"prod"}`, 400, "invalid_field", "tags: "},
			{"malformed", `{"target":`, 400, "malformed_json", "body: invalid JSON"},
			{"not an object", `[]`, 400, "", ""},
			{"too large", big, 413, "body_too_large", "too large"},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := e.do("POST", "/api/v1/monitors", c.body)
				if c.code == "" {
					if r.Status != c.status {
						t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
					}
					return
				}
				r.wantError(t, c.status, c.code, c.msg)
			})
		}
		// No body at all.
		e.do("POST", "/api/v1/monitors", nil).wantError(t, http.StatusBadRequest, "bad_request", "body")
		if e.waker.n.Load() != 0 {
			t.Errorf("Wake called %d times for rejected requests", e.waker.n.Load())
		}
		var list struct{ Monitors []monitorJSON }
		e.do("GET", "/api/v1/monitors", nil).decode(t, http.StatusOK, &list)
		if len(list.Monitors) != 0 {
			t.Errorf("rejected requests created %d monitors", len(list.Monitors))
		}
	})
}

func TestUnsupportedMediaType(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		r := e.doRaw("POST", "/api/v1/monitors", "target=example.com", "text/plain")
		r.wantError(t, http.StatusUnsupportedMediaType, "unsupported_media_type", "")
	})
}

func TestMonitorLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		m := e.create(t, map[string]any{"target": "example.com", "tags": []string{"a"}})
		path := fmt.Sprintf("/api/v1/monitors/%d", m.id())

		// PATCH changes only what it names.
		var p monitorJSON
		e.do("PATCH", path, map[string]any{"owner": "me", "tags": []string{"b", "c"}}).decode(t, http.StatusOK, &p)
		if p["owner"] != "me" || fmt.Sprint(p["tags"]) != "[b c]" || p["target"] != "example.com" || p["schedule"] != "4h" {
			t.Errorf("after PATCH: %v", p)
		}
		e.do("PATCH", path, map[string]any{"crit_days": 40}).wantError(t, 400, "invalid_field", "crit_days: must be <= warn_days (30)")
		e.do("PATCH", path, map[string]any{"target": "https://exa mple.com"}).wantError(t, 400, "invalid_field", "target: ")
		e.do("PATCH", path, map[string]any{"nope": 1}).wantError(t, 400, "invalid_field", "nope")

		// A new schedule alone moves the next check to its first slot.
		wakes := e.waker.n.Load()
		e.do("PATCH", path, map[string]any{"schedule": "30m"}).decode(t, http.StatusOK, &p)
		next, _ := time.Parse(time.RFC3339, p["next_check_at"].(string))
		if p["schedule"] != "30m" || !next.After(t0) || next.After(t0.Add(30*time.Minute)) || e.waker.n.Load() != wakes {
			t.Errorf("after schedule PATCH: schedule %v next_check_at %v, wakes %d", p["schedule"], p["next_check_at"], e.waker.n.Load()-wakes)
		}

		// PUT replaces: omitted fields return to the defaults; a new target
		// is checked at once.
		var put monitorJSON
		e.do("PUT", path, map[string]any{"target": "imaps://imap.example.com", "schedule": "1h"}).decode(t, http.StatusOK, &put)
		if put["target"] != "imaps://imap.example.com" || put["owner"] != "" || fmt.Sprint(put["tags"]) != "[]" || put["schedule"] != "1h" {
			t.Errorf("after PUT: %v", put)
		}
		if put["next_check_at"] != t0.Format(time.RFC3339) || e.waker.n.Load() != wakes+1 {
			t.Errorf("after PUT: next_check_at %v, wakes %d; want due now and one wake", put["next_check_at"], e.waker.n.Load()-wakes)
		}

		// Pause, resume (due at once), check now.
		before := e.waker.n.Load()
		var st monitorJSON
		e.do("POST", path+"/pause", nil).decode(t, http.StatusOK, &st)
		if st["paused"] != true {
			t.Errorf("after pause: paused = %v", st["paused"])
		}
		e.do("POST", path+"/resume", nil).decode(t, http.StatusOK, &st)
		if st["paused"] != false || st["next_check_at"] != t0.Format(time.RFC3339) {
			t.Errorf("after resume: paused = %v next_check_at = %v", st["paused"], st["next_check_at"])
		}
		e.do("POST", path+"/check", nil).decode(t, http.StatusAccepted, &st)
		if st["next_check_at"] != t0.Format(time.RFC3339) {
			t.Errorf("after check: next_check_at = %v", st["next_check_at"])
		}
		if got := e.waker.n.Load() - before; got != 2 {
			t.Errorf("Wake called %d times by pause/resume/check, want 2", got)
		}

		var h struct{ History []any }
		e.do("GET", path+"/history", nil).decode(t, http.StatusOK, &h)
		if h.History == nil || len(h.History) != 0 {
			t.Errorf("history before any check: %v", h.History)
		}

		e.do("DELETE", path, nil).decode(t, http.StatusNoContent, nil)
		for _, r := range []response{
			e.do("GET", path, nil),
			e.do("DELETE", path, nil),
			e.do("PATCH", path, map[string]any{"owner": "x"}),
			e.do("PUT", path, map[string]any{"target": "example.com"}),
			e.do("POST", path+"/pause", nil),
			e.do("POST", path+"/resume", nil),
			e.do("POST", path+"/check", nil),
			e.do("GET", path+"/history", nil),
		} {
			r.wantError(t, http.StatusNotFound, "not_found", fmt.Sprintf("monitor %d not found", m.id()))
		}
		e.do("GET", "/api/v1/monitors/abc", nil).wantError(t, 400, "invalid_field", "id: ")
		e.do("GET", "/api/v1/monitors/0", nil).wantError(t, 400, "invalid_field", "id: ")
		e.do("GET", "/api/v1/nothing", nil).wantError(t, 404, "not_found", "/api/v1/nothing")
		r := e.do("POST", "/healthz", nil)
		r.wantError(t, 405, "method_not_allowed", "POST")
		r = e.do("PATCH", "/api/v1/monitors", nil)
		r.wantError(t, 405, "method_not_allowed", "")
		if allow := r.Header.Values("Allow"); fmt.Sprint(allow) != "[GET POST]" {
			t.Errorf("Allow = %v", allow)
		}
	})
}

func TestListMonitorsFiltersAndPages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		for i := range 250 {
			body := map[string]any{"target": fmt.Sprintf("host%03d.example.com", i)}
			if i%10 == 0 {
				body["tags"] = []string{"tenth"}
				body["agent_pool"] = "dc1"
			}
			if i%50 == 0 {
				body["owner"] = "alice@example.com"
			}
			e.create(t, body)
		}
		type page struct {
			Monitors   []monitorJSON
			NextCursor *string `json:"next_cursor"`
		}
		// Walk every page of 100 and see each monitor once, in ID order.
		seen := map[int64]bool{}
		var last int64
		pages := 0
		cursor := ""
		for {
			var p page
			e.do("GET", "/api/v1/monitors?limit=100&cursor="+cursor, nil).decode(t, http.StatusOK, &p)
			pages++
			for _, m := range p.Monitors {
				if m.id() <= last || seen[m.id()] {
					t.Fatalf("monitor %d out of order or repeated", m.id())
				}
				seen[m.id()], last = true, m.id()
			}
			if p.NextCursor == nil {
				break
			}
			cursor = *p.NextCursor
		}
		if len(seen) != 250 || pages != 3 {
			t.Fatalf("saw %d monitors in %d pages, want 250 in 3", len(seen), pages)
		}
		var p page
		e.do("GET", "/api/v1/monitors", nil).decode(t, http.StatusOK, &p)
		if len(p.Monitors) != 100 || p.NextCursor == nil {
			t.Errorf("default page: %d monitors, next %v", len(p.Monitors), p.NextCursor)
		}

		for q, want := range map[string]int{
			"tag=tenth":                   25,
			"agent_pool=dc1":              25,
			"agent_pool=cloud&limit=1000": 225,
			"q=ALICE":                     5,
			"q=host01":                    10,
			"q=host01&tag=tenth":          1,
			"status=OK":                   0,
			"expiring_within=30":          0,
			"expiring_within=72h":         0,
			"limit=1000":                  250,
			"tag=none":                    0,
			"q=" + "%25":                  0, // a literal %, not a wildcard
		} {
			var p page
			e.do("GET", "/api/v1/monitors?"+q, nil).decode(t, http.StatusOK, &p)
			if len(p.Monitors) != want {
				t.Errorf("%s: %d monitors, want %d", q, len(p.Monitors), want)
			}
		}
		for q, msg := range map[string]string{
			"limit=0":              "limit: ",
			"limit=1001":           "limit: ",
			"limit=x":              "limit: ",
			"status=FINE":          "status: ",
			"cursor=abc":           "cursor: ",
			"expiring_within=soon": "expiring_within: ",
			"expiring_within=-1":   "expiring_within: ",
			"statsu=OK":            "statsu",
		} {
			e.do("GET", "/api/v1/monitors?"+q, nil).wantError(t, 400, "invalid_field", msg)
		}
	})
}

func TestMonitorRevocationFrom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		r := e.do("POST", "/api/v1/monitors", `{"target":"ldap://dc1.corp.test","agent_pool":"dc1","revocation_from":"agent"}`)
		if r.Status != 201 || !strings.Contains(string(r.Body), `"revocation_from":"agent"`) {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		r = e.do("POST", "/api/v1/monitors", `{"target":"example.com"}`)
		if r.Status != 201 || !strings.Contains(string(r.Body), `"revocation_from":"server"`) {
			t.Fatalf("default: %d %s", r.Status, r.Body)
		}
	})
}
