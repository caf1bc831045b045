package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/llm-switchboard/llm-switchboard/internal/mockllm"
)

// runMockLLM serves a fake vLLM OpenAI server until a signal arrives.
func runMockLLM(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	var opts mockllm.Options
	opts.RegisterFlags(fs)
	var c commonFlags
	fs.StringVar(&c.logLevel, "log-level", envOr("LOG_LEVEL", "info"), "log level (env LOG_LEVEL)")
	fs.BoolVar(&c.logJSON, "log-json", false, "log JSON lines")
	if err := parseFlags(fs, args, stderr, "mockllm --port N --model NAME [flags]"); err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	log, err := c.logger("mockllm", stderr)
	if err != nil {
		return err
	}
	if opts.IgnoreSIGTERM {
		// A backend that will not stop: only SIGKILL (or SIGINT) ends it.
		signal.Ignore(syscall.SIGTERM)
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
	}
	srv, err := mockllm.New(opts, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
