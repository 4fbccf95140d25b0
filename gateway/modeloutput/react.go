package modeloutput

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
)

// Step is the result of ParseReAct: an Action or a FinalAnswer.
type Step interface{ isStep() }

// Action asks GitLab to run a tool (an "action" event of /v2/chat/agent).
type Action struct {
	Tool    string
	Input   string
	Thought string
}

// FinalAnswer is the answer to show the user ("final_answer_delta" events).
type FinalAnswer struct {
	Text string
}

func (Action) isStep()      {}
func (FinalAnswer) isStep() {}

// ErrEmptyOutput is returned for model output with no text.
var ErrEmptyOutput = errors.New("prompts: empty model output")

// TruncatedError reports model output that stopped before an action or an
// answer was complete (max_tokens reached, connection cut). Partial is the
// text so far; callers may ask the model again or show an error.
type TruncatedError struct {
	Reason  string
	Partial string
}

func (e *TruncatedError) Error() string { return "prompts: truncated ReAct output: " + e.Reason }

// markerRe finds ReAct markers at the start of a line, tolerating case,
// spacing, underscores, Markdown bold/headings and list bullets.
var markerRe = regexp.MustCompile(`(?im)^[ \t>*#\-]*(thought|action[ \t_-]*input|action|final[ \t_-]*answer|observation)[ \t]*\**[ \t]*:[ \t]*\**[ \t]*`)

type marker struct {
	kind       string // thought, action, input, final, observation
	start, end int    // of the marker itself
}

func findMarkers(s string) []marker {
	var ms []marker
	for _, loc := range markerRe.FindAllStringSubmatchIndex(s, -1) {
		name := strings.ToLower(s[loc[2]:loc[3]])
		kind := "thought"
		switch {
		case strings.HasPrefix(name, "final"):
			kind = "final"
		case strings.HasPrefix(name, "observation"):
			kind = "observation"
		case strings.HasPrefix(name, "action") && strings.HasSuffix(name, "input"):
			kind = "input"
		case strings.HasPrefix(name, "action"):
			kind = "action"
		}
		ms = append(ms, marker{kind, loc[0], loc[1]})
	}
	return ms
}

// ParseReAct parses one Duo Chat model reply. It accepts the
// Thought/Action/Action Input format (any casing, spacing, Markdown bold),
// JSON action objects (bare or in a fenced block, LangChain
// {"action","action_input"} or {"tool","tool_input"} shapes), and final
// answers with or without a "Final Answer:" marker. When the reply holds
// several actions the first wins; text after the first action (an invented
// Observation) is ignored. Reasoning blocks (<think>…</think>) are skipped.
// An Action whose input or name is missing, an unclosed JSON object or
// reasoning block, or a lone Thought yields a *TruncatedError.
func ParseReAct(out string) (Step, error) {
	s := strings.ReplaceAll(out, "\r\n", "\n")
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "<think>") && !strings.Contains(t, "</think>") {
		return nil, &TruncatedError{Reason: "reasoning block not closed", Partial: out}
	}
	s = reasoningRe.ReplaceAllString(s, "")
	if i := strings.Index(s, "</think>"); i >= 0 {
		s = s[i+len("</think>"):]
	}
	if strings.TrimSpace(s) == "" {
		return nil, ErrEmptyOutput
	}
	ms := findMarkers(s)
	firstAct, firstFinal := -1, -1
	for i, m := range ms {
		if m.kind == "action" && firstAct < 0 {
			firstAct = i
		}
		if m.kind == "final" && firstFinal < 0 {
			firstFinal = i
		}
	}
	if firstAct >= 0 && (firstFinal < 0 || firstAct < firstFinal) {
		return parseTextAction(s, ms, firstAct)
	}
	if firstFinal >= 0 {
		text := strings.TrimSpace(s[ms[firstFinal].end:])
		text = cutAtMarker(text, "observation")
		if text == "" {
			return nil, &TruncatedError{Reason: "empty final answer", Partial: out}
		}
		return FinalAnswer{Text: text}, nil
	}
	if st, ok, err := jsonStep(s); ok || err != nil {
		return st, err
	}
	// No action and no marked answer.
	if len(ms) > 0 && ms[0].kind == "thought" && strings.TrimSpace(s[:ms[0].start]) == "" {
		body := strings.TrimSpace(s[ms[0].end:])
		body = cutAtMarker(body, "observation")
		// "Thought: I know the answer.\n\n<answer>" — the answer follows
		// the first paragraph; a lone thought is a cut-off step.
		if i := strings.Index(body, "\n\n"); i >= 0 && strings.TrimSpace(body[i:]) != "" {
			return FinalAnswer{Text: strings.TrimSpace(body[i:])}, nil
		}
		return nil, &TruncatedError{Reason: "thought without action or answer", Partial: out}
	}
	return FinalAnswer{Text: strings.TrimSpace(cutAtMarker(s, "observation"))}, nil
}

// cutAtMarker cuts s at the first line-start marker of the given kind.
func cutAtMarker(s, kind string) string {
	for _, m := range findMarkers(s) {
		if m.kind == kind {
			return strings.TrimSpace(s[:m.start])
		}
	}
	return s
}

