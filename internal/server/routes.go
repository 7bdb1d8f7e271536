package server

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"

	"github.com/danielgtaylor/huma/v2"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// openAPIPath serves the API description; it needs no token.
const openAPIPath = "/api/v1/openapi.json"

// routes is every route of the server.
func (s *Server) routes(mux *http.ServeMux, api huma.API) {
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+openAPIPath, s.serveOpenAPI)

	register(s, api, http.MethodPost, "/api/v1/monitors", "create-monitor", "Create a monitor", http.StatusCreated, s.createMonitor)
	register(s, api, http.MethodGet, "/api/v1/monitors", "list-monitors", "List monitors", 0, s.listMonitors)
	register(s, api, http.MethodGet, "/api/v1/monitors/{id}", "get-monitor", "Get a monitor and its latest check", 0, s.getMonitor)
	register(s, api, http.MethodPut, "/api/v1/monitors/{id}", "replace-monitor", "Replace a monitor's settings", 0, s.replaceMonitor)
	register(s, api, http.MethodPatch, "/api/v1/monitors/{id}", "update-monitor", "Change some of a monitor's settings", 0, s.patchMonitor)
	register(s, api, http.MethodDelete, "/api/v1/monitors/{id}", "delete-monitor", "Delete a monitor", http.StatusNoContent, s.deleteMonitor)
	register(s, api, http.MethodPost, "/api/v1/monitors/{id}/pause", "pause-monitor", "Pause a monitor", 0, s.pauseMonitor)
	register(s, api, http.MethodPost, "/api/v1/monitors/{id}/resume", "resume-monitor", "Resume a monitor (checked at once)", 0, s.resumeMonitor)
	register(s, api, http.MethodPost, "/api/v1/monitors/{id}/check", "check-monitor", "Check a monitor now", http.StatusAccepted, s.checkMonitor)
	register(s, api, http.MethodGet, "/api/v1/monitors/{id}/history", "monitor-history", "A monitor's changes, newest first", 0, s.monitorHistory)
	register(s, api, http.MethodGet, "/api/v1/certificates", "list-certificates", "List certificates seen", 0, s.listCertificates)
	register(s, api, http.MethodGet, "/api/v1/certificates/{sha256}", "get-certificate", "Get a certificate and where it is served", 0, s.getCertificate)
	register(s, api, http.MethodGet, "/api/v1/events", "list-events", "List events, newest first", 0, s.listEvents)
	register(s, api, http.MethodPost, "/api/v1/agents", "create-agent", "Create a self-hosted agent (its key is shown once)", http.StatusCreated, s.createAgent)
	register(s, api, http.MethodGet, "/api/v1/agents", "list-agents", "List agents", 0, s.listAgents)
	register(s, api, http.MethodGet, "/api/v1/agents/{id}", "get-agent", "Get an agent and its status", 0, s.getAgent)
	register(s, api, http.MethodDelete, "/api/v1/agents/{id}", "delete-agent", "Delete an agent", http.StatusNoContent, s.deleteAgent)
	register(s, api, http.MethodPost, "/api/v1/agents/{id}/rotate", "rotate-agent-key", "Give an agent a new key; the old one works for an overlap", 0, s.rotateAgentKey)
	register(s, api, http.MethodPost, "/api/v1/agents/{id}/revoke", "revoke-agent", "Revoke an agent's keys at once", 0, s.revokeAgent)
	register(s, api, http.MethodPost, "/api/v1/monitors/{id}/snooze", "snooze-monitor", "Silence a monitor's alerts until a time", 0, s.snoozeMonitor)
	register(s, api, http.MethodPost, "/api/v1/monitors/{id}/acknowledge", "acknowledge-monitor", "Silence a monitor's alerts until its certificate changes", 0, s.acknowledgeMonitor)
	register(s, api, http.MethodDelete, "/api/v1/monitors/{id}/silence", "unsilence-monitor", "End a monitor's snooze and acknowledgement", 0, s.unsilenceMonitor)
	register(s, api, http.MethodPost, "/api/v1/channels", "create-channel", "Create a notification channel (email, Teams, Slack or webhook)", http.StatusCreated, s.createChannel)
	register(s, api, http.MethodGet, "/api/v1/channels", "list-channels", "List notification channels (secrets masked)", 0, s.listChannels)
	register(s, api, http.MethodGet, "/api/v1/channels/{id}", "get-channel", "Get a notification channel (secrets masked)", 0, s.getChannel)
	register(s, api, http.MethodPut, "/api/v1/channels/{id}", "replace-channel", "Replace a channel; masked or omitted secrets keep their stored values", 0, s.replaceChannel)
	register(s, api, http.MethodDelete, "/api/v1/channels/{id}", "delete-channel", "Delete a channel; its pending deliveries are skipped", http.StatusNoContent, s.deleteChannel)
	register(s, api, http.MethodPost, "/api/v1/channels/{id}/test", "test-channel", "Send a test message and report the receiver's answer", 0, s.testChannel)
	register(s, api, http.MethodPost, "/api/v1/rules", "create-rule", "Create a routing rule (empty selectors match everything)", http.StatusCreated, s.createRule)
	register(s, api, http.MethodGet, "/api/v1/rules", "list-rules", "List routing rules", 0, s.listRules)
	register(s, api, http.MethodGet, "/api/v1/rules/{id}", "get-rule", "Get a routing rule", 0, s.getRule)
	register(s, api, http.MethodPut, "/api/v1/rules/{id}", "replace-rule", "Replace a routing rule (empty selectors match everything)", 0, s.replaceRule)
	register(s, api, http.MethodDelete, "/api/v1/rules/{id}", "delete-rule", "Delete a routing rule", http.StatusNoContent, s.deleteRule)
	register(s, api, http.MethodPost, "/api/v1/users", "create-user", "Create a user who receives email", http.StatusCreated, s.createUser)
	register(s, api, http.MethodGet, "/api/v1/users", "list-users", "List users", 0, s.listUsers)
	register(s, api, http.MethodGet, "/api/v1/users/{id}", "get-user", "Get a user and their notification settings", 0, s.getUser)
	register(s, api, http.MethodPut, "/api/v1/users/{id}", "replace-user", "Replace a user and their notification settings", 0, s.replaceUser)
	register(s, api, http.MethodDelete, "/api/v1/users/{id}", "delete-user", "Delete a user", http.StatusNoContent, s.deleteUser)
	register(s, api, http.MethodGet, "/api/v1/deliveries", "list-deliveries", "List notification deliveries, newest first", 0, s.listDeliveries)
	register(s, api, http.MethodPost, "/api/v1/deliveries/{id}/retry", "retry-delivery", "Send a dead or skipped delivery again", 0, s.retryDelivery)

	// Answers beyond errorStatuses' defaults, so clients know to expect them.
	documentErrors(api, map[int][]string{
		http.StatusConflict: {"create-channel", "replace-channel", "test-channel", "create-rule", "replace-rule",
			"create-user", "replace-user", "retry-delivery"},
		http.StatusServiceUnavailable: {"create-channel", "replace-channel", "test-channel"},
	})

	mux.HandleFunc("/", s.unrouted(mux))

	// huma documents 422 for validation; this API answers 400 instead.
	for _, item := range api.OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op != nil {
				delete(op.Responses, "422")
			}
		}
	}
}

