package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/duo-confidential/duo-confidential/gateway/model"
	"github.com/duo-confidential/duo-confidential/gateway/modeloutput"
	"github.com/duo-confidential/duo-confidential/gateway/prompts"
)

// chatEvent is one ndjson line of /v2/chat/agent.
type chatEvent struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// answerDelta is a final_answer_delta. Rails appends "Response could not be
// completed" when the last delta has no finish_reason, so the last one
// always carries it.
type answerDelta struct {
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason,omitempty"`
}

// actionEvent asks Rails to run a tool (field order as GitLab dumps it).
type actionEvent struct {
	Tool      string `json:"tool"`
	ToolInput string `json:"tool_input"`
	Thought   string `json:"thought"`
}

// errorEvent reports a failed step; Rails retries retryable ones (twice).
type errorEvent struct {
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

// usageEvent is the trailing usage line, keyed by model.
type usageEvent struct {
	Usage map[string]tokenUsage `json:"usage"`
}

// eventWriter writes events, one JSON object per line, each flushed.
type eventWriter struct{ w *streamWriter }

func (e eventWriter) send(typ string, data any) error {
	b, err := json.Marshal(chatEvent{Type: typ, Data: data})
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	_, err = e.w.Write(append(b, '\n'))
	return err
}

// answerChunk bounds the final_answer_delta events of an answer that was
// not streamed as the model wrote it.
const answerChunk = 256

// chatStep returns the stream body of one ReAct step: the model's reply is
// streamed through a modeloutput.AnswerStream, so answer text goes out as it
// is written; an action, a truncated reply or a failure becomes one event
// at the end, then the usage line.
func (s *Server) chatStep(req model.ChatRequest) func(ctx context.Context, w *streamWriter) error {
	return func(ctx context.Context, w *streamWriter) error {
		ev := eventWriter{w}
		var as modeloutput.AnswerStream
		// pending is the newest answer text, held until more arrives so
		// that the last delta can carry finish_reason.
		pending := ""
		res, err := s.o.Model.ChatStream(ctx, req, func(delta string) error {
			add := as.Write(delta)
			if add == "" {
				return nil
			}
			if pending != "" {
				if err := ev.send("final_answer_delta", answerDelta{Text: pending}); err != nil {
					return err
				}
			}
			pending = add
			return nil
		})
		if err != nil {
			if w.Gone() {
				return err
			}
			if pending != "" {
				if werr := ev.send("final_answer_delta", answerDelta{Text: pending}); werr != nil {
					return werr
				}
			}
			if werr := ev.send("error", chatModelError(ctx, err)); werr != nil {
				return werr
			}
			return err
		}
		finish := res.FinishReason
		if finish == "" {
			finish = "stop"
		}
		var problem error // a reply that could not be used, for the log
		if as.Streamed() {
			err = ev.send("final_answer_delta", answerDelta{Text: pending + as.Close(), FinishReason: finish})
		} else {
			text := as.Text()
			if text == "" {
				text = res.Text
			}
			problem, err = s.chatOutcome(ev, text, finish)
		}
		if u := promptUsage(req.Model, res); err == nil && u != nil {
			err = ev.send("usage", usageEvent{Usage: u})
		}
		if err != nil {
			return err
		}
		return problem
	}
}

// chatOutcome answers a reply none of which was streamed: an action, the
// whole answer in chunks, or an error event. problem describes a reply that
// could not be used, for the log (never the reply's text); err is a failed
// write.
func (s *Server) chatOutcome(ev eventWriter, text, finish string) (problem, err error) {
	step, perr := modeloutput.ParseReAct(text)
	var te *modeloutput.TruncatedError
	switch {
	case errors.As(perr, &te):
		return errors.New("chat: the model's reply was cut off: " + te.Reason),
			ev.send("error", errorEvent{Message: "the model's reply ended before a complete action or answer (" + te.Reason + ")", Retryable: true})
	case errors.Is(perr, modeloutput.ErrEmptyOutput):
		return errors.New("chat: the model returned an empty reply"),
			ev.send("error", errorEvent{Message: "the model returned an empty reply", Retryable: true})
	case perr != nil:
		return errors.New("chat: unreadable model reply"),
			ev.send("error", errorEvent{Message: "the model's reply could not be read", Retryable: true})
	}
	switch st := step.(type) {
	case modeloutput.Action:
		tool, ok := prompts.MatchTool(st.Tool, chatTools)
		if !ok {
			return errors.New("chat: the model named a tool GitLab does not offer"),
				ev.send("error", errorEvent{Message: msgToolNotAvailable, Retryable: false})
		}
		return nil, ev.send("action", actionEvent{Tool: tool, ToolInput: st.Input, Thought: st.Thought})
	case modeloutput.FinalAnswer:
		chunks := chunkText(st.Text, answerChunk)
		for i, c := range chunks {
			d := answerDelta{Text: c}
			if i == len(chunks)-1 {
				d.FinishReason = finish
			}
			if err := ev.send("final_answer_delta", d); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return errors.New("chat: unreadable model reply"),
		ev.send("error", errorEvent{Message: "the model's reply could not be read", Retryable: true})
}

// chatModelError turns a failed model call into an error event: the same
// client-facing text the HTTP routes use, retryable when a later call may
// succeed (rate limit, backend not ready, timeout), and "prompt is too
// long" when the model's context window is exceeded, which Rails turns into
// its "/clear or /reset" advice (A1005).
func chatModelError(ctx context.Context, err error) errorEvent {
	err = modelError(ctx, err)
	e := errorEvent{Message: asError(err).Detail}
	var me *model.Error
	switch {
	case errors.As(err, &me):
		e.Retryable = me.Retryable()
		if me.Status >= 400 && me.Status < 500 && contextTooLong(me.Message) {
			e.Message = "prompt is too long: " + e.Message
		}
	case errors.Is(err, errDeadline):
		e.Retryable = true
	}
	return e
}

// contextTooLong recognises context-window errors of vLLM, OpenAI and
// llama.cpp style servers.
func contextTooLong(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"context length", "context window", "maximum context", "prompt is too long", "too many tokens", "exceeds the context"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// chunkText splits s into pieces of at most n bytes, at a space when one is
// near, never inside a UTF-8 sequence; the pieces concatenate to s.
func chunkText(s string, n int) []string {
	var out []string
	for len(s) > n {
		cut := n
		if i := strings.LastIndexByte(s[:n], ' '); i >= n/2 {
			cut = i + 1
		}
		for cut > 1 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	if s != "" || len(out) == 0 {
		out = append(out, s)
	}
	return out
}
