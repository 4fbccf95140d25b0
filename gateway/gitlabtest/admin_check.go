package gitlabtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ModelCheckTimeout is Rails' limit on the Test connection call.
const ModelCheckTimeout = 3 * time.Second

// ModelCheck returns an AdminOptions.CheckModel that does what Rails'
// connection check does (model_configuration_probe.rb): POST
// {gateway}/v1/prompts/model_configuration%2Fcheck with the model's
// metadata and an instance token from i, 3 s, success = HTTP 200. client
// must trust the gateway's certificate.
func (i *Issuer) ModelCheck(client *http.Client) func(ctx context.Context, gatewayURL string, m AdminModel) string {
	return func(ctx context.Context, gatewayURL string, m AdminModel) string {
		ctx, cancel := context.WithTimeout(ctx, ModelCheckTimeout)
		defer cancel()
		tok, err := i.Token(TokenOptions{})
		if err != nil {
			return err.Error()
		}
		body, _ := json.Marshal(map[string]any{"inputs": map[string]any{}, "stream": false, "model_metadata": map[string]any{
			"name": m.Family, "endpoint": m.Endpoint, "api_key": m.APIToken, "provider": "openai", "identifier": m.Identifier}})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(gatewayURL, "/")+"/v1/prompts/model_configuration%2Fcheck", bytes.NewReader(body))
		if err != nil {
			return err.Error()
		}
		req.Header = i.Headers(tok, TokenOptions{})
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Sprintf("Could not connect to the AI Gateway: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		switch resp.StatusCode {
		case http.StatusOK:
			return ""
		case http.StatusMisdirectedRequest:
			return "The self-hosted model server returned code " + string(b)
		default:
			return fmt.Sprintf("AI Gateway returned code %d: %s", resp.StatusCode, b)
		}
	}
}
