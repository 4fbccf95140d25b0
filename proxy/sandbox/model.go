package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultMaxTokens is the reply length (in words; 1 token ≈ 1 word) when a
// request sets no max_tokens.
const DefaultMaxTokens = 16

// maxReplyTokens bounds any reply, so a request cannot make the sandbox
// allocate without limit.
const maxReplyTokens = 1 << 16

// filler pads replies to their length.
var filler = strings.Fields("this sandbox reply is generated locally and deterministically for tests benchmarks " +
	"and the demo it is not confidential and no model was consulted")

// message is a chat or Anthropic message; content is a string or an array
// of parts.
type message struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls []struct {
		ID       string `json:"id"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tool_calls"`
	ToolCallID string `json:"tool_call_id"` // a tool result's call
}

// part is a content part of either API.
type part struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
	Source *struct {
		Type string `json:"type"`
	} `json:"source"`
}

// tool is an OpenAI tool or an Anthropic tool definition.
type tool struct {
	Type     string `json:"type"`
	Function *struct {
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"function"`
	Name        string          `json:"name"`         // Anthropic
	InputSchema json.RawMessage `json:"input_schema"` // Anthropic
}

func (t tool) name() string {
	if t.Function != nil {
		return t.Function.Name
	}
	return t.Name
}

func (t tool) schema() json.RawMessage {
	if t.Function != nil {
		return t.Function.Parameters
	}
	return t.InputSchema
}

// genRequest is the union of the generation requests' fields the model
// reads (chat, legacy completions, Anthropic messages), after decryption.
type genRequest struct {
	Model               string          `json:"model"`
	Messages            []message       `json:"messages"`
	System              json.RawMessage `json:"system"`
	Prompt              json.RawMessage `json:"prompt"`
	Suffix              *string         `json:"suffix"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stream              bool            `json:"stream"`
	Tools               []tool          `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	CacheSalt           *string         `json:"cache_salt"`
}

// toolCall is a generated tool call.
type toolCall struct {
	ID, Name, Args string
}

// reply is what the deterministic model says.
type reply struct {
	words        []string // one token each
	tool         *toolCall
	finish       string // "stop", "length" or "tool_calls"
	promptTokens int
}

func (r *reply) completionTokens() int {
	if r.tool != nil {
		return len(argFragments(r.tool.Args))
	}
	return len(r.words)
}

// text returns the reply text.
func (r *reply) text() string { return strings.Join(r.words, " ") }

// contentText flattens message content (string or parts) to its text.
func contentText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []part
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Text != "" {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// explicitLimit reports whether the request set a length limit; the
// sandbox always fills a reply to the limit, so it then ends with
// finish_reason "length", as a model cut off by max_tokens does.
func (g *genRequest) explicitLimit() bool {
	return g.MaxTokens != nil || g.MaxCompletionTokens != nil
}

// limit returns the requested reply length.
func (g *genRequest) limit() int {
	n := DefaultMaxTokens
	if g.MaxCompletionTokens != nil {
		n = *g.MaxCompletionTokens
	} else if g.MaxTokens != nil {
		n = *g.MaxTokens
	}
	return max(1, min(n, maxReplyTokens))
}

// lastUser returns the text of the last user message and a rough prompt
// token count (words over all messages, system and prompt).
func (g *genRequest) lastUser() (string, int) {
	last, words := "", len(strings.Fields(contentText(g.System)))
	for _, m := range g.Messages {
		t := contentText(m.Content)
		words += len(strings.Fields(t))
		if m.Role == "user" {
			last = t
		}
	}
	return last, words
}

// head returns the first n characters of s (whole runes).
func head(s string, n int) string {
	i := 0
	for c := 0; i < len(s) && c < n; c++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i]
}

// tail returns the last n characters of s (whole runes).
func tail(s string, n int) string {
	i := len(s)
	for c := 0; i > 0 && c < n; c++ {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[i:]
}

// compose makes a reply of exactly limit words: the lead words (cut if
// longer, finish "length") then filler chosen by seed (finish "stop").
func compose(lead []string, seed string, limit int) *reply {
	r := &reply{finish: "stop"}
	if len(lead) >= limit {
		r.words = lead[:limit]
		if len(lead) > limit {
			r.finish = "length"
		}
		return r
	}
	h := sha256.Sum256([]byte(seed))
	start := int(binary.BigEndian.Uint32(h[:4]) % uint32(len(filler)))
	r.words = make([]string, 0, limit)
	r.words = append(r.words, lead...)
	for i := 0; len(r.words) < limit; i++ {
		r.words = append(r.words, filler[(start+i)%len(filler)])
	}
	return r
}

// chatReply runs the model on a chat or Anthropic request.
func chatReply(g *genRequest) *reply {
	last, prompt := g.lastUser()
	tc := reviewCall(g) // review.go's flow conventions
	if tc == nil {
		tc = workflowCall(g) // workflows.go's stand-ins
	}
	if tc == nil {
		tc = pickTool(g, last)
	}
	if tc != nil {
		return &reply{tool: tc, finish: "tool_calls", promptTokens: prompt}
	}
	if r := reactReply(g); r != nil {
		return r
	}
	if r := toolResultsReply(g); r != nil && len(g.Tools) > 0 {
		r.promptTokens = prompt
		return r
	}
	if tc := finalResponseCall(g, last); tc != nil {
		return &reply{tool: tc, finish: "tool_calls", promptTokens: prompt}
	}
	lead := append([]string{"Sandbox", "reply", "to:"}, strings.Fields(head(last, 40))...)
	r := compose(lead, last, g.limit())
	r.promptTokens = prompt
	if g.explicitLimit() {
		r.finish = "length"
	}
	return r
}

// completionReply runs the model on a legacy completion: without suffix it
// continues the prompt; with suffix it produces a deterministic middle.
func completionReply(g *genRequest) *reply {
	prompt := contentText(g.Prompt)
	if prompt == "" && len(g.Prompt) > 0 && g.Prompt[0] == '[' {
		var list []string
		if json.Unmarshal(g.Prompt, &list) == nil && len(list) > 0 {
			prompt = list[0]
		}
	}
	pt := len(strings.Fields(prompt))
	if g.Suffix != nil {
		pt += len(strings.Fields(*g.Suffix))
		h := sha256.Sum256([]byte(prompt + "\x00" + *g.Suffix))
		mid := []string{"/*", "sandbox", "fill-in-the-middle", hex.EncodeToString(h[:4]), "*/"}
		r := compose(mid, "", min(g.limit(), len(mid)))
		r.promptTokens = pt
		return r
	}
	lead := append([]string{"Sandbox", "completion", "after:"}, strings.Fields(tail(prompt, 40))...)
	r := compose(lead, prompt, g.limit())
	r.promptTokens = pt
	if g.explicitLimit() {
		r.finish = "length"
	}
	return r
}

// pickTool returns a tool call if the request forces one (tool_choice
// "required" or a named function) or the last user message says
// "call <tool name>".
func pickTool(g *genRequest, last string) *toolCall {
	if len(g.Tools) == 0 || string(g.ToolChoice) == `"none"` {
		return nil
	}
	var chosen *tool
	var forced struct {
		Type     string `json:"type"`
		Name     string `json:"name"` // Anthropic {"type":"tool","name":…}
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(g.ToolChoice, &forced) == nil {
		if forced.Function.Name == "" {
			forced.Function.Name = forced.Name
		}
		for i := range g.Tools {
			if g.Tools[i].name() == forced.Function.Name && forced.Function.Name != "" {
				chosen = &g.Tools[i]
			}
		}
		if chosen == nil && forced.Type == "any" {
			chosen = &g.Tools[0]
		}
	} else if string(g.ToolChoice) == `"required"` {
		chosen = &g.Tools[0]
	}
	fill := fillAll
	if chosen == nil {
		// A named tool in a loop gets only its required arguments, so
		// optional ones (a project id) keep their defaults.
		chosen, fill = nextNamedTool(g, last), fillRequired
	}
	if chosen == nil {
		return nil
	}
	name := chosen.name()
	h := sha256.Sum256([]byte(name + "\x00" + last))
	return &toolCall{ID: "call_sandbox_" + hex.EncodeToString(h[:6]), Name: name, Args: toolArgs(chosen.schema(), last, fill)}
}

// nextNamedTool drives a tool loop deterministically: the last user
// message names tools as "call <name>"; each turn calls the first named
// tool (in the order the message names them) not yet called since that
// message, and nil once all have been.
func nextNamedTool(g *genRequest, last string) *tool {
	lower := strings.ToLower(last)
	called := map[string]bool{}
	for i := len(g.Messages) - 1; i >= 0 && g.Messages[i].Role != "user"; i-- {
		for _, c := range g.Messages[i].ToolCalls {
			called[c.Function.Name] = true
		}
	}
	var chosen *tool
	at := len(lower) + 1
	for i := range g.Tools {
		n := g.Tools[i].name()
		if n == "" || called[n] {
			continue
		}
		// The earliest whole-name mention wins ("call create_work_item_note"
		// does not name create_work_item).
		if j := mention(lower, "call "+strings.ToLower(n)); j >= 0 && j < at {
			chosen, at = &g.Tools[i], j
		}
	}
	return chosen
}

// mention is the index of the first occurrence of phrase in s that ends
// at a word boundary, or -1.
func mention(s, phrase string) int {
	for off := 0; ; {
		j := strings.Index(s[off:], phrase)
		if j < 0 {
			return -1
		}
		end := off + j + len(phrase)
		if end == len(s) || !isNameByte(s[end]) {
			return off + j
		}
		off = end
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// toolResultsReply answers after tool results: the model "uses" the last
// result (its first words), so a tool loop ends deterministically.
func toolResultsReply(g *genRequest) *reply {
	for i := len(g.Messages) - 1; i >= 0 && g.Messages[i].Role != "user"; i-- {
		if g.Messages[i].Role == "tool" {
			words := strings.Fields(contentText(g.Messages[i].Content))
			lead := append([]string{"Sandbox", "answer", "from", "the", "tool", "results:"}, words[:min(len(words), 8)]...)
			return &reply{words: lead, finish: "stop"}
		}
	}
	return nil
}

// firstNumber is the first whole number in s (e.g. the 1 of "issue #1").
func firstNumber(s string) (int, bool) {
	start := -1
	for i := 0; i <= len(s); i++ {
		digit := i < len(s) && s[i] >= '0' && s[i] <= '9'
		if digit && start < 0 {
			start = i
		}
		if !digit && start >= 0 {
			if n, err := strconv.Atoi(s[start:i]); err == nil && i-start < 9 {
				return n, true
			}
			start = -1
		}
	}
	return 0, false
}

// argFill says which schema properties toolArgs fills.
type argFill int

const (
	fillAll      argFill = iota // every property
	fillRequired                // only the required ones, when listed
)

// toolArgs fills the schema's properties with deterministic values: strings
// get a snippet of the user's message, numbers 42, booleans true.
func toolArgs(schema json.RawMessage, last string, fill argFill) string {
	var s struct {
		Properties map[string]struct {
			Type any `json:"type"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	_ = json.Unmarshal(schema, &s)
	args := map[string]any{}
	for name, p := range s.Properties {
		if fill == fillRequired && len(s.Required) > 0 && !slices.Contains(s.Required, name) {
			continue
		}
		t, _ := p.Type.(string)
		switch t {
		case "number", "integer":
			args[name] = 42
			if n, ok := firstNumber(last); ok {
				args[name] = n
			}
		case "boolean":
			args[name] = true
		case "array":
			args[name] = []string{"sandbox"}
		case "object":
			args[name] = map[string]string{"sandbox": "value"}
		default:
			args[name] = "sandbox: " + head(last, 24)
		}
	}
	if len(args) == 0 {
		args["input"] = "sandbox: " + head(last, 24)
	}
	b, _ := json.Marshal(args) // maps marshal with sorted keys: deterministic
	return string(b)
}

// argFragments splits tool arguments into up to four pieces at rune
// boundaries, as a model streams them.
func argFragments(args string) []string {
	const pieces = 4
	out := make([]string, 0, pieces)
	size := max(1, (len(args)+pieces-1)/pieces)
	for len(args) > 0 {
		n := min(size, len(args))
		for n < len(args) && !utf8.RuneStart(args[n]) {
			n++
		}
		out = append(out, args[:n])
		args = args[n:]
	}
	return out
}

// embedding returns a deterministic unit vector of dims for input.
func embedding(input string, dims int) []float32 {
	v := make([]float32, dims)
	seed := sha256.Sum256([]byte(input))
	var block [36]byte
	copy(block[:32], seed[:])
	var sum float64
	for i := 0; i < dims; i += 8 {
		binary.BigEndian.PutUint32(block[32:], uint32(i/8))
		h := sha256.Sum256(block[:])
		for j := 0; j < 8 && i+j < dims; j++ {
			u := binary.BigEndian.Uint32(h[4*j:])
			f := float64(u)/float64(math.MaxUint32)*2 - 1
			v[i+j] = float32(f)
			sum += f * f
		}
	}
	if norm := math.Sqrt(sum); norm > 0 {
		for i := range v {
			v[i] = float32(float64(v[i]) / norm)
		}
	}
	return v
}

// transcript returns the deterministic transcription of an audio file.
func transcript(audio []byte) string {
	h := sha256.Sum256(audio)
	words := []string{"Sandbox", "transcription", hex.EncodeToString(h[:4]) + ":"}
	r := compose(words, string(h[:]), len(words)+8)
	return r.text()
}
