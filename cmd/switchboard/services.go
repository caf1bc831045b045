package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/llm-switchboard/llm-switchboard/gateway"
	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/memlock"
)

// runGateway serves the HTTP API against a shared Redis.
func runGateway(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var c commonFlags
	c.register(fs, "configs/gateway.hcl")
	if err := parseFlags(fs, args, stderr, "gateway [-config configs/gateway.hcl]"); err != nil {
		return err
	}
	log, err := c.logger("switchboard", stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c.config, config.LoadOptions{})
	if err != nil {
		return err
	}
	if err := gateway.CheckExposure(cfg); err != nil {
		return err
	}
	rc, err := openRedis(ctx, cfg, false, log)
	if err != nil {
		return err
	}
	defer rc.close()
	gw, err := gateway.New(gateway.Options{Config: cfg, Store: newStore(cfg, rc.client), Log: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (GATEWAY_LISTEN): %w", cfg.Gateway.Listen, err)
	}
	return gw.Serve(ctx, ln)
}

// runOrchestrator leads the slot. The Nomad runtime and Consul lock are
// not built yet; until they are, a config with runtime "local" runs the
// local runtime under an in-process lock (a single orchestrator).
func runOrchestrator(ctx context.Context, args []string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	var c commonFlags
	c.register(fs, "configs/gateway.hcl")
	if err := parseFlags(fs, args, stderr, "orchestrator [-config configs/gateway.hcl]"); err != nil {
		return err
	}
	log, err := c.logger("switchboard", stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(c.config, config.LoadOptions{})
	if err != nil {
		return err
	}
	if cfg.Orchestrator.Runtime != config.RuntimeLocal {
		return fmt.Errorf("orchestrator.runtime %q is not available in this build yet (the Nomad runtime and Consul lock are planned); use runtime = %q or `switchboard dev`",
			cfg.Orchestrator.Runtime, config.RuntimeLocal)
	}
	rc, err := openRedis(ctx, cfg, false, log)
	if err != nil {
		return err
	}
	defer rc.close()
	rt := localrt.New(localrt.Options{StopGrace: cfg.Orchestrator.StopGrace, Log: log})
	orch, err := orchestrator.New(orchestrator.Options{
		Config: cfg, Store: newStore(cfg, rc.client), Runtime: rt, Lock: memlock.New(), Log: log,
	})
	if err != nil {
		return err
	}
	runErr := orch.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Orchestrator.StopGrace+10*time.Second)
	defer cancel()
	if err := rt.Close(sctx); err != nil {
		log.Error("stopping backends", "error", err)
	}
	return runErr
}
