package envelope

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// chatRequest4K is a realistic ~4 KB Duo-style chat request.
var chatRequest4K = func() []byte {
	code := strings.Repeat(`func add(a, b int) int {\n\treturn a + b // \"sum\"\n}\n`, 62)
	b := fmt.Appendf(nil, `{"model":"openai/gpt-oss-120b","messages":[{"role":"system","content":"You are GitLab Duo, a helpful coding assistant. Answer concisely."},`+
		`{"role":"user","content":"Explain this Go code:\n%s"}],"max_tokens":1024,"temperature":0.2,"top_p":0.95,"stream":true,`+
		`"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"read_file","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}],`+
		`"cache_salt":"c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ="}`, code)
	if !json.Valid(b) || len(b) < 3900 || len(b) > 4300 {
		panic(fmt.Sprintf("bad benchmark body (%d bytes)", len(b)))
	}
	return b
}()

const sseChunk = `{"id":"chatcmpl-8f1c2d3e4f5a6b7c","object":"chat.completion.chunk","created":1760000000,"model":"openai/gpt-oss-120b","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}`

func BenchmarkEncryptJSONChat4K(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(chatRequest4K)))
	for b.Loop() {
		s, err := NewSession(testSecret) // per-request: nonce + key schedule
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.EncryptJSON(chatRequest4K, ChatRequestPlain); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestPath4K is the whole client request path: salt check, shard key, session, encryption.
func BenchmarkRequestPath4K(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		body, _, err := EnsureCacheSalt(chatRequest4K, "c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ=")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ShardKey("c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHQ=", body); err != nil {
			b.Fatal(err)
		}
		s, _ := NewSession(testSecret)
		if _, err := s.EncryptJSON(body, ChatRequestPlain); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkJSONValidChat4K(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(chatRequest4K)))
	for b.Loop() {
		if !json.Valid(chatRequest4K) {
			b.Fatal("invalid")
		}
	}
}

// sseBatch prepares a client session and n server-encrypted chunks in stream order.
func sseBatch(b *testing.B, n int) (*Session, [][]byte) {
	c, srv := newPair(b)
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[],"stream":true}`), ChatRequestPlain)
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil {
		b.Fatal(err)
	}
	chunks := make([][]byte, n)
	for i := range chunks {
		var err error
		if chunks[i], err = srv.EncryptJSON([]byte(sseChunk), ChatResponsePlain); err != nil {
			b.Fatal(err)
		}
	}
	return c, chunks
}

func benchDecryptSSE(b *testing.B, reuse bool) {
	const batch = 4096
	c, chunks := sseBatch(b, batch)
	b.SetBytes(int64(len(chunks[0])))
	b.ReportAllocs()
	b.ResetTimer()
	var dst []byte
	for i := 0; i < b.N; i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			c, chunks = sseBatch(b, batch)
			b.StartTimer()
		}
		var err error
		if reuse {
			dst, err = c.AppendDecryptJSON(dst[:0], chunks[i%batch], ChatResponsePlain)
		} else {
			dst, err = c.DecryptJSON(chunks[i%batch], ChatResponsePlain)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}

func BenchmarkDecryptJSONSSEChunk(b *testing.B)       { benchDecryptSSE(b, false) }
func BenchmarkAppendDecryptJSONSSEChunk(b *testing.B) { benchDecryptSSE(b, true) }

func BenchmarkJSONValidSSEChunk(b *testing.B) {
	_, chunks := sseBatch(b, 1)
	b.SetBytes(int64(len(chunks[0])))
	b.ReportAllocs()
	for b.Loop() {
		if !json.Valid(chunks[0]) {
			b.Fatal("invalid")
		}
	}
}

func BenchmarkServerEncryptSSEChunk(b *testing.B) {
	c, srv := newPair(b)
	wire, _ := c.EncryptJSON([]byte(`{"model":"m","messages":[]}`), ChatRequestPlain)
	if _, err := srv.DecryptJSON(wire, ChatRequestPlain); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var dst []byte
	for b.Loop() {
		var err error
		if dst, err = srv.AppendEncryptJSON(dst[:0], []byte(sseChunk), ChatResponsePlain); err != nil {
			b.Fatal(err)
		}
	}
}
