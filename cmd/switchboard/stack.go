package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hashicorp/go-hclog"
	"github.com/redis/go-redis/v9"

	"github.com/llm-switchboard/llm-switchboard/configs"
	"github.com/llm-switchboard/llm-switchboard/gateway"
	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/memlock"
)

// loadConfig loads path, or the embedded dev config when path is "".
func loadConfig(path string, opts config.LoadOptions) (*config.Config, error) {
	if path == "" {
		opts.ReadFile = configs.Dev.ReadFile
		return config.Load("dev/gateway.hcl", opts)
	}
	return config.Load(path, opts)
}

// redisConn is a connection to the job store's Redis, and the embedded
// server behind it when there is one.
type redisConn struct {
	client   *redis.Client
	embedded *miniredis.Miniredis
}

// openRedis connects to cfg's Redis, or starts the embedded one when the
// config names none and embedded use is allowed (the dev mode).
// redisPoolSize is the Redis connection pool of a process unless the URL
// sets pool_size.
const redisPoolSize = 256

func openRedis(ctx context.Context, cfg *config.Config, allowEmbedded bool, log hclog.Logger) (*redisConn, error) {
	rc := &redisConn{}
	url := cfg.Redis.URL
	if url == "" {
		if !allowEmbedded {
			return nil, errors.New("no Redis configured: set redis.url in the config or REDIS_URL")
		}
		rc.embedded = miniredis.NewMiniRedis()
		if err := rc.embedded.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start embedded redis: %w", err)
		}
		url = "redis://" + rc.embedded.Addr()
		log.Info("using embedded redis (nothing survives a restart; set REDIS_URL for a real one)", "address", rc.embedded.Addr())
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		rc.close()
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if !strings.Contains(url, "pool_size=") {
		// go-redis defaults to 10 connections per CPU; a gateway holding
		// hundreds of streams (each appending chunks) or taking thousands
		// of submissions a second would queue for a connection instead
		// of for Redis, which answers in microseconds.
		opt.PoolSize = max(opt.PoolSize, redisPoolSize)
	}
	rc.client = redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rc.client.Ping(pctx).Err(); err != nil {
		rc.close()
		return nil, fmt.Errorf("connect to redis at %s: %w", opt.Addr, err)
	}
	return rc, nil
}

func (rc *redisConn) close() {
	if rc.client != nil {
		_ = rc.client.Close()
	}
	if rc.embedded != nil {
		rc.embedded.Close()
	}
}

func newStore(cfg *config.Config, rdb redis.UniversalClient) *jobstore.Store {
	return jobstore.New(rdb, jobstore.Options{Prefix: cfg.Redis.KeyPrefix, ResultTTL: cfg.Scheduler.ResultTTL})
}

// stack is the embedded all-in-one switchboard: gateway, orchestrator,
// local runtime and in-process lock over one Redis.
type stack struct {
	Addr    string
	Runtime *localrt.Runtime
	Store   *jobstore.Store

	redis       *redisConn
	stopGateway context.CancelFunc
	stopOrch    context.CancelFunc
	gateway     *component
	orch        *component
}

// component is a goroutine of the stack and how it ended.
type component struct {
	name string
	done chan struct{}
	err  error
}

func goComponent(name string, f func() error) *component {
	c := &component{name: name, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if err := f(); err != nil {
			c.err = fmt.Errorf("%s: %w", name, err)
		}
	}()
	return c
}

// startStack starts the embedded stack serving on ln. Stop it with
// shutdown.
func startStack(ctx context.Context, cfg *config.Config, ln net.Listener, log hclog.Logger) (*stack, error) {
	if cfg.Orchestrator.Runtime != config.RuntimeLocal {
		return nil, fmt.Errorf("the dev mode runs models as local processes: set orchestrator.runtime = %q (config says %q)",
			config.RuntimeLocal, cfg.Orchestrator.Runtime)
	}
	rc, err := openRedis(ctx, cfg, true, log)
	if err != nil {
		return nil, err
	}
	store := newStore(cfg, rc.client)
	rt := localrt.New(localrt.Options{StopGrace: cfg.Orchestrator.StopGrace, Log: log})
	// One registry for the whole process; the gateway serves it.
	reg := newRegistry()
	orch, err := orchestrator.New(orchestrator.Options{
		Config: cfg, Store: store, Runtime: rt, Lock: memlock.New(), Log: log, Registerer: reg,
	})
	if err != nil {
		rc.close()
		return nil, err
	}
	gw, err := gateway.New(gateway.Options{Config: cfg, Store: store, Log: log, Registerer: reg, Gatherer: reg})
	if err != nil {
		rc.close()
		return nil, err
	}
	gwCtx, stopGateway := context.WithCancel(context.Background())
	orchCtx, stopOrch := context.WithCancel(context.Background())
	return &stack{
		Addr: ln.Addr().String(), Runtime: rt, Store: store, redis: rc,
		stopGateway: stopGateway, stopOrch: stopOrch,
		gateway: goComponent("gateway", func() error { return gw.Serve(gwCtx, ln) }),
		orch:    goComponent("orchestrator", func() error { return orch.Run(orchCtx) }),
	}, nil
}

// wait blocks until ctx ends (nil) or a component stops on its own (its
// error: the stack cannot go on without it).
func (s *stack) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.gateway.done:
		return errors.Join(errors.New("gateway stopped"), s.gateway.err)
	case <-s.orch.done:
		return errors.Join(errors.New("orchestrator stopped"), s.orch.err)
	}
}

// shutdown tears the stack down in order: stop taking requests (in-flight
// ones get the gateway's grace to finish), stop leading (running jobs are
// recorded as aborted), stop the backends, close Redis. ctx bounds the
// backends' stop.
func (s *stack) shutdown(ctx context.Context) error {
	s.stopGateway()
	<-s.gateway.done
	s.stopOrch()
	<-s.orch.done
	err := errors.Join(s.gateway.err, s.orch.err)
	if rerr := s.Runtime.Close(ctx); rerr != nil {
		err = errors.Join(err, fmt.Errorf("stop backends: %w", rerr))
	}
	s.redis.close()
	return err
}
