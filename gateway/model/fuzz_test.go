package model

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzStreamChunk feeds arbitrary event data to the chunk parser, in both
// modes and through a reused chunk: it must never panic, must fail only
// with an *Error, and must not let one event's fields leak into the next.
func FuzzStreamChunk(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`,
		`{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}`,
		`{"choices":[{"index":0,"text":"a","finish_reason":"length"},{"index":1,"text":"b"}]}`,
		`{"error":{"message":"broke off","type":"upstream_error","param":null,"code":null}}`,
		`{"error":{"code":502}}`, `{"error":"x"}`, `{"choices":null}`, `{"choices":[null]}`,
		`[DONE]`, `null`, `[]`, `{`, ``, `{"choices":[{"index":-1,"delta":{"content":1}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_issue","arguments":"{\"issue_iid\":"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":31,"function":{"arguments":"1}"}},{"index":32}]}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, legacy := range []bool{false, true} {
			var ch chunk
			var res Result
			// A first event fills the reused chunk, so stale fields would show.
			if _, err := applyChunk([]byte(`{"model":"x","choices":[{"index":0,"text":"t","delta":{"content":"c"},"finish_reason":"f"},{"index":1}]}`), legacy, &ch, &res); err != nil {
				t.Fatal(err)
			}
			res = Result{}
			delta, err := applyChunk(data, legacy, &ch, &res)
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status != 502 || e.Message == "" || e.Type == "" {
					t.Fatalf("error %#v, want a complete 502 *Error", err)
				}
				if delta != "" {
					t.Fatalf("delta %q with an error", delta)
				}
				continue
			}
			var fresh chunk
			var want Result
			wantDelta, err := applyChunk(data, legacy, &fresh, &want)
			if err != nil {
				t.Fatalf("fresh chunk failed where the reused one did not: %v", err)
			}
			if delta != wantDelta || !reflect.DeepEqual(res, want) {
				t.Fatalf("reused chunk gave %q %+v, fresh %q %+v", delta, res, wantDelta, want)
			}
		}
	})
}