func parseTextAction(s string, ms []marker, ai int) (Step, error) {
	var thought string
	for i := ai - 1; i >= 0; i-- {
		if ms[i].kind == "thought" {
			thought = strings.TrimSpace(s[ms[i].end:ms[i+1].start])
			break
		}
	}
	if thought == "" && ai == 0 {
		// Prose before "Action:" without a Thought marker is the thought.
		thought = strings.TrimSpace(s[:ms[ai].start])
	}
	end := len(s)
	if ai+1 < len(ms) {
		end = ms[ai+1].start
	}
	tool := strings.TrimSpace(s[ms[ai].end:end])
	input, hasInput := "", false
	if ai+1 < len(ms) && ms[ai+1].kind == "input" {
		hasInput = true
		iend := len(s)
		if ai+2 < len(ms) {
			iend = ms[ai+2].start
		}
		input = s[ms[ai+1].end:iend]
	} else if nl := strings.IndexByte(tool, '\n'); nl >= 0 {
		// "Action: tool\n{json}" or a fenced JSON action.
		rest := tool[nl+1:]
		tool = strings.TrimSpace(tool[:nl])
		if st, ok, err := jsonStep(rest); ok || err != nil {
			if a, isA := st.(Action); isA && a.Thought == "" {
				a.Thought = thought
				return a, nil
			}
			return st, err
		}
		input, hasInput = rest, strings.TrimSpace(rest) != ""
	}
	if !hasInput {
		// "Action Input:" written before "Action:".
		for j := ai - 1; j >= 0; j-- {
			if ms[j].kind == "input" {
				input, hasInput = s[ms[j].end:ms[j+1].start], true
				break
			}
		}
	}
	if st, ok, err := jsonStep(tool); ok || err != nil {
		if a, isA := st.(Action); isA && a.Thought == "" {
			a.Thought = thought
			return a, nil
		}
		return st, err
	}
	tool = cleanToolName(tool)
	if tool == "" {
		return nil, &TruncatedError{Reason: "action without a tool name", Partial: s}
	}
	if strings.EqualFold(strings.ReplaceAll(tool, "_", " "), "final answer") {
		return FinalAnswer{Text: cleanInput(input)}, nil
	}
	if !hasInput {
		return nil, &TruncatedError{Reason: "action without input", Partial: s}
	}
	return Action{Tool: tool, Input: cleanInput(input), Thought: thought}, nil
}

func cleanToolName(t string) string {
	t = strings.TrimSpace(t)
	if i := strings.IndexByte(t, '\n'); i >= 0 {
		t = t[:i]
	}
	t = strings.Trim(t, "`*\"'[]()<> \t.")
	return strings.TrimSpace(t)
}

// cleanInput unwraps a fenced block or a JSON string and trims.
func cleanInput(in string) string {
	t := strings.TrimSpace(in)
	if strings.HasPrefix(t, "```") {
		t = strings.TrimSpace(stripFences(t, false))
	}
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		var u string
		if json.Unmarshal([]byte(t), &u) == nil {
			return strings.TrimSpace(u)
		}
	}
	if len(t) >= 2 && t[0] == '`' && t[len(t)-1] == '`' && !strings.Contains(t[1:len(t)-1], "`") {
		t = t[1 : len(t)-1]
	}
	return t
}

// jsonStep finds a JSON object describing an action or final answer in s
// (bare, or in a fenced block). ok is false when s has no such object; an
// unclosed object yields a *TruncatedError.
func jsonStep(s string) (Step, bool, error) {
	i := strings.IndexByte(s, '{')
	if i < 0 {
		return nil, false, nil
	}
	// Only an object that opens the text or a fenced block counts: a JSON
	// example inside a prose answer is not an action.
	before := strings.TrimRight(s[:i], " \t\n")
	if before != "" {
		nl := strings.LastIndexByte(before, '\n')
		if !isFence(before[nl+1:]) {
			return nil, false, nil
		}
	}
	dec := json.NewDecoder(strings.NewReader(s[i:]))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		if looksLikeJSONAction(s[i:]) && strings.Contains(err.Error(), "EOF") {
			return nil, false, &TruncatedError{Reason: "unterminated JSON action", Partial: s}
		}
		return nil, false, nil
	}
	str := func(keys ...string) (string, bool) {
		for _, k := range keys {
			for ok, v := range obj {
				if strings.EqualFold(ok, k) {
					switch x := v.(type) {
					case string:
						return x, true
					case nil:
						return "", true
					default:
						b, _ := json.Marshal(x)
						return string(b), true
					}
				}
			}
		}
		return "", false
	}
	tool, hasTool := str("action", "tool", "tool_name")
	if !hasTool {
		if _, args := str("arguments"); args {
			tool, hasTool = str("name")
		}
	}
	input, _ := str("action_input", "tool_input", "input", "arguments", "args", "parameters", "query")
	thought, _ := str("thought", "thoughts", "reasoning")
	if ans, ok := str("final_answer", "answer"); ok && !hasTool {
		return FinalAnswer{Text: strings.TrimSpace(ans)}, true, nil
	}
	if !hasTool {
		return nil, false, nil
	}
	tool = cleanToolName(tool)
	if strings.EqualFold(strings.ReplaceAll(tool, "_", " "), "final answer") {
		return FinalAnswer{Text: strings.TrimSpace(input)}, true, nil
	}
	if tool == "" {
		return nil, false, &TruncatedError{Reason: "action without a tool name", Partial: s}
	}
	return Action{Tool: tool, Input: strings.TrimSpace(input), Thought: strings.TrimSpace(thought)}, true, nil
}

var jsonActionRe = regexp.MustCompile(`"(?i:action|tool|tool_name|final_answer)"\s*:`)

func looksLikeJSONAction(s string) bool { return jsonActionRe.MatchString(s) }
