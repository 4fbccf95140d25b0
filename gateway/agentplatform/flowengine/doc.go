// Package flowengine runs a parsed v1 flow (flowconfig.Config) on an Agent
// Platform session: deterministic steps, agent tool loops that end with
// final_response_tool, one-off forced tool calls with corrections, and
// routers, all within budgets (model steps per component, tool calls,
// tokens, wall time). Progress goes to the GitLab UI as ui_chat_log
// entries; a flow that exceeds a budget or whose step fails ends FAILED
// with the reason in that log.
package flowengine
