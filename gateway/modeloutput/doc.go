// Package modeloutput cleans and parses model output for GitLab:
//
//   - [Clean] strips Markdown fences, reasoning blocks and echoes of the
//     code around the cursor from completion and generation output.
//   - [StreamCleaner] does the same for streamed output, delta by delta.
//   - [ParseReAct] turns a Duo Chat model reply into an [Action] or a
//     [FinalAnswer]; [AnswerStream] streams the final answer while the
//     model writes it.
//
// The prompts that ask for this output are built by package prompts.
package modeloutput
