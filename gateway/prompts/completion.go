package prompts

import (
	"strings"
)

// FIMFormat selects how a fill-in-the-middle prompt is written.
type FIMFormat string

// FIM formats. FIMChat is for chat-only models (most general models);
// the others build a legacy /v1/completions prompt.
const (
	// FIMChat asks a chat model, with chat messages, for the missing code.
	FIMChat FIMFormat = "chat"
	// FIMSuffixField sends prompt = prefix and the OpenAI "suffix" field.
	FIMSuffixField FIMFormat = "suffix"
	// FIMQwen uses <|fim_prefix|>…<|fim_suffix|>…<|fim_middle|> (Qwen2.5-Coder, Qwen3-Coder).
	FIMQwen FIMFormat = "qwen"
	// FIMStarCoder uses <fim_prefix>…<fim_suffix>…<fim_middle> (StarCoder2, CodeGemma uses FIMCodeGemma).
	FIMStarCoder FIMFormat = "starcoder"
	// FIMCodeGemma uses <|fim_prefix|>…<|fim_suffix|>…<|fim_middle|> with Gemma's stop tokens.
	FIMCodeGemma FIMFormat = "codegemma"
	// FIMCodeLlama uses "<PRE> … <SUF>… <MID>".
	FIMCodeLlama FIMFormat = "codellama"
	// FIMDeepSeek uses DeepSeek-Coder's fim begin/hole/end tokens.
	FIMDeepSeek FIMFormat = "deepseek"
	// FIMCodestral uses [SUFFIX]…[PREFIX]… (Codestral).
	FIMCodestral FIMFormat = "codestral"
)

type fimSpec struct {
	pre, suf, mid string
	suffixFirst   bool
	stop          []string
}

