// Package chat is Agentic Chat (workflow definition "chat"): one
// tool-calling agent that streams its answer to the GitLab UI as
// newCheckpoint actions, reads GitLab through the executor, runs write
// tools only after the user approves them, and waits for the next message
// with INPUT_REQUIRED. Tool names are GitLab's (the UI keys icons on them);
// descriptions and the prompt are this project's own text.
package chat
