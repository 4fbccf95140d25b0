// Package flowengine runs a parsed v1 flow (flowconfig.Config) on an Agent
// Platform session: deterministic steps, agent tool loops that end with
// final_response_tool, one-off forced tool calls with corrections, and
// routers, all within budgets (model steps per component, tool calls,
// tokens, wall time). Progress goes to the GitLab UI as ui_chat_log
// entries; a flow that exceeds a budget or whose step fails ends FAILED
// with the reason in that log. Flows in the chat and chat-partial
// environments have a person on the other end (humanloop): a write tool
// outside the pre-approved set parks the flow until they decide, and each
// turn ends with INPUT_REQUIRED instead of finishing; ambient flows never
// wait.
package flowengine
