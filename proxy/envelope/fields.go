package envelope

// Fields is a set of top-level JSON keys (or form field names) that stay
// plaintext; every other key is encrypted (deny by default). Build it with
// PlainFields and do not modify it after sharing.
type Fields map[string]struct{}

// PlainFields returns a Fields set holding exactly names.
func PlainFields(names ...string) Fields {
	f := make(Fields, len(names))
	for _, n := range names {
		f[n] = struct{}{}
	}
	return f
}

// Has reports whether name stays plaintext.
func (f Fields) Has(name string) bool {
	_, ok := f[name]
	return ok
}

// hasBytes is Has without allocating (the compiler elides the conversion).
func (f Fields) hasBytes(name []byte) bool {
	_, ok := f[string(name)]
	return ok
}

// Per-route plain lists (docs/reference/privatemode-wire.md §1). Anything else,
// including unknown and extension keys, is encrypted.
var (
	// ChatRequestPlain lists the plain keys of /v1/chat/completions and /v1/completions requests.
	ChatRequestPlain = PlainFields("model", "stream_options", "max_tokens", "max_completion_tokens", "n", "stream")
	// ChatResponsePlain lists the plain keys of chat responses and of every SSE chunk.
	ChatResponsePlain = PlainFields("id", "usage")
	// MessagesRequestPlain lists the plain keys of Anthropic /v1/messages requests.
	MessagesRequestPlain = PlainFields("model", "stream")
	// MessagesResponsePlain lists the plain keys of /v1/messages responses and SSE events.
	MessagesResponsePlain = PlainFields("id", "type", "usage")
	// EmbeddingsRequestPlain lists the plain keys of /v1/embeddings requests.
	EmbeddingsRequestPlain = PlainFields("model")
	// EmbeddingsResponsePlain lists the plain keys of /v1/embeddings responses.
	EmbeddingsResponsePlain = PlainFields("id", "usage")
	// TranscriptionFormPlain lists the plain form fields of /v1/audio/transcriptions requests.
	TranscriptionFormPlain = PlainFields("model", "stream", "stream_include_usage", "stream_continuous_usage_stats")
	// TranscriptionResponsePlain lists the plain keys of transcription responses and SSE chunks.
	TranscriptionResponsePlain = PlainFields("duration", "usage")
)
