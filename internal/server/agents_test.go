package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certmon/certmon/internal/agentlink"
	"github.com/certmon/certmon/internal/store"
)

func TestAgentsAPI(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		var created CreatedAgent
		r := e.do("POST", "/api/v1/agents", map[string]any{"name": "dc1-probe", "pool": "dc1"})
		r.decode(t, http.StatusCreated, &created)
		if !agentlink.ValidAgentID(created.ID) || !strings.HasPrefix(created.Key, agentlink.KeyPrefix) ||
			created.Name != "dc1-probe" || created.Pool != "dc1" || !created.KeyExpiresAt.Equal(t0.Add(agentlink.MaxKeyTTL)) ||
			created.Connected || created.RevokedAt != nil || created.PreviousKeyValidUntil != nil {
			t.Fatalf("created %+v", created)
		}
		// The key opens the agent; it is stored only as a hash.
		if _, err := e.store.AuthenticateAgent(ctx, created.ID, agentlink.HashKey(created.Key), t0); err != nil {
			t.Fatalf("key does not authenticate: %v", err)
		}

		var short CreatedAgent
		e.do("POST", "/api/v1/agents", map[string]any{"name": "short", "pool": "dc2", "key_ttl_days": 30}).decode(t, http.StatusCreated, &short)
		if !short.KeyExpiresAt.Equal(t0.Add(30 * 24 * time.Hour)) {
			t.Errorf("key_ttl_days 30: expires %s", short.KeyExpiresAt)
		}

		// Never the key or its hash after creation.
		r = e.do("GET", "/api/v1/agents/"+created.ID, nil)
		var got map[string]any
		r.decode(t, http.StatusOK, &got)
		for _, k := range []string{"key", "key_hash", "prev_key_hash"} {
			if _, ok := got[k]; ok {
				t.Errorf("GET shows %s", k)
			}
		}
		if strings.Contains(string(r.Body), created.Key) {
			t.Error("GET shows the key")
		}
		for _, k := range []string{"version", "address", "hostname", "last_seen", "connected", "jobs_done", "errors", "queue_depth", "key_expires_at"} {
			if _, ok := got[k]; !ok {
				t.Errorf("GET lacks %s", k)
			}
		}

		// Status written by a hub shows; a stale "connected" does not.
		st := store.AgentStatus{Version: "1.2", Hostname: "h", Address: "10.0.0.1:1", LastSeen: t0.Add(-time.Minute),
			JobsDone: 5, Errors: 1, QueueDepth: 2, Connected: true, Replica: "r"}
		if err := e.store.UpdateAgentStatus(ctx, created.ID, st); err != nil {
			t.Fatal(err)
		}
		var a Agent
		e.do("GET", "/api/v1/agents/"+created.ID, nil).decode(t, http.StatusOK, &a)
		if !a.Connected || a.Version != "1.2" || a.JobsDone != 5 || a.QueueDepth != 2 || a.LastSeen == nil {
			t.Errorf("status %+v", a)
		}
		st.LastSeen = t0.Add(-time.Hour)
		_ = e.store.UpdateAgentStatus(ctx, created.ID, st)
		e.do("GET", "/api/v1/agents/"+created.ID, nil).decode(t, http.StatusOK, &a)
		if a.Connected {
			t.Error("stale connection shown as connected")
		}

		var list AgentList
		e.do("GET", "/api/v1/agents", nil).decode(t, http.StatusOK, &list)
		if len(list.Agents) != 2 || list.Agents[0].Name != "dc1-probe" || list.Agents[1].Name != "short" {
			t.Errorf("list %+v", list)
		}

		// Rotation: a new key; the old one works for the overlap.
		var rot RotatedKey
		e.do("POST", "/api/v1/agents/"+created.ID+"/rotate", nil).decode(t, http.StatusOK, &rot)
		if rot.Key == created.Key || !strings.HasPrefix(rot.Key, agentlink.KeyPrefix) ||
			!rot.PreviousKeyValidUntil.Equal(t0.Add(agentlink.DefaultRotationOverlap)) || !rot.KeyExpiresAt.Equal(t0.Add(agentlink.MaxKeyTTL)) {
			t.Errorf("rotated %+v", rot)
		}
		for _, c := range []struct {
			key string
			at  time.Time
			ok  bool
		}{
			{created.Key, t0.Add(23 * time.Hour), true},
			{created.Key, t0.Add(25 * time.Hour), false},
			{rot.Key, t0.Add(25 * time.Hour), true},
		} {
			_, err := e.store.AuthenticateAgent(ctx, created.ID, agentlink.HashKey(c.key), c.at)
			if (err == nil) != c.ok {
				t.Errorf("key at %s: %v, want ok=%v", c.at, err, c.ok)
			}
		}
		e.do("GET", "/api/v1/agents/"+created.ID, nil).decode(t, http.StatusOK, &a)
		if a.PreviousKeyValidUntil == nil || !a.PreviousKeyValidUntil.Equal(rot.PreviousKeyValidUntil) {
			t.Errorf("previous key %v", a.PreviousKeyValidUntil)
		}
		var rot2 RotatedKey
		e.do("POST", "/api/v1/agents/"+short.ID+"/rotate?overlap_hours=0&key_ttl_days=10", nil).decode(t, http.StatusOK, &rot2)
		if !rot2.PreviousKeyValidUntil.Equal(t0) || !rot2.KeyExpiresAt.Equal(t0.Add(10*24*time.Hour)) {
			t.Errorf("rotated without overlap %+v", rot2)
		}

		// Revocation: immediate, shown, and final.
		e.do("POST", "/api/v1/agents/"+created.ID+"/revoke", nil).decode(t, http.StatusOK, &a)
		if a.RevokedAt == nil || a.Connected || a.PreviousKeyValidUntil != nil {
			t.Errorf("revoked %+v", a)
		}
		if _, err := e.store.AuthenticateAgent(ctx, created.ID, agentlink.HashKey(rot.Key), t0); !errors.Is(err, store.ErrAgentRevoked) {
			t.Errorf("revoked key: %v", err)
		}
		e.do("POST", "/api/v1/agents/"+created.ID+"/rotate", nil).wantError(t, http.StatusConflict, "conflict", "revoked")

		e.do("DELETE", "/api/v1/agents/"+created.ID, nil).decode(t, http.StatusNoContent, nil)
		e.do("GET", "/api/v1/agents/"+created.ID, nil).wantError(t, http.StatusNotFound, "not_found", "agent")
		e.do("DELETE", "/api/v1/agents/"+created.ID, nil).wantError(t, http.StatusNotFound, "not_found", "agent")
		e.do("POST", "/api/v1/agents/agt_0000000000000000/revoke", nil).wantError(t, http.StatusNotFound, "not_found", "agent")
		e.do("POST", "/api/v1/agents/agt_0000000000000000/rotate", nil).wantError(t, http.StatusNotFound, "not_found", "agent")
	})
}

