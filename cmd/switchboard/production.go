package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/orchestrator"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/consullock"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/nomadrt"
)

// productionParts builds the Nomad runtime, the Consul lock and the KV
// state sink of a production orchestrator.
func productionParts(cfg *config.Config, id string, log hclog.Logger) (orchestrator.Runtime, orchestrator.Lock, orchestrator.StateSink, error) {
	nc, err := nomadrt.NewClient(cfg.Nomad)
	if err != nil {
		return nil, nil, nil, err
	}
	cc, err := consulsvc.NewClient(cfg.Consul)
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
