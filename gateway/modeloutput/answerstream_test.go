package modeloutput

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// runAnswerStream feeds parts to an AnswerStream and returns what each
// Write returned, what Close returned and whether anything was streamed.
func runAnswerStream(parts []string) (writes []string, closed string, streamed bool) {
	var a AnswerStream
	for _, p := range parts {
		writes = append(writes, a.Write(p))
	}
	closed = a.Close()
	return writes, closed, a.Streamed()
}

// byteParts splits s into single bytes (the worst split a model can do).
func byteParts(s string) []string {
	out := make([]string, len(s))
	for i := range len(s) {
		out[i] = s[i : i+1]
	}
	return out
}

func TestAnswerStream(t *testing.T) {
	tests := []struct {
		name  string
		parts []string
		// want is the whole streamed answer; "" means nothing is streamed
		// (the caller parses the reply).
		want string
		// early is what must have been streamed before the last part.
		early string
	}{
		{"marker answer streams after the marker",
			[]string{"Thought: I know this.\n", "Final Answer: GitLab ", "runners ", "run jobs.", "\nThey are agents."},
			"GitLab runners run jobs.\nThey are agents.", "GitLab runners run jobs."},
		{"split marker is held", []string{"Thought: x\nFinal Ans", "wer: ", "Yes"}, "Yes", ""},
		{"bold markers", []string{"**Thought:** x\n**Final Answer:** ", "Bold ", "answer"}, "Bold answer", "Bold"},
		{"final answer first", []string{"Final Answer:", " Hi ", "there"}, "Hi there", "Hi"},
		{"plain first line streams", []string{"Sure, ", "merge requests ", "are reviews.\n", "More."}, "Sure, merge requests are reviews.\nMore.", "Sure, merge requests are reviews."},
		{"a plain first line streams at once", []string{"Sure, ", "it is."}, "Sure, it is.", "Sure,"},
		{"a possible marker start is held", []string{"Fin", "ally, yes."}, "Finally, yes.", ""},
		{"a possible marker line is held", []string{"Th", "ought: x\nAction: issue_reader\nAction Input: #1"}, "", ""},
		{"action", []string{"Thought: I need the issue.\n", "Action: issue_reader\n", "Action Input: #1"}, "", ""},
		{"lone thought", []string{"Thought: I know.\n\n", "The answer is 42."}, "", ""},
		{"json step", []string{`{"action": "issue_reader",`, ` "action_input": "#1"}`}, "", ""},
		{"fenced block", []string{"``", "`json\n{\"action\":\"x\",\"action_input\":\"y\"}\n```"}, "", ""},
		{"answer ends at a later action line", []string{"Final Answer: Done.\n", "Action: issue_reader\nAction Input: #1"}, "Done.", "Done."},
		{"answer ends at an invented observation", []string{"Final Answer: Done.\nObser", "vation: fake"}, "Done.", "Done."},
		{"repeated final marker dropped", []string{"Final Answer: one\n", "Final Answer: two"}, "one\ntwo", "one"},
		{"list items are not markers", []string{"Final Answer: Steps:\n- Action: click Save\n", "- Observation: it works"}, "Steps:\n- Action: click Save\n- Observation: it works", "Steps:\n- Action: click Save"},
		{"think block stripped", []string{"<thi", "nk>secret plan</th", "ink>Thought: ok\nFinal Answer: ", "visible"}, "visible", ""},
		{"reasoning inside an answer", []string{"Final Answer: A ", "<think>hidden", "</think>B"}, "A B", "A"},
		{"orphan closing tag", []string{"Thought: the user wants", " X</think>", "Final Answer: Y"}, "Y", ""},
		// The documented limit: reasoning without its opening tag that
		// reads as prose is shown; what follows </think> still parses.
		{"orphan closing tag after streamed prose", []string{"Okay,", " so</think>", "Final Answer: Y"}, "Okay, so\nY", "Okay, so"},
		{"unclosed reasoning", []string{"<think>still thinking"}, "", ""},
		{"crlf split", []string{"Final Answer: a\r", "\nb"}, "a\nb", "a"},
		{"utf-8 split", []string{"Final Answer: caf\xc3", "\xa9 ok"}, "café ok", "caf"},
		{"empty", []string{""}, "", ""},
		{"prose then action is answered as prose", []string{"I will read the issue.\n", "Action: issue_reader\nAction Input: #1"}, "I will read the issue.", "I will read the issue."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writes, closed, streamed := runAnswerStream(tc.parts)
			got := strings.Join(writes, "") + closed
			if got != tc.want || streamed != (tc.want != "") {
				t.Fatalf("streamed %q (%v), want %q; writes %q close %q", got, streamed, tc.want, writes, closed)
			}
			if early := strings.Join(writes[:len(writes)-1], ""); early != tc.early {
				t.Errorf("before the last delta %q, want %q", early, tc.early)
			}
			if strings.Contains(got, "Final Answer") || strings.Contains(got, "<think>") || strings.Contains(got, "secret") {
				t.Errorf("marker or reasoning leaked: %q", got)
			}
			// The split does not matter.
			whole := strings.Join(tc.parts, "")
			for _, parts := range [][]string{{whole}, byteParts(whole)} {
				w, c, s := runAnswerStream(parts)
				if g := strings.Join(w, "") + c; g != got || s != streamed {
					t.Errorf("split %d: %q (%v), want %q (%v)", len(parts), g, s, got, streamed)
				}
			}
		})
	}
}

