// Command duo-confidential is the GitLab Duo confidential-computing
// appliance: it lets GitLab Duo use the Privatemode LLM service only after
// verifying, by hardware attestation, that the service runs the audited
// software inside Intel TDX or AMD SEV-SNP.
//
// Exit status: 0 success, 1 a command failed (message on stderr), 2 the
// command line was wrong. A command may choose another status by returning
// an error with an ExitCode() int method.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/duo-confidential/duo-confidential/appliance/config"
	"github.com/duo-confidential/duo-confidential/internal/wording"
)

// progName prefixes every error message, so an admin can tell which tool
// spoke in a log or a script's output.
const progName = "duo-confidential"

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// CLI is the command tree. Globals' flags are accepted before or after the
// command name.
type CLI struct {
	Globals

	Version    VersionCmd    `cmd:"" help:"Print the version and build details."`
	Config     ConfigCmd     `cmd:"" help:"Check the configuration or print the commented example."`
	Attest     AttestCmd     `cmd:"" help:"Attestation commands."`
	Collateral CollateralCmd `cmd:"" help:"Offline collateral bundle commands (for air-gapped sites)."`
	Serve      ServeCmd      `cmd:"" help:"Run the appliance: attest the backend and serve the encrypting proxy."`
	// demo and sandbox, in developer builds only (scaffolding_*.go).
	scaffoldingCommands `embed:""`
	Proxy               ProxyCmd    `cmd:"" help:"Proxy helpers (inbound tokens)."`
	Keys                KeysCmd     `cmd:"" help:"Show or rotate the gateway's self-signed JWT keys."`
	TLS                 TLSCmd      `cmd:"" name:"tls" help:"Certificate commands (export the local CA certificate)."`
	Admin               AdminCmd    `cmd:"" help:"Admin UI credentials: set the password, make API tokens."`
	Agent               AgentCmd    `cmd:"" help:"Agent Platform client: play Workhorse for an Agentic Chat message."`
	GitLab              GitLabCmd   `cmd:"" name:"gitlab" help:"Connect GitLab Duo Self-Hosted to this appliance through GitLab's admin API, and verify it."`
	Receipts            ReceiptsCmd `cmd:"" help:"Verify the per-request receipt log or export a signed bundle for an auditor."`
	Doctor              DoctorCmd   `cmd:"" help:"Check the installation: configuration, state, TLS, GitLab, attestation and the running appliance (PASS/WARN/FAIL/SKIP with fixes)."`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the selected command and returns the exit status.
// It writes command output to stdout and diagnostics to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cli := CLI{Globals: Globals{Stdout: stdout, Stderr: stderr, ctx: ctx}}
	parser, err := kong.New(&cli,
		kong.Name(progName),
		kong.Description("Use GitLab Duo with a confidential-computing LLM service (Privatemode), "+
			"trusting it only after verifying its hardware attestation."),
		kong.Writers(stdout, stderr),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Vars{"default_config": DefaultConfigPath},
		kong.BindTo(ctx, (*context.Context)(nil)),
	)
	if err != nil {
		// The command tree is static; this is a programming error.
		printError(stderr, fmt.Errorf("internal error: building the command line parser: %w", err))
		return exitError
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		printError(stderr, err)
		fmt.Fprintf(stderr, "Run \"%s --help\" for usage.\n", progName)
		return exitUsage
	}
	if err := cli.checkFlags(); err != nil {
		printError(stderr, err)
		return exitUsage
	}
	if err := kctx.Run(&cli.Globals); err != nil {
		printError(stderr, err)
		var coder interface{ ExitCode() int }
		if errors.As(err, &coder) && coder.ExitCode() != exitOK {
			return coder.ExitCode()
		}
		return exitError
	}
	return exitOK
}

// printError writes "duo-confidential: <error>" and indents any further
// lines (a joined list of configuration problems, say) under the first.
func printError(w io.Writer, err error) {
	msg := strings.TrimRight(err.Error(), "\n")
	msg = strings.ReplaceAll(msg, "\n", "\n  ")
	fmt.Fprintf(w, "%s: %s\n", progName, msg)
}

// DefaultConfigPath is read when neither --config nor DUO_CONFIDENTIAL_CONFIG
// names a file. Unlike a named file, it may be missing: then every key has
// its default.
const DefaultConfigPath = "/etc/duo-confidential/config.yaml"

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// Globals are the flags every command accepts, plus what run() hands to
// commands: the output streams and a context cancelled on SIGINT/SIGTERM.
// Commands write their output (reports, JSON) to Stdout and nothing else
// there; diagnostics go to Stderr through Logger.
type Globals struct {
	Config    string `help:"Configuration file (default: ${default_config}; a missing default file means all defaults)." env:"DUO_CONFIDENTIAL_CONFIG" placeholder:"PATH"`
	LogLevel  string `help:"Log level: debug, info, warn or error (default: log.level from the configuration, else info)." placeholder:"LEVEL"`
	LogFormat string `help:"Log format: text or json (default: log.format from the configuration, else text)." placeholder:"FORMAT"`

	Stdout io.Writer `kong:"-"` // command output
	Stderr io.Writer `kong:"-"` // logs and diagnostics

	ctx context.Context
	cfg *config.Config // set by a successful LoadConfig; feeds Logger
}

