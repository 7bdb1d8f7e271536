package server

import (
	"path/filepath"
	"testing"
)

func TestZZDebug(t *testing.T) {
	e := newEnv(t, filepath.Join(t.TempDir(), "t.db"))
	for _, b := range []string{`{"target":"https://exa mple.com"}`, `{"targett":"x"}`, `{"owner":"me"}`, `{"target":"example.com","warn_days":"thirty","tags":"x"}`, `{"target":`, `[]`, `{"target":"example.com","warn_days":-1}`, `{"target":"example.com","schedule":"61 * * * *"}`} {
		r := e.do("POST", "/api/v1/monitors", b)
		t.Logf("%s -> %d %s", b, r.Status, r.Body)
	}
	for _, q := range []string{"limit=0", "statsu=OK", "status=FINE", "limit=x"} {
		r := e.do("GET", "/api/v1/monitors?"+q, nil)
		t.Logf("%s -> %d %s", q, r.Status, r.Body)
	}
	r := e.do("GET", "/api/v1/monitors/abc", nil)
	t.Logf("%d %s", r.Status, r.Body)
	r = e.doRaw("POST", "/api/v1/monitors", "x", "text/plain")
	t.Logf("%d %s", r.Status, r.Body)
	r = e.do("POST", "/api/v1/monitors", `{"target":"example.com"}`)
	t.Logf("%d %s", r.Status, r.Body)
	t.Log(e.logs.String())
}
