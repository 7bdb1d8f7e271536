package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthAndReadiness(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		var body map[string]string
		e.doAuth("GET", "/healthz", nil, "").decode(t, http.StatusOK, &body)
		if body["status"] != "ok" {
			t.Errorf("/healthz: %v", body)
		}
		e.doAuth("GET", "/readyz", nil, "").decode(t, http.StatusOK, nil)

		e.store.Close()
		e.doAuth("GET", "/readyz", nil, "").wantError(t, http.StatusServiceUnavailable, "store_unreachable", "store")
		e.doAuth("GET", "/healthz", nil, "").decode(t, http.StatusOK, nil)
		// The store outage is a 500 with a safe message, not a 401, and
		// the cause is in the log only.
		r := e.do("GET", "/api/v1/monitors", nil)
		r.wantError(t, http.StatusInternalServerError, "internal", "internal error")
		if strings.Contains(string(r.Body), "closed") {
			t.Errorf("500 body leaks the cause: %s", r.Body)
		}
		if logs := e.logs.String(); !strings.Contains(logs, "status=500") || !strings.Contains(logs, "error=") {
			t.Errorf("the 500's cause was not logged:\n%s", logs)
		}
	})
}

func TestOpenAPIDocument(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		r := e.doAuth("GET", "/api/v1/openapi.json", nil, "")
		var doc struct {
			OpenAPI    string                    `json:"openapi"`
			Paths      map[string]map[string]any `json:"paths"`
			Components struct {
				Schemas         map[string]map[string]any `json:"schemas"`
				SecuritySchemes map[string]any            `json:"securitySchemes"`
			} `json:"components"`
		}
		r.decode(t, http.StatusOK, &doc)
		if !strings.HasPrefix(doc.OpenAPI, "3.") {
			t.Errorf("openapi version %q", doc.OpenAPI)
		}
		for path, methods := range map[string][]string{
			"/api/v1/monitors":              {"get", "post"},
			"/api/v1/monitors/{id}":         {"get", "put", "patch", "delete"},
			"/api/v1/monitors/{id}/pause":   {"post"},
			"/api/v1/monitors/{id}/resume":  {"post"},
			"/api/v1/monitors/{id}/check":   {"post"},
			"/api/v1/monitors/{id}/history": {"get"},
			"/api/v1/certificates":          {"get"},
			"/api/v1/certificates/{sha256}": {"get"},
			"/api/v1/events":                {"get"},
		} {
			for _, m := range methods {
				if doc.Paths[path][m] == nil {
					t.Errorf("openapi lacks %s %s", strings.ToUpper(m), path)
				}
			}
		}
		mon := doc.Components.Schemas["Monitor"]
		props, _ := mon["properties"].(map[string]any)
		for _, f := range []string{"id", "target", "protocol", "sni", "schedule", "warn_days", "crit_days", "tags", "owner",
			"recipients", "agent_pool", "status", "problems", "tls", "chain", "verification", "error",
			"last_check_at", "next_check_at"} {
			if props[f] == nil {
				t.Errorf("Monitor schema lacks %q", f)
			}
		}
		in := doc.Components.Schemas["MonitorFields"]
		if in["additionalProperties"] != false || !strings.Contains(mustJSON(in["required"]), `"target"`) {
			t.Errorf("MonitorFields schema: additionalProperties %v required %v", in["additionalProperties"], in["required"])
		}
		errProps, _ := doc.Components.Schemas["Error"]["properties"].(map[string]any)
		if errProps["error"] == nil || len(errProps) != 1 {
			t.Errorf("Error schema: %v", doc.Components.Schemas["Error"])
		}
		if doc.Components.SecuritySchemes["bearer"] == nil {
			t.Error("no bearer security scheme")
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRecoverPanics(t *testing.T) {
	e := newEnv(t, testDSN(t, "sqlite"))
	h := e.srv.logRequests(e.srv.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	})))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/x", nil))
	response{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}.wantError(t, 500, "internal", "internal error")
	if logs := e.logs.String(); !strings.Contains(logs, "panic") || !strings.Contains(logs, "boom") {
		t.Errorf("panic not logged:\n%s", logs)
	}
}

func TestFromHumaShapes(t *testing.T) {
	// huma's own errors that the HTTP tests cannot easily provoke.
	for _, c := range []struct {
		status int
		msg    string
		errs   []error
		want   int
		code   string
	}{
		{406, "unable to marshal response", nil, 406, "not_acceptable"},
		{408, "request body read timeout", nil, 408, "request_timeout"},
		{500, "cannot read request body", []error{errors.New("reset by peer")}, 500, "internal"},
		{422, "validation failed", nil, 400, "invalid_request"},
		{418, "teapot", nil, 418, "i'm_a_teapot"},
	} {
		e := fromHuma(c.status, c.msg, c.errs...)
		if e.GetStatus() != c.want || e.Body.Code != c.code {
			t.Errorf("%d %q: got %d %q", c.status, c.msg, e.GetStatus(), e.Body.Code)
		}
		if c.status >= 500 && (strings.Contains(e.Body.Message, "reset") || e.cause == nil) {
			t.Errorf("500 leaks or loses its cause: %+v", e)
		}
	}
}