// TestAnswerStreamAgreesWithParseReAct checks that streamed answers are
// what ParseReAct finds in the whole reply for well-formed replies.
func TestAnswerStreamAgreesWithParseReAct(t *testing.T) {
	for _, reply := range []string{
		"Thought: simple\nFinal Answer: The **answer**.\n\n```go\nfmt.Println(1)\n```",
		"Final Answer:\n  Indented first line.",
		"Plain answer\nwith two lines.",
		"<think>x</think>\nThought: t\nFinal Answer: after reasoning",
	} {
		_, _, streamed := runAnswerStream([]string{reply})
		w, c, _ := runAnswerStream(byteParts(reply))
		st, err := ParseReAct(reply)
		fa, ok := st.(FinalAnswer)
		if err != nil || !ok || !streamed || strings.Join(w, "")+c != fa.Text {
			t.Errorf("%q: streamed %q, ParseReAct %#v %v", reply, strings.Join(w, "")+c, st, err)
		}
	}
}

func TestCouldBeMarker(t *testing.T) {
	for line, want := range map[string]bool{
		"": true, "T": true, "thou": true, "Thought": true, "Action ": true, "Action In": true, "action_input": true,
		"Final": true, "final ans": true, "FINAL ANSWER **": true, "- Obs": true, "**Act": true,
		"Actionable": false, "Final score": false, "Thoughtful": false, "Sure": false, "1. Thought": false, "Observations": false,
	} {
		if got := couldBeMarker(line, " \t>*#-"); got != want {
			t.Errorf("couldBeMarker(%q) = %v", line, got)
		}
	}
}

func FuzzAnswerStream(f *testing.F) {
	for _, s := range []string{
		"Thought: I know.\nFinal Answer: It is **42**.\nObservation: x",
		"Thought: need\nAction: issue_reader\nAction Input: #1",
		"Plain first line\nAction: x\nAction Input: y\nFinal Answer: z",
		"<think>a</think>Final Answer: b<think>c",
		"reasoning\n</think>\nFinal Answer: b</think>c",
		"Final Answer: a\r\nFinal answer: b\r\n**Thought**: c",
		"```json\n{\"action\":\"x\"}\n```",
		"Final Answer: caf\xc3\xa9 \xe2\x82",
	} {
		f.Add(s, []byte{1, 3, 7, 2})
	}
	f.Fuzz(func(t *testing.T, s string, cuts []byte) {
		if len(s) > 4096 {
			t.Skip("long replies only slow the byte-by-byte split down")
		}
		w, c, streamed := runAnswerStream([]string{s})
		want := strings.Join(w, "") + c
		var parts []string
		rest := s
		for i := 0; rest != ""; i++ {
			n := 1
			if len(cuts) > 0 {
				n = int(cuts[i%len(cuts)])%16 + 1
			}
			n = min(n, len(rest))
			parts = append(parts, rest[:n])
			rest = rest[n:]
		}
		for _, split := range [][]string{parts, byteParts(s)} {
			w, c, st := runAnswerStream(split)
			if got := strings.Join(w, "") + c; got != want || st != streamed {
				t.Fatalf("split into %d: %q (%v), one delta: %q (%v)", len(split), got, st, want, streamed)
			}
		}
		if streamed != (want != "") || strings.Contains(want, "<think>") || strings.Contains(want, "</think>") {
			t.Fatalf("streamed %q", want)
		}
		if utf8.ValidString(s) && !utf8.ValidString(want) {
			t.Fatalf("valid input gave invalid UTF-8 %q", want)
		}
	})
}

// BenchmarkAnswerStream streams a 2048-token answer one token at a time
// (the chat max_tokens), the worst case of re-reading the reply per delta.
func BenchmarkAnswerStream(b *testing.B) {
	for _, word := range []string{" word", " <b>"} {
		deltas := []string{"Thought: t\n", "Final Answer:"}
		for i := range 2048 {
			if i%12 == 11 {
				deltas = append(deltas, "\n")
			}
			deltas = append(deltas, word)
		}
		b.Run(strings.TrimSpace(word), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var a AnswerStream
				for _, d := range deltas {
					a.Write(d)
				}
				a.Close()
			}
		})
	}
}

func FuzzRemoveBlocks(f *testing.F) {
	for _, s := range []string{"<think>a</think>b", "<thinking>a</reasoning>b<think>c", "<think><think>a</think>b</think>", "x</think>", "<thi<think>x</think>nk>y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := removeBlocks(s), reasoningRe.ReplaceAllString(s, ""); got != want {
			t.Fatalf("removeBlocks(%q) = %q, reasoningRe gives %q", s, got, want)
		}
	})
}
