// Package prompts builds model prompts for each Duo feature; package
// modeloutput cleans and parses what the models answer.
//
// Every model behind the appliance is a general OpenAI-compatible model
// (Qwen Coder, gpt-oss, Gemma, …), so the prompts here are our own and are
// written for such models rather than for one vendor's chat format:
//
//   - [Completion] builds fill-in-the-middle prompts for code completion,
//     either as a legacy /v1/completions prompt (with the model's FIM
//     tokens or a separate suffix field) or as chat messages for chat-only
//     models; prefix and suffix are trimmed to token budgets.
//   - [Generation] builds chat messages for code generation (v3/v4) from the
//     editor context.
//   - [ChatSystemPrompt] teaches Duo Chat models the ReAct format that
//     modeloutput.ParseReAct accepts.
//   - [Render] and the typed template functions ([CommitMessage],
//     [MergeRequestSummary], …) build the /v1/prompts/<id> features; every
//     [Feature] has its own [Settings] (max_tokens, temperature, stop).
//
// Token counts are estimated as bytes/4 ([EstimateTokens]); that is
// deliberately rough and errs on the side of shorter prompts for code.
package prompts
