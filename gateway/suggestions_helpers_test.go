package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// volatile matches the clock-dependent fields of suggestion responses.
var volatile = regexp.MustCompile(`"(created|timestamp)":\d+`)

// checkGolden compares got, with created/timestamp set to 0, with
// testdata/suggestions/<name>.golden.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	got = volatile.ReplaceAll(got, []byte(`"$1":0`))
	testutil.Golden(t, filepath.Join("testdata", "suggestions", name+".golden"), got)
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	Event string
	Data  string
}

// parseSSE reads a v4 stream strictly: every event is exactly an "event:"
// line then a "data:" line, CRLF-terminated, followed by an empty line;
// data is valid JSON; nothing else may appear.
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	s := string(body)
	if !strings.HasSuffix(s, "\r\n\r\n") {
		t.Fatalf("stream does not end with an empty line: %q", s)
	}
	var out []sseEvent
	for _, block := range strings.Split(strings.TrimSuffix(s, "\r\n\r\n"), "\r\n\r\n") {
		lines := strings.Split(block, "\r\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("malformed event %q in %q", block, s)
		}
		ev := sseEvent{Event: strings.TrimPrefix(lines[0], "event: "), Data: strings.TrimPrefix(lines[1], "data: ")}
		if !json.Valid([]byte(ev.Data)) {
			t.Fatalf("event %s: data is not JSON: %q", ev.Event, ev.Data)
		}
		out = append(out, ev)
	}
	return out
}

// sseText checks the event order of a v4 stream and returns the
// concatenated content.
func sseText(t *testing.T, evs []sseEvent) string {
	t.Helper()
	if len(evs) < 2 || evs[0].Event != "stream_start" || evs[len(evs)-1].Event != "stream_end" || evs[len(evs)-1].Data != "null" {
		t.Fatalf("events %+v: want stream_start, content_chunk…, stream_end with data null", evs)
	}
	var b strings.Builder
	for _, ev := range evs[1 : len(evs)-1] {
		if ev.Event != "content_chunk" {
			t.Fatalf("unexpected event %q", ev.Event)
		}
		var c sseChunk
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Delta.Content == "" {
			t.Fatalf("content_chunk %q: %v", ev.Data, err)
		}
		b.WriteString(c.Choices[0].Delta.Content)
	}
	return b.String()
}

// lastComp returns the last legacy completion request the model got.
func (f *fakeModel) lastComp(t *testing.T) model.CompletionRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.comps) == 0 {
		t.Fatal("the model got no completion request")
	}
	return f.comps[len(f.comps)-1]
}

// userText returns the chat messages' contents joined, for assertions.
func userText(r model.ChatRequest) string {
	var b strings.Builder
	for _, m := range r.Messages {
		fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, m.Content)
	}
	return b.String()
}

// scriptedModel wraps fakeModel for what it cannot do: honour the context
// (block until the deadline) and fail in the middle of a stream.
type scriptedModel struct {
	*fakeModel
	block bool // wait for ctx to end, then fail with its error
	// deltas, when set, are what streams send, ending with midFail (nil:
	// success).
	deltas  []string
	midFail error
	// accepted counts deltas the gateway took (it stops a stream whose
	// answer is complete).
	accepted atomic.Int32
}

func (m *scriptedModel) wait(ctx context.Context) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

func (m *scriptedModel) Chat(ctx context.Context, r model.ChatRequest) (model.Result, error) {
	if m.block {
		return model.Result{}, m.wait(ctx)
	}
	return m.fakeModel.Chat(ctx, r)
}

func (m *scriptedModel) ChatStream(ctx context.Context, r model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	if m.block {
		return model.Result{}, m.wait(ctx)
	}
	if m.deltas != nil {
		m.fakeModel.mu.Lock()
		m.fakeModel.chats = append(m.fakeModel.chats, r)
		m.fakeModel.mu.Unlock()
		for _, d := range m.deltas {
			if err := onDelta(d); err != nil {
				return model.Result{}, err
			}
			m.accepted.Add(1)
		}
		return model.Result{Text: strings.Join(m.deltas, "")}, m.midFail
	}
	return m.fakeModel.ChatStream(ctx, r, onDelta)
}

func (m *scriptedModel) Complete(ctx context.Context, r model.CompletionRequest) (model.Result, error) {
	if m.block {
		return model.Result{}, m.wait(ctx)
	}
	return m.fakeModel.Complete(ctx, r)
}

// endlessModel streams lines until the gateway stops taking them, then
// closes ended.
type endlessModel struct {
	*fakeModel
	ended chan struct{}
}

func (m *endlessModel) ChatStream(ctx context.Context, _ model.ChatRequest, onDelta func(string) error) (model.Result, error) {
	defer close(m.ended)
	for i := 0; ; i++ {
		if err := onDelta(fmt.Sprintf("line_%d = %d\n", i, i)); err != nil {
			return model.Result{}, err
		}
	}
}
