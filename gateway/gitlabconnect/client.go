package gitlabconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/Khan/genqlient/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Default time limits of GitLab calls.
const (
	// DefaultCallTimeout bounds an ordinary GraphQL or REST call.
	DefaultCallTimeout = 30 * time.Second
	// DefaultSlowCallTimeout bounds the calls GitLab makes slow on purpose:
	// every aiFeatureSettings query and aiFeatureSettingUpdate first fetches
	// model definitions from GitLab's cloud gateway (5 s timeout, on
	// air-gapped instances with an online licence it always times out), and
	// the connection check and cloudConnectorStatus run synchronous probes
	// (3 s model round trip, 5 s HEAD, gRPC ListTools).
	DefaultSlowCallTimeout = 90 * time.Second
	// maxResponseBytes bounds what one GitLab answer may make us read.
	maxResponseBytes = 8 << 20
)

// ClientOptions configures a Client.
type ClientOptions struct {
	// GitLabURL is the instance's external URL, e.g. https://gitlab.example.com.
	GitLabURL string
	// Token is an instance administrator's personal access token (scope
	// api). It goes only into the Authorization header of calls to
	// GitLabURL and is never logged or put into an error.
	Token string
	// HTTPClient carries the calls; the appliance passes its outbound
	// client (trust store, HTTPS_PROXY). Its own Timeout should be zero or
	// at least SlowCallTimeout. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// CallTimeout and SlowCallTimeout default to DefaultCallTimeout and
	// DefaultSlowCallTimeout.
	CallTimeout, SlowCallTimeout time.Duration
}

// Client talks to one GitLab instance's admin API (GraphQL, plus the one
// REST call that tells a token's scopes).
type Client struct {
	o   ClientOptions
	gql graphql.Client
	api *url.URL
}

// NewClient checks o and returns a Client. It makes no call.
func NewClient(o ClientOptions) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.GitLabURL, "/"))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("GitLab URL %q is not an http(s) URL", o.GitLabURL)
	}
	if strings.TrimSpace(o.Token) == "" {
		return nil, errors.New("no GitLab access token given")
	}
	if strings.ContainsAny(o.Token, "\r\n \t") {
		return nil, errors.New("the GitLab access token contains white space or a line break (one token, nothing else)")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.SlowCallTimeout <= 0 {
		o.SlowCallTimeout = DefaultSlowCallTimeout
	}
	c := &Client{o: o, api: u}
	c.gql = graphql.NewClient(u.String()+"/api/graphql", doerFunc(c.do))
	return c, nil
}

// GitLabURL is the instance URL the client calls.
func (c *Client) GitLabURL() string { return c.api.String() }

// doerFunc adapts a function to genqlient's Doer.
type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// do sends r with the token and bounds the answer's size.
func (c *Client) do(r *http.Request) (*http.Response, error) {
	r.Header.Set("Authorization", "Bearer "+c.o.Token)
	r.Header.Set("User-Agent", "duo-confidential gitlab-connect")
	resp, err := c.o.HTTPClient.Do(r)
	if err != nil {
		return nil, unreachable(c.api.Host, err)
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, maxResponseBytes), resp.Body}
	return resp, nil
}

// ErrUnreachable marks errors where GitLab did not answer at all (network,
// TLS, timeout): nothing can be concluded about what it did.
var ErrUnreachable = errors.New("GitLab did not answer")

func unreachable(host string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL carries no secret, but the host is enough
	}
	return fmt.Errorf("%w (%s): %w", ErrUnreachable, host, err)
}

