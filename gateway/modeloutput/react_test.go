package modeloutput

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duo-confidential/duo-confidential/internal/testutil"
)

// reactResult is the golden form of a ParseReAct result.
type reactResult struct {
	Type    string `json:"type"`
	Tool    string `json:"tool,omitempty"`
	Input   string `json:"input,omitempty"`
	Thought string `json:"thought,omitempty"`
	Text    string `json:"text,omitempty"`
	Error   string `json:"error,omitempty"`
}

func toResult(st Step, err error) reactResult {
	var te *TruncatedError
	switch {
	case errors.As(err, &te):
		return reactResult{Type: "truncated", Error: te.Reason}
	case errors.Is(err, ErrEmptyOutput):
		return reactResult{Type: "empty"}
	case err != nil:
		return reactResult{Type: "error", Error: err.Error()}
	}
	switch v := st.(type) {
	case Action:
		return reactResult{Type: "action", Tool: v.Tool, Input: v.Input, Thought: v.Thought}
	case FinalAnswer:
		return reactResult{Type: "final_answer", Text: v.Text}
	}
	return reactResult{Type: "unknown"}
}

func TestParseReActGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/react/*.txt")
	if err != nil || len(files) < 12 {
		t.Fatalf("want >= 12 golden inputs, got %d (%v)", len(files), err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".txt")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(toResult(ParseReAct(string(raw))), "", "  ")
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".txt") + ".json"
			testutil.Golden(t, golden, got)
		})
	}
}

func FuzzParseReAct(f *testing.F) {
	files, _ := filepath.Glob("testdata/react/*.txt")
	for _, in := range files {
		if b, err := os.ReadFile(in); err == nil {
			f.Add(string(b))
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParseReAct(s)
		if (st == nil) == (err == nil) {
			t.Fatalf("want exactly one of step/error, got %#v, %v", st, err)
		}
	})
}
