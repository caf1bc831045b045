package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// runConfig implements `switchboard config check` and `config models`.
func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "models" {
		return runConfigModels(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: switchboard config check|models [-config configs/gateway.hcl] [-json]")
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

// modelInfo is one model as `config models -json` prints it, for scripts
// (download_models.sh, pull_vllm_image.sh).
type modelInfo struct {
	Name         string   `json:"name"`
	Aliases      []string `json:"aliases"`
	ServedName   string   `json:"served_name"`
	SourceType   string   `json:"source_type"`
	SourceValue  string   `json:"source_value"`
	Image        string   `json:"image"`
	Port         int      `json:"port"`
	Quantization string   `json:"quantization"`
	MemoryBytes  int64    `json:"memory_bytes"`
}

// runConfigModels lists the configured models, as text or JSON.
func runConfigModels(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config models", flag.ContinueOnError)
	path := fs.String("config", "configs/gateway.hcl", "path of gateway.hcl (it names the models file)")
	asJSON := fs.Bool("json", false, "print JSON (one array of models) for scripts")
	if err := parseFlags(fs, args, stderr, "config models [-config configs/gateway.hcl] [-json]"); err != nil {
		return err
	}
	cfg, err := config.Load(*path, config.LoadOptions{})
	if err != nil {
		return err
	}
	out := make([]modelInfo, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		out = append(out, modelInfo{Name: m.Name, Aliases: append([]string{}, m.Aliases...), ServedName: m.ServedName,
			SourceType: m.Source.Type, SourceValue: m.Source.Value, Image: m.Backend.Image, Port: m.Backend.Port,
			Quantization: m.Quantization, MemoryBytes: m.MemoryBytes})
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, m := range out {
		fmt.Fprintf(stdout, "%s\t%s\t%s:%s\t%s\n", m.Name, m.ServedName, m.SourceType, m.SourceValue, m.Image)
	}
	return nil
}
