package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// runConfig implements `switchboard config check`.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: switchboard config check [-config configs/gateway.hcl]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	path := fs.String("config", "configs/gateway.hcl", "path of gateway.hcl (it names the models file)")
	if err := parseFlags(fs, args[1:], stderr, "config check [-config configs/gateway.hcl]"); err != nil {
		return err
	}
	cfg, err := config.Load(*path, config.LoadOptions{})
	if err != nil {
		var cerr *config.Error
		if errors.As(err, &cerr) {
			fmt.Fprintln(stderr, cerr.Error())
			return fmt.Errorf("%s: configuration is invalid", *path)
		}
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (runtime %s, %d models: ", *path, cfg.Orchestrator.Runtime, len(cfg.Models))
	for i, m := range cfg.Models {
		if i > 0 {
			fmt.Fprint(stdout, ", ")
		}
		fmt.Fprint(stdout, m.Name)
	}
	fmt.Fprintln(stdout, ")")
	return nil
}
