package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/certmon/certmon/internal/auth"
)

// apiPrefix is where authentication is required.
const apiPrefix = "/api/v1/"

// requireAuth guards every /api/v1 route but the OpenAPI document (clients
// and code generators fetch it before they hold a token). It runs before
// routing, so an unknown /api/v1 path also answers 401 to strangers and
// reveals nothing.
func (s *Server) requireAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, apiPrefix) || r.URL.Path == openAPIPath {
			next.ServeHTTP(w, r)
			return
		}
		p, err := s.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if errors.Is(err, auth.ErrUnauthorized) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="certmon"`)
			writeError(w, r, newError(http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token"))
			return
		}
		if err != nil {
			writeError(w, r, internal(err))
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// team returns the team the request acts for. requireAuth has put a
// principal in every /api/v1 context; a missing one is a wiring bug and
// must not fall back to some team.
func team(ctx context.Context) (int64, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.TeamID == 0 {
		return 0, internal(errors.New("no principal in request context"))
	}
	return p.TeamID, nil
}
