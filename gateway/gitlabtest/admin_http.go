package gitlabtest

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// maxAdminRequest bounds a GraphQL request body.
const maxAdminRequest = 1 << 20

// Handler serves AdminPath (POST, GraphQL) and TokenSelfPath (GET).
func (a *Admin) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

func (a *Admin) serveHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	down := a.down
	a.mu.Unlock()
	if down {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "503 Service Unavailable"})
		return
	}
	u, ok := a.authenticate(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "401 Unauthorized"})
		return
	}
	switch {
	case r.URL.Path == TokenSelfPath && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"id": 1, "name": "duo-confidential", "revoked": false, "active": true,
			"scopes": u.scopes, "user_id": 1, "created_at": time.Now().UTC().Format(time.RFC3339), "expires_at": time.Now().AddDate(0, 3, 0).Format("2006-01-02")})
	case r.URL.Path == UserPath && r.Method == http.MethodGet:
		// GitLab adds is_admin only for administrators (API::Entities::UserWithAdmin).
		body := map[string]any{"id": 1, "username": u.username, "state": "active"}
		if u.admin {
			body["is_admin"] = true
		}
		writeJSON(w, http.StatusOK, body)
	case r.URL.Path == AdminPath && r.Method == http.MethodPost:
		a.serveGraphQL(w, r, u)
	case r.URL.Path == AdminPath:
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": "405 Method Not Allowed"})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"message": "404 Not Found"})
	}
}

// authenticate finds the token in Authorization: Bearer or PRIVATE-TOKEN.
func (a *Admin) authenticate(r *http.Request) (adminUser, bool) {
	tok := r.Header.Get("PRIVATE-TOKEN")
	if b, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		tok = b
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.tokens[tok]
	return u, ok && tok != ""
}

func (a *Admin) serveGraphQL(w http.ResponseWriter, r *http.Request, u adminUser) {
	var req struct {
		Query         string         `json:"query"`
		OperationName string         `json:"operationName"`
		Variables     map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAdminRequest)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []map[string]string{{"message": "Invalid JSON"}}})
		return
	}
	if !slices.Contains(u.scopes, "api") && !slices.Contains(u.scopes, "read_api") {
		writeJSON(w, http.StatusForbidden, map[string]any{"errors": []map[string]string{{"message": "Insufficient scope"}}})
		return
	}
	a.mu.Lock()
	if a.failAfter > 0 && strings.HasPrefix(strings.TrimSpace(req.Query), "mutation") {
		a.failAfter--
		if a.failAfter == 0 {
			a.down = true // this mutation still runs; the next request finds GitLab down
		}
	}
	schema := a.schema
	a.mu.Unlock()
	ctx := contextWithUser(r, u)
	resp := schema.Exec(ctx, req.Query, req.OperationName, req.Variables)
	writeJSON(w, http.StatusOK, resp)
}
