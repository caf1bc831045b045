package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/consullock"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/nomadrt"
)

// nomadClient connects to cfg's Nomad. Token and TLS come from the usual
// NOMAD_* environment variables, as for the nomad CLI.
func nomadClient(cfg *config.Config) (*nomad.Client, error) {
	nc := nomad.DefaultConfig()
	nc.Address = cfg.Nomad.Address
	nc.Namespace = cfg.Nomad.Namespace
	nc.Region = cfg.Nomad.Region
	c, err := nomad.NewClient(nc)
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", cfg.Nomad.Address, err)
	}
	return c, nil
}

// consulClient connects to cfg's Consul. Token and TLS come from the
// usual CONSUL_* environment variables, as for the consul CLI.
func consulClient(cfg *config.Config) (*consul.Client, error) {
	cc := consul.DefaultConfig()
	addr := cfg.Consul.Address
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		cc.Address, cc.Scheme = u.Host, u.Scheme
	} else {
		cc.Address = addr
	}
	c, err := consul.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Consul.Address, err)
	}
	return c, nil
}

// productionParts builds the Nomad runtime, the Consul lock and the KV
// state sink of a production orchestrator.
func productionParts(cfg *config.Config, id string, log hclog.Logger) (orchestrator.Runtime, orchestrator.Lock, orchestrator.StateSink, error) {
	nc, err := nomadClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	cc, err := consulClient(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	rt, err := nomadrt.New(nomadrt.Options{
		Client: nc,
		Health: &consulsvc.Health{Client: cc, Log: log.Named("consul")},
		Nomad:  cfg.Nomad,
		Slot:   cfg.Orchestrator.Slot,
		Log:    log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	lock, err := consullock.New(consullock.Options{
		Client:     cc,
		Key:        cfg.Consul.LockKey,
		SessionTTL: cfg.Consul.SessionTTL,
		LockDelay:  cfg.Consul.LockDelay,
		Holder:     id,
		Log:        log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return rt, lock, &consulsvc.StateKV{Client: cc, Prefix: cfg.Consul.KVPrefix}, nil
}

// instanceID names this process for the lock holder and service ids.
func instanceID(role string) string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", role, strings.ReplaceAll(host, ".", "-"), os.Getpid())
}
