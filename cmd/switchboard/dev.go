package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/llm-switchboard/llm-switchboard/gateway"
)

// runDev runs the embedded all-in-one switchboard.
func runDev(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, log, err := serviceSetup("dev", "", "dev [-config path/to/gateway.hcl] (default: the built-in dev config)", args, stderr, nil)
	if err != nil {
		return err
	}
	if err := gateway.CheckExposure(cfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (GATEWAY_LISTEN): %w", cfg.Gateway.Listen, err)
	}
	st, err := startStack(ctx, cfg, ln, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	log.Info("switchboard dev mode ready", "url", "http://"+st.Addr, "models", cfg.ModelNames())
	runErr := st.wait(ctx)
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Orchestrator.StopGrace+10*time.Second)
	defer cancel()
	return errors.Join(runErr, st.shutdown(sctx))
}