// register adds one API operation. Errors a handler returns are logged
// with the request: an *Error keeps its status, anything else is a 500.
func register[I, O any](s *Server, api huma.API, method, path, id, summary string, status int, h func(context.Context, *I) (*O, error)) {
	huma.Register(api, huma.Operation{
		OperationID:   id,
		Method:        method,
		Path:          path,
		Summary:       summary,
		DefaultStatus: status,
		// huma answers 413 when the body reaches the limit, so allow one
		// byte more: a body of exactly MaxBodyBytes is accepted.
		MaxBodyBytes: s.cfg.MaxBodyBytes + 1,
		Errors:       errorStatuses[I](),
	}, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err == nil {
			return out, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			e = internal(err)
		}
		if e.cause != nil {
			noteCause(ctx, e.cause)
		}
		return nil, e
	})
}

// unrouted answers paths no route matches in the error shape: 405 when
// the path exists for another method, else 404. (ServeMux's own answers
// are plain text.)
func (s *Server) unrouted(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			for _, m := range allow {
				w.Header().Add("Allow", m)
			}
			writeError(w, r, newError(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		writeError(w, r, newError(http.StatusNotFound, "not_found", "no route for %s", r.URL.Path))
	}
}

// errorStatuses are the error answers documented for an operation with
// input I; only operations that take a body can get 413 and 415.
func errorStatuses[I any]() []int {
	statuses := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound}
	if _, ok := reflect.TypeFor[I]().FieldByName("Body"); ok {
		statuses = append(statuses, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType)
	}
	return statuses
}

// documentErrors adds error answers to the operations named, described
// like their 400 (the same Error schema).
func documentErrors(api huma.API, byStatus map[int][]string) {
	for _, item := range api.OpenAPI().Paths {
		for _, op := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if op == nil || op.Responses["400"] == nil {
				continue
			}
			for status, ids := range byStatus {
				if slices.Contains(ids, op.OperationID) {
					r := *op.Responses["400"]
					r.Description = http.StatusText(status)
					op.Responses[strconv.Itoa(status)] = &r
				}
			}
		}
	}
}
