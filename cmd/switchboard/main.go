// Command switchboard is llm-switchboard's single binary: the gateway, the
// orchestrator, the all-in-one dev mode, the fake vLLM backend used by
// tests and the dev mode, and a config checker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"

	"github.com/llm-switchboard/llm-switchboard/orchestrator/scheduler/sim"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `switchboard: one OpenAI-compatible endpoint for many LLMs on one GPU box,
with exactly one model loaded at a time.

Usage:
  switchboard <command> [flags]

Commands:
  dev           gateway + orchestrator + embedded Redis + local backends, in one process
  gateway       serve the OpenAI-compatible HTTP API (production)
  orchestrator  lead: pick the active model, switch models, execute jobs (production)
  mockllm       a fake vLLM OpenAI server (for tests and the dev mode)
  config check  validate configuration files, printing file:line:col diagnostics
  sim           replay arrival traces through the scheduler and naive/llama-swap-like policies
  version       print the version

Run 'switchboard <command> -h' for a command's flags.
`

// errUsage marks an error whose message was already printed with usage.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "switchboard", version)
		return 0
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr)
	case "gateway":
		err = runGateway(ctx, args[1:], stdout, stderr)
	case "orchestrator":
		err = runOrchestrator(ctx, args[1:], stdout, stderr)
	case "mockllm":
		err = runMockLLM(ctx, args[1:], stdout, stderr)
	case "config":
		err = runConfig(args[1:], stdout, stderr)
	case "sim":
		return sim.Main(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "switchboard %s: %v\n", args[0], err)
		return 1
	}
}

// commonFlags are the flags every long-running command takes.
type commonFlags struct {
	config   string
	logLevel string
	logJSON  bool
}

func (c *commonFlags) register(fs *flag.FlagSet, defaultConfig string) {
	fs.StringVar(&c.config, "config", defaultConfig, "path of gateway.hcl (it names the models file)")
	fs.StringVar(&c.logLevel, "log-level", envOr("LOG_LEVEL", "info"), "log level: trace, debug, info, warn, error (env LOG_LEVEL)")
	fs.BoolVar(&c.logJSON, "log-json", false, "log JSON lines instead of text")
}

func (c *commonFlags) logger(name string, w io.Writer) (hclog.Logger, error) {
	level := hclog.LevelFromString(c.logLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("unknown log level %q (want trace, debug, info, warn or error)", c.logLevel)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name: name, Level: level, Output: w, JSONFormat: c.logJSON, TimeFormat: "2006-01-02T15:04:05.000Z07:00",
	}), nil
}

// serviceSetup parses a long-running command's flags (extra adds its
// own), then builds its logger and loads its config.
func serviceSetup(name, defaultConfig, synopsis string, args []string, stderr io.Writer,
	extra func(*flag.FlagSet)) (*config.Config, hclog.Logger, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	var c commonFlags
	c.register(fs, defaultConfig)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args, stderr, synopsis); err != nil {
		return nil, nil, err
	}
	log, err := c.logger("switchboard", stderr)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(c.config, config.LoadOptions{})
	if err != nil {
		return nil, nil, err
	}
	return cfg, log, nil
}

// parseFlags parses args, printing usage text on -h and errors.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, synopsis string) error {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: switchboard %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