// checkFlags validates flag values kong cannot: the log flags are optional
// (empty defers to the configuration), which kong's enum tag cannot express.
func (g *Globals) checkFlags() error {
	if g.LogLevel != "" && !slices.Contains(logLevels, g.LogLevel) {
		return fmt.Errorf("--log-level must be one of %s, got %q", strings.Join(logLevels, ", "), g.LogLevel)
	}
	if g.LogFormat != "" && !slices.Contains(logFormats, g.LogFormat) {
		return fmt.Errorf("--log-format must be one of %s, got %q", strings.Join(logFormats, ", "), g.LogFormat)
	}
	return nil
}

// Context returns the command's context, cancelled when the process gets
// SIGINT or SIGTERM. It is never nil.
func (g *Globals) Context() context.Context {
	if g.ctx == nil {
		return context.Background()
	}
	return g.ctx
}

// stdout and stderr fall back to the process streams for a Globals built
// outside run(), e.g. in a unit test.
func (g *Globals) stdout() io.Writer {
	if g.Stdout == nil {
		return os.Stdout
	}
	return g.Stdout
}

func (g *Globals) stderr() io.Writer {
	if g.Stderr == nil {
		return os.Stderr
	}
	return g.Stderr
}

// Logger returns a slog.Logger writing to stderr, never stdout (stdout
// carries command output such as JSON reports). Level and format come from
// the flags; else from the configuration if LoadConfig has run; else from
// DUO_CONFIDENTIAL_LOG_LEVEL / _FORMAT if valid; else info and text.
func (g *Globals) Logger() *slog.Logger {
	level, format := g.LogLevel, g.LogFormat
	if g.cfg != nil {
		level = firstSet(level, g.cfg.Log.Level)
		format = firstSet(format, g.cfg.Log.Format)
	}
	if env := os.Getenv(config.EnvPrefix + "LOG_LEVEL"); slices.Contains(logLevels, env) {
		level = firstSet(level, env)
	}
	if env := os.Getenv(config.EnvPrefix + "LOG_FORMAT"); slices.Contains(logFormats, env) {
		format = firstSet(format, env)
	}
	opts := &slog.HandlerOptions{Level: slogLevel(firstSet(level, config.DefaultLogLevel))}
	if firstSet(format, config.DefaultLogFormat) == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr(), opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr(), opts))
}

// firstSet returns the first non-empty string.
func firstSet(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func slogLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// ConfigPath returns the configuration file in effect: --config, else
// DUO_CONFIDENTIAL_CONFIG (kong reads it into the same field), else
// DefaultConfigPath.
func (g *Globals) ConfigPath() string {
	return firstSet(g.Config, DefaultConfigPath)
}

// LoadConfig loads the configuration file, applies DUO_CONFIDENTIAL_*
// environment overrides and defaults, and validates it. A missing file at
// the default path means all defaults; a missing file named by --config or
// DUO_CONFIDENTIAL_CONFIG is an error. The result also sets Logger's level
// and format.
func (g *Globals) LoadConfig() (*config.Config, error) {
	cfg, _, err := g.loadConfigFile(g.ConfigPath(), g.Config != "")
	return cfg, err
}

// loadConfigFile is LoadConfig for an explicit path; found reports whether
// the file existed (false: built-in defaults).
func (g *Globals) loadConfigFile(path string, named bool) (cfg *config.Config, found bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		found = true
	case errors.Is(err, fs.ErrNotExist) && !named:
		// The package installs no config file: defaults are a valid setup.
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("configuration file %s does not exist; create it (`%s config example` prints a commented one) or omit --config/%s to use %s",
			path, progName, config.EnvConfigPath, DefaultConfigPath)
	default:
		return nil, false, fmt.Errorf("cannot read configuration file: %w", err)
	}
	cfg, err = config.Parse(path, data, os.Environ())
	if err != nil {
		n := 1
		var multi interface{ Unwrap() []error }
		if errors.As(err, &multi) {
			n = len(multi.Unwrap())
		}
		return nil, found, fmt.Errorf("configuration %s is not valid (%d %s):\n%w", path, n, wording.Plural(n, "problem", "problems"), err)
	}
	g.cfg = cfg
	return cfg, found, nil
}
