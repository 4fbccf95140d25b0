package secret

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/duo-confidential/duo-confidential/proxy/attest"
)

// API paths, relative to the endpoint.
const (
	AttestPath = "/privatemode/v1/attest"
	SecretPath = "/privatemode/v1/secret"
)

// Response size limits. An attestation document is at most
// attest.MaxDocSize bytes, base64 (4/3) inside a small JSON object; an
// exchange response is ~1.5 KiB of base64 for the encapsulation plus a
// signature and one leaf certificate.
const (
	maxAttestResponse   = attest.MaxDocSize/3*4 + 4096
	maxExchangeResponse = 64 << 10
	maxErrorBody        = 1 << 10
	maxMeshCert         = 16 << 10
	maxSignature        = 256
)

// AttestRequest is the body of POST /privatemode/v1/attest.
type AttestRequest struct {
	Nonce []byte // 32 random bytes; base64 on the wire
}

// AttestResponse is the reply: the coordinator's attestation document JSON,
// base64 on the wire.
type AttestResponse struct {
	AttestationDoc []byte
}

// ExchangeRequest is the body of POST /privatemode/v1/secret.
type ExchangeRequest struct {
	PublicKey []byte // serialized X-Wing public key, 1216 bytes
}

// ExchangeResponse is the secret service's reply, all fields base64 on the
// wire: the HPKE encapsulation, an ASN.1 ECDSA signature over
// SHA-256(PublicKey‖EncapsulatedKey), and the DER mesh leaf that signed it.
type ExchangeResponse struct {
	EncapsulatedKey []byte
	Signature       []byte
	MeshCert        []byte
}

// ErrUnauthorized: the API rejected the API key (HTTP 401 or 403).
var ErrUnauthorized = errors.New("the Privatemode API rejected the API key; check the API key")

// ErrResponseTooLarge: the API's response exceeded the size limit.
var ErrResponseTooLarge = errors.New("response exceeds size limit")

// StatusError is a non-200 reply from the API. It wraps ErrUnauthorized for
// 401/403. Body is a sanitized, truncated excerpt (never the API key).
type StatusError struct {
	Op         string // "attest" or "secret exchange"
	StatusCode int
	Body       string
	// RetryAfter is the server's Retry-After delay (429/503), 0 if absent.
	RetryAfter time.Duration
}

// Error renders "privatemode <op>: HTTP <code>: <body>".
func (e *StatusError) Error() string {
	s := fmt.Sprintf("privatemode %s: HTTP %d", e.Op, e.StatusCode)
	if e.Unwrap() != nil {
		s += ": " + ErrUnauthorized.Error()
	}
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Unwrap returns ErrUnauthorized for 401 and 403.
func (e *StatusError) Unwrap() error {
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		return ErrUnauthorized
	}
	return nil
}

// Retryable reports whether the same request may succeed later: 429 and
// 5xx.
func (e *StatusError) Retryable() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500
}

// IsRetryable reports whether err is transient: a 429/5xx status or a
// transport failure. Context cancellation, authorization, malformed
// responses and verification failures are not.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if se, ok := errors.AsType[*StatusError](err); ok {
		return se.Retryable()
	}
	_, isTransport := errors.AsType[*transportError](err)
	return isTransport
}

// transportError marks failures to reach the API (DNS, TCP, TLS, reset).
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// Client talks to the Privatemode API's attestation and secret endpoints.
// It implements Attester and Exchanger and is safe for concurrent use.
//
// Each request carries exactly Authorization, Privatemode-Version,
// Privatemode-Client and Content-Type; Go's User-Agent is suppressed and the
// caller's cookie jar and redirect policy are not used (a redirect is an
// error, so the key is never replayed to another URL). Only transport
// framing (Host, Content-Length, Accept-Encoding) is added by net/http.
type Client struct {
	base    *url.URL
	apiKey  string
	version string
	hc      *http.Client
}

// NewClient returns a client for endpoint: "https://host[:port]" or a bare
// "host:port" (https is implied, as in upstream's --apiEndpoint); http is
// accepted for loopback tests. version is sent as Privatemode-Version. hc
// supplies transport, timeouts, proxy and CAs; nil means
// http.DefaultClient.
func NewClient(endpoint, apiKey, version string, hc *http.Client) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "https://" + endpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("privatemode endpoint: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("privatemode endpoint %q: want https://host[:port]", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if apiKey == "" || strings.ContainsAny(apiKey, "\r\n") {
		return nil, errors.New("privatemode API key is empty or contains a line break")
	}
	if version == "" {
		return nil, errors.New("privatemode client version is empty")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	// A shallow copy lets us refuse redirects and drop the cookie jar
	// without touching the caller's client; the transport stays shared.
	own := *hc
	own.Jar = nil
	own.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, apiKey: apiKey, version: version, hc: &own}, nil
}

