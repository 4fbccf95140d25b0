package sandbox

import (
	"regexp"
	"slices"
	"strings"
)

// The Duo Chat ReAct convention, so that an end-to-end test through the
// real gateway can run a two-step chat with a tool action:
//
//   - it applies when the system prompt contains reactMarker, the reply
//     format line every ReAct prompt with tools has (the gateway's
//     prompts.ChatSystemPrompt writes "Action Input: <the input for the
//     tool>");
//   - when a message after the last user message (the assistant's running
//     transcript) has a line starting with "Observation:", the reply is
//     "Final Answer: Sandbox answer using the observation: <its first
//     words>";
//   - otherwise, when the last user message says "use <tool>" and <tool>
//     is listed in the system prompt as a "- <tool>: …" line, the reply is
//     "Thought: I need to read it.\nAction: <tool>\nAction Input: <the rest
//     of that line>" (the whole message when the rest is empty);
//   - otherwise "Final Answer: Sandbox reply to: <the question's first
//     words>", short like a real model's answer (unpadded, so the demo's
//     chat turn is readable).
//
// ReAct replies are not padded with filler: a real model stops after the
// action (stop sequence "Observation:") or at the end of its answer.
const reactMarker = "Action Input:"

// observationWords is how much of the observation the final answer quotes.
const observationWords = 8

var (
	useToolRe     = regexp.MustCompile(`(?i)\buse[ \t]+([A-Za-z][A-Za-z0-9_]*)`)
	listedToolRe  = regexp.MustCompile(`(?m)^- ([A-Za-z][A-Za-z0-9_]*):`)
	observationRe = regexp.MustCompile(`(?m)^Observation:[ \t]*`)
)

// reactReply returns the ReAct reply for g, or nil when the convention does
// not apply.
func reactReply(g *genRequest) *reply {
	system := systemText(g)
	if !strings.Contains(system, reactMarker) {
		return nil
	}
	last := -1
	for i, m := range g.Messages {
		if m.Role == "user" {
			last = i
		}
	}
	if last < 0 {
		return nil
	}
	for _, m := range g.Messages[last+1:] {
		t := contentText(m.Content)
		if locs := observationRe.FindAllStringIndex(t, -1); len(locs) > 0 {
			words := strings.Fields(t[locs[len(locs)-1][1]:])
			words = words[:min(len(words), observationWords)]
			return reactText(g, "Final Answer: Sandbox answer using the observation: "+strings.Join(words, " "))
		}
	}
	var tools []string
	for _, m := range listedToolRe.FindAllStringSubmatch(system, -1) {
		tools = append(tools, m[1])
	}
	question := contentText(g.Messages[last].Content)
	for _, loc := range useToolRe.FindAllStringSubmatchIndex(question, -1) {
		name := question[loc[2]:loc[3]]
		if !slices.Contains(tools, name) {
			continue
		}
		input, _, _ := strings.Cut(question[loc[1]:], "\n")
		input = strings.TrimSpace(input)
		if input == "" {
			input = strings.TrimSpace(question)
		}
		return reactText(g, "Thought: I need to read it.\nAction: "+name+"\nAction Input: "+input)
	}
	words := strings.Fields(question)
	words = words[:min(len(words), answerWords)]
	return reactText(g, "Final Answer: Sandbox reply to: "+strings.Join(words, " "))
}

// answerWords is how much of the question a plain ReAct answer repeats.
const answerWords = 12

// reactText makes a reply of exactly text: its "words" are split at
// spaces only, so newlines survive the space-joined unary and streamed
// forms; a request limit shorter than the text cuts it (finish "length").
func reactText(g *genRequest, text string) *reply {
	_, prompt := g.lastUser()
	r := &reply{words: strings.Split(text, " "), finish: "stop", promptTokens: prompt}
	if n := g.limit(); len(r.words) > n {
		r.words, r.finish = r.words[:n], "length"
	}
	return r
}
