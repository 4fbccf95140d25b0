// Package agentplatform is the appliance's Duo Agent Platform service: the
// gRPC DuoWorkflow server (transport limits, GitLab authentication, unary
// RPCs, health) and the ExecuteWorkflow session engine that runs flows
// (package flow) against the client's executor.
//
// Subpackages: contract (the wire contract), flow (the engine ↔ flow seam),
// gitlabapi (GitLab through the executor), chat (Agentic Chat).
package agentplatform
