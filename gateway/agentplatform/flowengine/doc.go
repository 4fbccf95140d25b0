// Package flowengine runs a parsed v1 flow (flowconfig.Config) on an Agent
// Platform session: deterministic steps, agent tool loops that end with
// final_response_tool, one-off forced tool calls with corrections, and
// routers, all within budgets (model steps per component, tool calls,
// tokens, wall time). Progress goes to the GitLab UI as ui_chat_log
// entries; a flow that exceeds a budget or whose step fails ends FAILED
// with the reason in that log.
//
// Tool approval follows GitLab's AgentComponent source (not the older spec
// text, which tied it to the environment): an AgentComponent with
// require_tool_approval parks the flow before a tool call until the person
// decides (humanloop), unless the tool is in its pre_approved_tools, its
// privilege is pre-approved for the workflow, the client lists it, or the
// person approved it for the rest of the workflow; this holds in every
// environment. Other components, and agents without the setting, never
// wait. A rejection with a message (GitLab's MODIFY) is feedback for the
// model. max_cycles warns an agent near its limit and then asks for its
// final answer, within the engine's own step budget. Flows in the chat and
// chat-partial environments have a person taking turns: each turn ends
// with INPUT_REQUIRED instead of finishing; ambient flows finish.
package flowengine
