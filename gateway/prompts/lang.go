package prompts

import (
	"path"
	"strings"
)

// Language describes a programming language for prompts.
type Language struct {
	// Name is the human name used in prompts ("Go", "Python").
	Name string
	// Fence is the Markdown fence tag ("go", "python").
	Fence string
	// Comment is the line comment marker, "" if the language has none.
	Comment string
}

// languages maps lower-case extensions (and a few whole file names) to
// languages.
var languages = map[string]Language{}

func init() {
	add := func(name, fence, comment string, exts ...string) {
		for _, e := range exts {
			languages[e] = Language{Name: name, Fence: fence, Comment: comment}
		}
	}
	add("C", "c", "//", ".c", ".h")
	add("C++", "cpp", "//", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".hxx", ".c++", ".ino")
	add("C#", "csharp", "//", ".cs")
	add("Go", "go", "//", ".go")
	add("Java", "java", "//", ".java")
	add("JavaScript", "javascript", "//", ".js", ".mjs", ".cjs", ".jsx")
	add("TypeScript", "typescript", "//", ".ts", ".mts", ".cts", ".tsx")
	add("Python", "python", "#", ".py", ".pyw", ".pyi")
	add("Ruby", "ruby", "#", ".rb", ".rake", ".gemspec", "gemfile", "rakefile")
	add("Rust", "rust", "//", ".rs")
	add("Kotlin", "kotlin", "//", ".kt", ".kts")
	add("Scala", "scala", "//", ".scala", ".sc")
	add("Swift", "swift", "//", ".swift")
	add("Objective-C", "objectivec", "//", ".m", ".mm")
	add("PHP", "php", "//", ".php")
	add("Perl", "perl", "#", ".pl", ".pm")
	add("Lua", "lua", "--", ".lua")
	add("R", "r", "#", ".r")
	add("Julia", "julia", "#", ".jl")
	add("Dart", "dart", "//", ".dart")
	add("Elixir", "elixir", "#", ".ex", ".exs")
	add("Erlang", "erlang", "%", ".erl", ".hrl")
	add("Haskell", "haskell", "--", ".hs")
	add("OCaml", "ocaml", "", ".ml", ".mli")
	add("Clojure", "clojure", ";", ".clj", ".cljs", ".cljc")
	add("F#", "fsharp", "//", ".fs", ".fsx")
	add("Zig", "zig", "//", ".zig")
	add("Shell", "bash", "#", ".sh", ".bash", ".zsh", ".ksh")
	add("PowerShell", "powershell", "#", ".ps1", ".psm1")
	add("SQL", "sql", "--", ".sql")
	add("HTML", "html", "", ".html", ".htm")
	add("CSS", "css", "", ".css")
	add("SCSS", "scss", "//", ".scss", ".sass", ".less")
	add("Vue", "vue", "", ".vue")
	add("Svelte", "svelte", "", ".svelte")
	add("YAML", "yaml", "#", ".yml", ".yaml")
	add("JSON", "json", "", ".json")
	add("TOML", "toml", "#", ".toml")
	add("XML", "xml", "", ".xml")
	add("Markdown", "markdown", "", ".md", ".markdown")
	add("Terraform", "hcl", "#", ".tf", ".tfvars", ".hcl")
	add("Dockerfile", "dockerfile", "#", "dockerfile", ".dockerfile")
	add("Makefile", "makefile", "#", "makefile", ".mk")
	add("Protocol Buffers", "protobuf", "//", ".proto")
	add("GraphQL", "graphql", "#", ".graphql", ".gql")
	add("Groovy", "groovy", "//", ".groovy", ".gradle", "jenkinsfile")
	add("Visual Basic", "vbnet", "'", ".vb")
	add("Solidity", "solidity", "//", ".sol")
}

// DetectLanguage returns the language of fileName from its extension (or
// its whole name for Dockerfile, Makefile, Gemfile …). hint, GitLab's
// language_identifier when sent, wins when it names a known language.
// ok is false when neither is known; the Language is then zero.
func DetectLanguage(fileName, hint string) (lang Language, ok bool) {
	if h := strings.ToLower(strings.TrimSpace(hint)); h != "" {
		for _, l := range languages {
			if strings.ToLower(l.Name) == h || l.Fence == h {
				return l, true
			}
		}
	}
	base := strings.ToLower(path.Base(strings.ReplaceAll(fileName, "\\", "/")))
	if l, ok := languages[base]; ok {
		return l, true
	}
	if l, ok := languages[path.Ext(base)]; ok {
		return l, true
	}
	if strings.HasPrefix(base, "dockerfile") {
		return languages["dockerfile"], true
	}
	return Language{}, false
}
