// Package consulsvc is the switchboard's use of Consul beyond the leader
// lock: waiting for a Nomad-registered service to pass its checks,
// publishing the slot state in KV for the Consul UI, and registering the
// switchboard's own processes as services with HTTP health checks.
package consulsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// NewClient connects to the configured Consul. Token and TLS come from the
// usual CONSUL_* environment variables, as for the consul CLI.
func NewClient(cfg config.Consul) (*api.Client, error) {
	cc := api.DefaultConfig()
	if u, err := url.Parse(cfg.Address); err == nil && u.Host != "" {
		cc.Address, cc.Scheme = u.Host, u.Scheme
	} else {
		cc.Address = cfg.Address
	}
	c, err := api.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// Health waits on Consul health checks with blocking queries.
type Health struct {
	Client *api.Client
	Log    hclog.Logger
	// Wait is the wait of each blocking query; default 5m.
	Wait time.Duration
}

// WaitPassing blocks until an instance of service whose id starts with
// idPrefix has every check passing, and returns its host:port.
func (h *Health) WaitPassing(ctx context.Context, service, idPrefix string) (string, error) {
	wait := h.Wait
	if wait <= 0 {
		wait = 5 * time.Minute
	}
	var index uint64
	backoff := time.Duration(0)
	lastState := "not registered yet"
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx)
		entries, meta, err := h.Client.Health().Service(service, "", false, q)
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("service %s %s: %w", service, lastState, context.Cause(ctx))
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			if h.Log != nil {
				h.Log.Warn("consul health query failed; retrying", "service", service, "error", err, "backoff", backoff)
			}
			index = 0
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("service %s %s: %w", service, lastState, context.Cause(ctx))
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		for _, e := range entries {
			if e.Service == nil || !strings.HasPrefix(e.Service.ID, idPrefix) {
				continue
			}
			status := e.Checks.AggregatedStatus()
			if status == api.HealthPassing {
				host := e.Service.Address
				if host == "" && e.Node != nil {
					host = e.Node.Address
				}
				return net.JoinHostPort(host, strconv.Itoa(e.Service.Port)), nil
			}
			lastState = "is " + status
			for _, c := range e.Checks {
				if c.Status != api.HealthPassing && c.Output != "" {
					lastState += fmt.Sprintf(" (%s: %s)", c.Name, strings.TrimSpace(c.Output))
				}
			}
		}
		switch {
		case meta.LastIndex < index:
			index = 0 // went backwards: start over
		default:
			index = meta.LastIndex
		}
	}
}

// StateKV publishes the slot state in Consul KV, so the Consul UI shows
// the active model, generation and phase.
type StateKV struct {
	Client *api.Client
	Prefix string
}

// PublishState writes the state as JSON under Prefix + slot.
func (s *StateKV) PublishState(ctx context.Context, st *jobstore.SlotState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	_, err = s.Client.KV().Put(&api.KVPair{Key: s.Prefix + st.Slot, Value: b}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("write state to consul kv %s: %w", s.Prefix+st.Slot, err)
	}
	return nil
}

// Registration is a process of the switchboard to register as a service.
type Registration struct {
	Name string // e.g. llm-switchboard-gateway
	ID   string
	Addr string // host:port it listens on
	// CheckPath is the HTTP path Consul checks, e.g. /health.
	CheckPath string
	Interval  time.Duration
	Tags      []string
}

// Register registers reg with the local Consul agent and returns the
// function that deregisters it (called on shutdown).
func Register(ctx context.Context, client *api.Client, reg Registration) (func(context.Context) error, error) {
	host, portStr, err := net.SplitHostPort(reg.Addr)
	if err != nil {
		return nil, fmt.Errorf("service address %q: %w", reg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("service port %q: %w", portStr, err)
	}
	checkHost := host
	if checkHost == "" || checkHost == "0.0.0.0" || checkHost == "::" {
		checkHost = "127.0.0.1"
	}
	interval := reg.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	svc := &api.AgentServiceRegistration{
		ID: reg.ID, Name: reg.Name, Tags: reg.Tags, Address: host, Port: port,
		Check: &api.AgentServiceCheck{
			Name:                           reg.Name + " health",
			HTTP:                           "http://" + net.JoinHostPort(checkHost, portStr) + reg.CheckPath,
			Interval:                       interval.String(),
			Timeout:                        "5s",
			DeregisterCriticalServiceAfter: "10m",
		},
	}
	if err := client.Agent().ServiceRegisterOpts(svc, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("register service %s with consul: %w", reg.Name, err)
	}
	return func(ctx context.Context) error {
		err := client.Agent().ServiceDeregisterOpts(reg.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("deregister service %s: %w", reg.ID, err)
		}
		return nil
	}, nil
}