var fimSpecs = map[FIMFormat]fimSpec{
	FIMQwen:      {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", false, []string{"<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|im_end|>"}},
	FIMStarCoder: {"<fim_prefix>", "<fim_suffix>", "<fim_middle>", false, []string{"<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>"}},
	FIMCodeGemma: {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", false, []string{"<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"}},
	FIMCodeLlama: {"<PRE> ", " <SUF>", " <MID>", false, []string{"<EOT>", "<PRE>", "<SUF>", "<MID>"}},
	FIMDeepSeek:  {"<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", false, []string{"<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"}},
	FIMCodestral: {"[PREFIX]", "[SUFFIX]", "", true, []string{"[INST]", "[/INST]", "[PREFIX]", "[SUFFIX]"}},
}

// CompletionInput is the editor state of a code completion request
// (current_file of POST /v2/code/completions).
type CompletionInput struct {
	FileName     string // current_file.file_name
	LanguageHint string // language_identifier, when the client sent one
	Prefix       string // current_file.content_above_cursor
	Suffix       string // current_file.content_below_cursor
	Format       FIMFormat
	// Related holds extra context (open files, snippets: the request's
	// context[]) already rendered as text. Only the chat format uses it,
	// trimmed to Budget.Context: raw FIM prompts have no neutral place for
	// it.
	Related []string
}

// Budget is the token budget of a completion prompt. Zero fields take
// the defaults (DefaultBudget).
type Budget struct {
	Prefix    int // tokens of content above the cursor
	Suffix    int // tokens of content below the cursor
	MaxTokens int // max_tokens of the completion
	Context   int // tokens of related code (chat format only)
}

// DefaultBudget keeps prompts small: completion latency grows with the
// prompt and the code near the cursor matters most.
var DefaultBudget = Budget{Prefix: 1536, Suffix: 512, MaxTokens: 128, Context: 1024}

// CompletionPrompt is what to send to the model for a code completion.
// With Format FIMChat, Messages is set (POST /chat/completions); otherwise
// Prompt and, for FIMSuffixField, Suffix are set (POST /completions).
type CompletionPrompt struct {
	Format   FIMFormat
	Language Language
	Prompt   string
	Suffix   string
	Messages []Message
	Settings Settings
	// Prefix and SuffixKept are the trimmed editor contents, for Clean.
	Prefix, SuffixKept string
}

// Completion builds a fill-in-the-middle prompt. Prefix and suffix are
// trimmed to the budget keeping the lines nearest the cursor.
func Completion(in CompletionInput, b Budget) CompletionPrompt {
	if b.Prefix <= 0 {
		b.Prefix = DefaultBudget.Prefix
	}
	if b.Suffix <= 0 {
		b.Suffix = DefaultBudget.Suffix
	}
	if b.Context <= 0 {
		b.Context = DefaultBudget.Context
	}
	st := mustSettings(CodeCompletions)
	if b.MaxTokens > 0 {
		st.MaxTokens = b.MaxTokens
	}
	lang, _ := DetectLanguage(in.FileName, in.LanguageHint)
	pre := KeepTail(in.Prefix, b.Prefix)
	suf := KeepHead(in.Suffix, b.Suffix)
	out := CompletionPrompt{Format: in.Format, Language: lang, Prefix: pre, SuffixKept: suf}
	switch spec, ok := fimSpecs[in.Format]; {
	case ok:
		if spec.suffixFirst {
			out.Prompt = spec.suf + suf + spec.pre + pre
		} else {
			out.Prompt = spec.pre + pre + spec.suf + suf + spec.mid
		}
		st.Stop = spec.stop
	case in.Format == FIMSuffixField:
		out.Prompt, out.Suffix = pre, suf
	default:
		out.Format = FIMChat
		out.Messages = completionMessages(in.FileName, lang, pre, suf, in.Related, b.Context)
	}
	if st.MaxTokens > 0 && out.Format != FIMChat && st.MaxTokens > 64 {
		// Raw FIM models are fast and ramble after the hole; keep it short.
		st.MaxTokens = 64
	}
	out.Settings = st
	return out
}

// CursorMark is the hole marker of the chat variant; output cleaning strips its echoes.
const CursorMark = "<CURSOR>"

func completionMessages(fileName string, lang Language, pre, suf string, related []string, budget int) []Message {
	var sys strings.Builder
	sys.WriteString("You are a code completion engine inside an editor. ")
	sys.WriteString("You receive a file with the marker " + CursorMark + " at the cursor and reply with the code to insert at the cursor, nothing else.\n")
	sys.WriteString("Rules:\n")
	sys.WriteString("- Output only the inserted code: no explanations, no Markdown, no code fences.\n")
	sys.WriteString("- Do not repeat code that is before or after the cursor.\n")
	sys.WriteString("- Complete the current statement or block; prefer a short, likely completion.\n")
	sys.WriteString("- Match the file's indentation and style.\n")
	sys.WriteString("- If nothing sensible fits, output nothing.")
	var u strings.Builder
	writeRelated(&u, related, budget)
	if fileName != "" {
		u.WriteString("File: " + fileName + "\n")
	}
	if lang.Name != "" {
		u.WriteString("Language: " + lang.Name + "\n")
	}
	u.WriteString("\n<file>\n" + pre + CursorMark + suf + "\n</file>")
	return []Message{system(sys.String()), user(u.String())}
}

// minRelated is the smallest budget worth cutting a related block to.
const minRelated = 32

// writeRelated writes related code blocks, in order, until budget tokens
// are used; the first items are the ones the client ranked highest.
func writeRelated(u *strings.Builder, related []string, budget int) {
	var blocks strings.Builder
	left := budget
	for _, c := range related {
		if EstimateTokens(c) > left && left < minRelated {
			break // a few lines cut from the top of a file only distract
		}
		c = KeepHead(c, left)
		if strings.TrimSpace(c) == "" {
			continue
		}
		left -= EstimateTokens(c)
		blocks.WriteString("<related>\n" + c + "\n</related>\n")
	}
	if blocks.Len() > 0 {
		u.WriteString("Related code from the project:\n" + blocks.String() + "\n")
	}
}