func TestAgentsAPIValidation(t *testing.T) {
	e := newEnv(t, testDSN(t, store.SQLite))
	for _, c := range []struct {
		body        any
		status      int
		code, field string
	}{
		{map[string]any{"name": "a", "pool": "cloud"}, 400, "invalid_field", "pool"},
		{map[string]any{"name": "a", "pool": "Cloud"}, 400, "invalid_field", "pool"},
		{map[string]any{"name": "a", "pool": "  "}, 400, "invalid_field", "pool"},
		{map[string]any{"name": "a"}, 400, "invalid_field", "pool"},
		{map[string]any{"pool": "dc1"}, 400, "invalid_field", "name"},
		{map[string]any{"name": strings.Repeat("n", 101), "pool": "dc1"}, 400, "invalid_field", "name"},
		{map[string]any{"name": "a\x1b[31m", "pool": "dc1"}, 400, "invalid_field", "name"},
		{map[string]any{"name": "a", "pool": "dc1", "key_ttl_days": 181}, 400, "invalid_field", "key_ttl_days"},
		{map[string]any{"name": "a", "pool": "dc1", "key_ttl_days": -1}, 400, "invalid_field", "key_ttl_days"},
		{map[string]any{"name": "a", "pool": "dc1", "key": "chosen"}, 400, "invalid_field", "key"},
		{`{"name":`, 400, "malformed_json", "body"},
	} {
		e.do("POST", "/api/v1/agents", c.body).wantError(t, c.status, c.code, c.field)
	}
	e.do("POST", "/api/v1/agents", map[string]any{"name": "a", "pool": "dc1"}).decode(t, http.StatusCreated, nil)
	e.do("POST", "/api/v1/agents", map[string]any{"name": "a", "pool": "dc2"}).wantError(t, http.StatusConflict, "conflict", "exists")
	e.do("POST", "/api/v1/agents/x/rotate?overlap_hours=1000", nil).wantError(t, http.StatusBadRequest, "invalid_field", "overlap_hours")
	e.doAuth("GET", "/api/v1/agents", nil, "").wantError(t, http.StatusUnauthorized, "unauthorized", "token")

	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(e.do("GET", "/api/v1/openapi.json", nil).Body, &doc); err != nil {
		t.Fatal(err)
	}
	for path, method := range map[string]string{
		"/api/v1/agents": "post", "/api/v1/agents/{id}": "delete",
		"/api/v1/agents/{id}/rotate": "post", "/api/v1/agents/{id}/revoke": "post",
	} {
		if doc.Paths[path][method] == nil {
			t.Errorf("openapi lacks %s %s", method, path)
		}
	}
}