// call runs one GraphQL operation with a time limit.
func (c *Client) call(ctx context.Context, slow bool, f func(context.Context, graphql.Client) error) error {
	d := c.o.CallTimeout
	if slow {
		d = c.o.SlowCallTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := f(ctx, c.gql)
	if err == nil {
		return nil
	}
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%w (%s): no answer within %s", ErrUnreachable, c.api.Host, d)
	}
	if errors.Is(err, ErrUnreachable) {
		return err
	}
	var list gqlerror.List
	if errors.As(err, &list) {
		msgs := make([]string, 0, len(list))
		for _, e := range list {
			msgs = append(msgs, e.Message)
		}
		return &GraphQLError{Messages: msgs}
	}
	var he *graphql.HTTPError
	if errors.As(err, &he) {
		msgs := make([]string, 0, len(he.Response.Errors))
		for _, e := range he.Response.Errors {
			m := e.Message
			if len(m) > 200 {
				m = m[:200] + "…"
			}
			msgs = append(msgs, m)
		}
		detail := strings.TrimSpace(fmt.Sprintf("HTTP %d %s", he.StatusCode, strings.Join(msgs, "; ")))
		switch {
		case he.StatusCode == http.StatusUnauthorized:
			return errors.New("GitLab refused the token (401 Unauthorized): it is wrong, expired or revoked")
		case he.StatusCode == http.StatusForbidden:
			return fmt.Errorf("GitLab refused the call (%s): the token needs the api scope, and admin_mode if Admin Mode is on", detail)
		case he.StatusCode >= 500 || he.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("%w (%s): %s", ErrUnreachable, c.api.Host, detail)
		}
		return fmt.Errorf("GitLab answered %s", detail)
	}
	return fmt.Errorf("GitLab's answer: %w", err)
}

// GraphQLError is GitLab's top-level GraphQL error list: the request was
// understood and refused (permission, validation).
type GraphQLError struct{ Messages []string }

func (e *GraphQLError) Error() string { return "GitLab: " + strings.Join(e.Messages, "; ") }

// permissionText is the start of the error GitLab answers for anything the
// caller may not see or do (ee/app/policies; raise_resource_not_available_error!).
const permissionText = "The resource that you are attempting to access does not exist or you don't have permission"

// isPermission reports whether err is GitLab's "does not exist or you don't
// have permission" error.
func isPermission(err error) bool {
	var ge *GraphQLError
	if !errors.As(err, &ge) {
		return false
	}
	for _, m := range ge.Messages {
		if strings.HasPrefix(m, permissionText) || strings.Contains(m, "You don't have permission") {
			return true
		}
	}
	return false
}

// TokenInfo is what GitLab says about the token itself
// (GET /api/v4/personal_access_tokens/self).
type TokenInfo struct {
	Name      string   `json:"name"`
	Scopes    []string `json:"scopes"`
	Active    bool     `json:"active"`
	Revoked   bool     `json:"revoked"`
	ExpiresAt string   `json:"expires_at"`
	// Known is false when GitLab did not say (not a personal access token).
	Known bool `json:"-"`
}

// TokenSelf reads the token's own scopes. A token GitLab refuses is an
// error; a token type that has no self endpoint gives Known == false.
func (c *Client) TokenSelf(ctx context.Context) (TokenInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.api.String()+"/api/v4/personal_access_tokens/self", nil)
	if err != nil {
		return TokenInfo{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return TokenInfo{}, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return TokenInfo{}, errors.New("GitLab refused the token (401 Unauthorized): it is wrong, expired or revoked")
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return TokenInfo{}, nil
	case resp.StatusCode >= 500:
		return TokenInfo{}, fmt.Errorf("%w (%s): HTTP %d", ErrUnreachable, c.api.Host, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return TokenInfo{}, fmt.Errorf("GitLab answered HTTP %d for the token's details", resp.StatusCode)
	}
	var ti TokenInfo
	if err := json.NewDecoder(resp.Body).Decode(&ti); err != nil {
		return TokenInfo{}, fmt.Errorf("GitLab's token details: %w", err)
	}
	ti.Known = true
	return ti, nil
}

// userSelf is what GET /api/v4/user says about the token's user; GitLab
// includes is_admin only when the user is an administrator.
type userSelf struct {
	Username string `json:"username"`
	IsAdmin  bool   `json:"is_admin"`
}

// UserSelf reads the token's user over REST: GitLab's GraphQL CurrentUser
// has no administrator flag.
func (c *Client) UserSelf(ctx context.Context) (userSelf, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.api.String()+"/api/v4/user", nil)
	if err != nil {
		return userSelf{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return userSelf{}, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return userSelf{}, errors.New("GitLab refused the token (401 Unauthorized): it is wrong, expired or revoked")
	case resp.StatusCode >= 500:
		return userSelf{}, fmt.Errorf("%w (%s): HTTP %d", ErrUnreachable, c.api.Host, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return userSelf{}, fmt.Errorf("GitLab answered HTTP %d for the token's user (the token needs the api or read_user scope)", resp.StatusCode)
	}
	var u userSelf
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return userSelf{}, fmt.Errorf("GitLab's user details: %w", err)
	}
	return u, nil
}
