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
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/memlock"
)

// runGateway serves the HTTP API against a shared Redis.
func runGateway(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, log, err := serviceSetup("gateway", "configs/gateway.hcl", "gateway [-config configs/gateway.hcl]", args, stderr, nil)
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
	reg := newRegistry()
	gw, err := gateway.New(gateway.Options{Config: cfg, Store: newStore(cfg, rc.client), Log: log,
		Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Gateway.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (GATEWAY_LISTEN): %w", cfg.Gateway.Listen, err)
	}
	if cfg.Orchestrator.Runtime == config.RuntimeNomad {
		// In production the gateway is a Consul service with a health
		// check, like the models it fronts.
		cc, err := consulsvc.NewClient(cfg.Consul)
		if err != nil {
			return err
		}
		deregister, err := consulsvc.Register(ctx, cc, consulsvc.Registration{
			Name: "llm-switchboard-gateway", ID: instanceID("gateway"), Addr: ln.Addr().String(),
			CheckPath: "/health", Tags: []string{"llm-switchboard"},
		})
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := deregister(dctx); err != nil {
				log.Warn("consul deregistration failed", "error", err)
			}
		}()
	}
	return gw.Serve(ctx, ln)
}

// runOrchestrator leads the slot: with runtime "nomad" it competes for the
// Consul lock and drives Nomad; with runtime "local" it runs the backends
// as its own children under an in-process lock (a single orchestrator).
func runOrchestrator(ctx context.Context, args []string, _, stderr io.Writer) error {
	var metricsListen *string
	cfg, log, err := serviceSetup("orchestrator", "configs/gateway.hcl",
		"orchestrator [-config configs/gateway.hcl] [-metrics-listen 127.0.0.1:9102]", args, stderr,
		func(fs *flag.FlagSet) {
			metricsListen = fs.String("metrics-listen", "127.0.0.1:9102", `address serving GET /metrics and GET /health ("" disables it)`)
		})
	if err != nil {
		return err
	}
	rc, err := openRedis(ctx, cfg, false, log)
	if err != nil {
		return err
	}
	defer rc.close()
	id := instanceID("orchestrator")
	reg := newRegistry()
	opts := orchestrator.Options{Config: cfg, Store: newStore(cfg, rc.client), Log: log, ID: id, Registerer: reg}
	var local *localrt.Runtime
	if cfg.Orchestrator.Runtime == config.RuntimeLocal {
		local = localrt.New(localrt.Options{StopGrace: cfg.Orchestrator.StopGrace, Log: log})
		opts.Runtime, opts.Lock = local, memlock.New()
	} else {
		opts.Runtime, opts.Lock, opts.StateSink, err = productionParts(cfg, id, log)
		if err != nil {
			return err
		}
	}
	orch, err := orchestrator.New(opts)
	if err != nil {
		return err
	}
	if *metricsListen != "" {
		mctx, stopMetrics := context.WithCancel(ctx)
		ms, err := startMetricsServer(mctx, *metricsListen, reg, log)
		if err != nil {
			stopMetrics()
			return err
		}
		defer func() {
			stopMetrics()
			<-ms.done
			if ms.err != nil {
				log.Warn("metrics server", "error", ms.err)
			}
		}()
	}
	runErr := orch.Run(ctx)
	if local != nil {
		// Local backends are our children: they go with us. Nomad jobs
		// stay, for the next leader to adopt.
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Orchestrator.StopGrace+10*time.Second)
		defer cancel()
		if err := local.Close(sctx); err != nil {
			log.Error("stopping backends", "error", err)
		}
	}
	return runErr
}
