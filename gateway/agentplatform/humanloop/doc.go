// Package humanloop is the person's side of an interactive workflow
// (Agentic Chat, flows whose agents ask for tool approval, and the
// turn-taking of chat and chat-partial flows): the tool calls waiting for
// an approval, the decision a startRequest carries
// for them, the events a person queued while no session ran the workflow,
// and the statuses a waiting workflow shows. Flows keep the state it
// describes in their own checkpoints.
package humanloop
