package gateway

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
)

// Content types of suggestion streams. GitLab's gateway (Starlette) adds
// the charset to text/event-stream, for raw text streams and SSE alike.
const contentTypeEventStream = "text/event-stream; charset=utf-8"

// errAnswerComplete stops a model stream whose answer is complete (the
// fenced block closed): what would follow is dropped anyway.
var errAnswerComplete = errors.New("the answer is complete")

// streamFormat writes a suggestion stream: raw text chunks (/v2, /v3) or
// GitLab's v4 server-sent events.
type streamFormat interface {
	start(w *streamWriter) error
	chunk(w *streamWriter, text string) error
	end(w *streamWriter) error
}

// rawFormat is the body of /v2 and /v3 streams: the text, unframed, as
// GitLab's gateway sends it despite the event-stream content type.
type rawFormat struct{}

func (rawFormat) start(*streamWriter) error                { return nil }
func (rawFormat) chunk(w *streamWriter, text string) error { return w.WriteString(text) }
func (rawFormat) end(*streamWriter) error                  { return nil }

// sseFormat is the /v4 stream (ai_gateway/api/v4/code/suggestions.py,
// written by sse_starlette): "event:" before "data:", CRLF line ends,
// stream_start with the metadata, one content_chunk per delta and
// stream_end with the JSON null as data.
type sseFormat struct{ metadata []byte }

func (f sseFormat) start(w *streamWriter) error {
	return w.WriteString("event: stream_start\r\ndata: " + string(f.metadata) + "\r\n\r\n")
}

func (sseFormat) chunk(w *streamWriter, text string) error {
	b, err := json.Marshal(sseChunk{Choices: []sseChoice{{Delta: sseDelta{Content: text}}}})
	if err != nil {
		return err
	}
	return w.WriteString("event: content_chunk\r\ndata: " + string(b) + "\r\n\r\n")
}

func (sseFormat) end(w *streamWriter) error {
	return w.WriteString("event: stream_end\r\ndata: null\r\n\r\n")
}

// sseChunk is the data of a content_chunk event.
type sseChunk struct {
	Choices []sseChoice `json:"choices"`
}

type sseChoice struct {
	Delta sseDelta `json:"delta"`
	Index int      `json:"index"`
}

type sseDelta struct {
	Content string `json:"content"`
}

// streamSuggestion streams sg. Like GitLab's gateway, which awaits the
// model's first response before it answers, the status is committed only
// once the model has produced its first delta: a model that fails at once
// (rate limit, no attested backend, timeout) gets GitLab's 429/503/504,
// not an empty 200 stream.
//
// A failure after the first delta can only end the stream: raw streams
// just end, v4 streams end with stream_end (an "error" event would be
// taken for a connection failure by EventSource clients, and GitLab's
// gateway defines none). The failure is logged.
func (s *Server) streamSuggestion(c *call, sg *suggestion) error {
	var f streamFormat = rawFormat{}
	if sg.shape == shapeV4 {
		md, err := json.Marshal(struct {
			Metadata responseMetadata `json:"metadata"`
		}{responseMetadata{Model: suggestionModel{Engine: suggestionEngine, Name: sg.model, Lang: sg.lang},
			Timestamp: s.o.Now().Unix(), EnabledFeatureFlags: sg.flags}})
		if err != nil {
			return err
		}
		f = sseFormat{metadata: md}
	}

	h, err := s.holdStream(c, sg.timeout, func(ctx context.Context, onDelta func(string) error) (model.Result, error) {
		return sg.callStream(ctx, s.o.Model, onDelta)
	})
	if err != nil {
		return err
	}
	if sg.shape == shapeV4 {
		c.ctx.Response.Header.Set("X-Streaming-Format", "sse")
	}
	clean := sg.clean
	c.stream(contentTypeEventStream, sg.timeout, func(_ context.Context, w *streamWriter) error {
		complete := false
		defer func() {
			var cause error
			if complete {
				cause = errAnswerComplete
			}
			h.close(cause)
		}()
		cl := modeloutput.NewStreamCleaner(clean)
		emit := func(text string) error {
			if text == "" {
				return nil
			}
			return f.chunk(w, text)
		}
		if err := f.start(w); err != nil {
			return err
		}
		for d := range h.all {
			if err := emit(cl.Write(d)); err != nil {
				return err
			}
			if cl.Done() {
				complete = true
				break
			}
		}
		if err := emit(cl.Close()); err != nil {
			return err
		}
		if err := f.end(w); err != nil {
			return err
		}
		if complete {
			return nil
		}
		_, err := h.result()
		return err
	})
	return nil
}
