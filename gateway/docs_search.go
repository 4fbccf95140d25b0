package gateway

import "unicode/utf8"

// Limits of the docs search body (ai_gateway/api/v1/search/typing.py).
const (
	docsDefaultPageSize = 4
	docsMaxPageSize     = 20
	docsMaxQueryChars   = 400000
	// docsProvider is metadata.provider of every answer.
	docsProvider = "duo-confidential"
)

// docsSearchRequest is the body of POST /v1/search/gitlab-docs. type and
// metadata (source, GitLab version) are accepted and unused.
type docsSearchRequest struct {
	Type    string       `json:"type"`
	Payload *docsPayload `json:"payload"`
}

// docsPayload is the query and how many results GitLab wants.
type docsPayload struct {
	Query    *string `json:"query"`
	PageSize *int    `json:"page_size"`
}

// docsSearchResponse is GitLab's SearchResponse.
type docsSearchResponse struct {
	Response docsResults      `json:"response"`
	Metadata docsResponseMeta `json:"metadata"`
}

// docsResults holds the results; always a JSON array, never null.
type docsResults struct {
	Results []docsResult `json:"results"`
}

// docsResult is one documentation excerpt.
type docsResult struct {
	ID       string         `json:"id"`
	Content  string         `json:"content"`
	Metadata map[string]any `json:"metadata"`
}

// docsResponseMeta says who searched and when.
type docsResponseMeta struct {
	Provider  string `json:"provider"`
	Timestamp int64  `json:"timestamp"`
}

// handleDocsSearch serves POST /v1/search/gitlab-docs, the Duo Chat
// gitlab_documentation tool. The appliance ships no documentation index
// yet, so after validating the request it answers an empty result list,
// which GitLab accepts: Duo Chat then answers documentation questions from
// the model's own knowledge. No model is called.
func (s *Server) handleDocsSearch(c *call) error {
	var req docsSearchRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Payload == nil || req.Payload.Query == nil {
		return invalid("payload.query is required")
	}
	if utf8.RuneCountInString(*req.Payload.Query) > docsMaxQueryChars {
		return invalid("payload.query is longer than %d characters", docsMaxQueryChars)
	}
	pageSize := docsDefaultPageSize
	if req.Payload.PageSize != nil {
		pageSize = *req.Payload.PageSize
	}
	if pageSize < 1 || pageSize > docsMaxPageSize {
		return invalid("payload.page_size must be between 1 and %d", docsMaxPageSize)
	}
	return c.writeJSON(docsSearchResponse{
		Response: docsResults{Results: []docsResult{}},
		Metadata: docsResponseMeta{Provider: docsProvider, Timestamp: s.o.Now().Unix()},
	})
}