// Attest requests an attestation document for nonce and returns the
// document JSON (still to be parsed with attest.ParseDoc).
func (c *Client) Attest(ctx context.Context, nonce []byte) ([]byte, error) {
	body, err := c.post(ctx, "attest", AttestPath, AttestRequest{Nonce: nonce}, maxAttestResponse)
	if err != nil {
		return nil, err
	}
	return decodeAttestResponse(body)
}

// ExchangeSecret posts our HPKE public key and returns the decoded, not yet
// verified, response.
func (c *Client) ExchangeSecret(ctx context.Context, pub []byte) (*ExchangeResponse, error) {
	body, err := c.post(ctx, "secret exchange", SecretPath, ExchangeRequest{PublicKey: pub}, maxExchangeResponse)
	if err != nil {
		return nil, err
	}
	return decodeExchangeResponse(body)
}

// post sends one JSON request and returns the 200 body, read up to limit.
func (c *Client) post(ctx context.Context, op, path string, in any, limit int64) ([]byte, error) {
	reqBody, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("privatemode %s: encode request: %w", op, err)
	}
	u := *c.base
	u.Path += path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(reqBody))
	if err != nil {
		return nil, fmt.Errorf("privatemode %s: %w", op, err)
	}
	req.Header = http.Header{
		"Authorization":       {"Bearer " + c.apiKey},
		"Privatemode-Version": {c.version},
		"Privatemode-Client":  {"Proxy"},
		"Content-Type":        {"application/json"},
		// An explicitly empty User-Agent makes net/http omit the header.
		"User-Agent": {""},
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("privatemode %s: %w", op, ctxErr)
		}
		return nil, fmt.Errorf("privatemode %s: %w", op, &transportError{err: c.redact(err)})
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &StatusError{
			Op:         op,
			StatusCode: resp.StatusCode,
			Body:       c.sanitize(excerpt),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After")),
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("privatemode %s: %w", op, ctxErr)
		}
		return nil, fmt.Errorf("privatemode %s: read response: %w", op, &transportError{err: c.redact(err)})
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("privatemode %s: %w (%d bytes)", op, ErrResponseTooLarge, limit)
	}
	return body, nil
}

// sanitize turns an error body into a short printable excerpt without the
// API key (a misbehaving gateway might echo request headers).
func (c *Client) sanitize(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, strings.ToValidUTF8(string(b), "?"))
	s = strings.ReplaceAll(s, c.apiKey, "[redacted]")
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// redact strips the API key from a transport error's text, in case some
// layer (a proxy, a custom RoundTripper) echoes headers into its error.
func (c *Client) redact(err error) error {
	if !strings.Contains(err.Error(), c.apiKey) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), c.apiKey, "[redacted]"))
}

// retryAfter parses a delta-seconds Retry-After (the HTTP-date form is not
// used by API gateways in practice and is ignored).
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, time.Hour)
}

// decodeJSON decodes exactly one JSON object into v; unknown fields are
// allowed (the API may grow) but trailing data is not.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeAttestResponse decodes {"AttestationDoc":"<b64>"} and returns the
// document bytes.
func decodeAttestResponse(b []byte) ([]byte, error) {
	var r AttestResponse
	if err := decodeJSON(b, &r); err != nil {
		return nil, fmt.Errorf("privatemode attest: %w: %w", attest.ErrMalformed, err)
	}
	if len(r.AttestationDoc) == 0 {
		return nil, fmt.Errorf("privatemode attest: %w: empty AttestationDoc", attest.ErrMalformed)
	}
	if len(r.AttestationDoc) > attest.MaxDocSize {
		return nil, fmt.Errorf("privatemode attest: %w: AttestationDoc of %d bytes", attest.ErrMalformed, len(r.AttestationDoc))
	}
	return r.AttestationDoc, nil
}

// decodeExchangeResponse decodes and shape-checks an exchange response;
// cryptographic checks are Verify's.
func decodeExchangeResponse(b []byte) (*ExchangeResponse, error) {
	var r ExchangeResponse
	if err := decodeJSON(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedResponse, err)
	}
	switch {
	case len(r.EncapsulatedKey) != EncapsulatedKeySize:
		return nil, fmt.Errorf("%w: EncapsulatedKey is %d bytes, want %d", ErrMalformedResponse, len(r.EncapsulatedKey), EncapsulatedKeySize)
	case len(r.Signature) == 0 || len(r.Signature) > maxSignature:
		return nil, fmt.Errorf("%w: Signature is %d bytes", ErrMalformedResponse, len(r.Signature))
	case len(r.MeshCert) == 0 || len(r.MeshCert) > maxMeshCert:
		return nil, fmt.Errorf("%w: MeshCert is %d bytes", ErrMalformedResponse, len(r.MeshCert))
	}
	return &r, nil
}
