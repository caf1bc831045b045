// Package config holds the switchboard's configuration: the HCL schema of
// gateway.hcl and models.hcl, their loading (Default -> decode -> env
// overrides -> Validate) and diagnostics that carry file:line:col.
//
// A loaded *Config is read-only: every process shares it without locks.
package config

import (
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Runtime names accepted by orchestrator.runtime.
const (
	RuntimeNomad = "nomad"
	RuntimeLocal = "local"
)

// Source types accepted by model.source.type.
const (
	SourceLocalPath       = "local_path"
	SourceHuggingFaceRepo = "huggingface_repo"
)

// Config is the whole, validated configuration of one switchboard process.
type Config struct {
	// Files are the paths the configuration was read from, for messages.
	Files []string

	Gateway      Gateway
	Redis        Redis
	Nomad        Nomad
	Consul       Consul
	Orchestrator Orchestrator
	Scheduler    Scheduler

	// Models in the order the models file declares them.
	Models []*Model
}

// Gateway configures the HTTP face.
type Gateway struct {
	// Listen is host:port (env GATEWAY_LISTEN).
	Listen string
	// UserKeys and AdminKeys are the accepted API keys (env GATEWAY_API_KEY,
	// GATEWAY_ADMIN_API_KEY, comma-separated). Admin keys may do everything
	// user keys may.
	UserKeys  []Secret
	AdminKeys []Secret
	// Keys are the keys of the keys file (keys_file): hashes with names
	// and rights. AllKeys joins them with the environment's.
	Keys []APIKey
	// MaxRequestBytes bounds a request body.
	MaxRequestBytes int64
	// HealthOpen serves /health without a key (default); off, it needs a
	// user key like the API.
	HealthOpen bool
	// AdminViaFunnel serves admin routes to requests that came through
	// Tailscale Funnel (they carry Tailscale-Funnel-Request); off by
	// default so the admin surface stays on the tailnet.
	AdminViaFunnel bool
	// CORSOrigins lists the browser origins allowed to call the API ("*"
	// for any); empty means no CORS headers.
	CORSOrigins []string
	// DirectRoute (default on) sends sync and streaming requests for the
	// ready active model straight to its backend under a lease, without
	// a job record; off, every request goes through the queue.
	DirectRoute bool
}

// Redis configures the job store connection.
type Redis struct {
	// URL is a redis:// URL (env REDIS_URL). Empty in dev mode means the
	// embedded in-process Redis.
	URL string
	// KeyPrefix namespaces every key the switchboard writes.
	KeyPrefix string
}

// Nomad configures the production runtime.
type Nomad struct {
	Address   string // env NOMAD_ADDR
	Namespace string
	Region    string
	// JobPrefix starts the Nomad job id of every model ("sb-" + model).
	JobPrefix string
	// PurgeOnStop purges a model's job when it is stopped; by default the
	// job stays (dead) so `nomad job status` keeps its history.
	PurgeOnStop bool
	// NodeID is the GPU node whose memory the barrier watches; empty
	// means the only node of the cluster (or the node that ran the last
	// model).
	NodeID string
	// MemoryHeadroom is added to a model's memory footprint: the barrier
	// waits until the node has footprint + headroom available.
	MemoryHeadroom int64
	// MemoryTimeout bounds the barrier; past it the slot is wedged.
	MemoryTimeout time.Duration
}

// Consul configures the production lock and service registration.
type Consul struct {
	Address string // env CONSUL_HTTP_ADDR
	LockKey string
	// SessionTTL and LockDelay tune the leader session: a dead leader's
	// lock is free after at most 2xTTL, then LockDelay.
	SessionTTL time.Duration
	LockDelay  time.Duration
	// KVPrefix is where the leader publishes the slot state for the
	// Consul UI.
	KVPrefix string
}

// Orchestrator configures the leader's switcher and executor.
type Orchestrator struct {
	// Runtime is RuntimeNomad or RuntimeLocal.
	Runtime string
	// Slot names the GPU box whose single active model this orchestrator
	// manages.
	Slot string
	// SwitchTimeout bounds start -> healthy of a model (env SWITCH_TIMEOUT_SEC).
	SwitchTimeout time.Duration
	// InferenceTimeout bounds one backend request (env INFERENCE_TIMEOUT_SEC).
	InferenceTimeout time.Duration
	// DrainTimeout bounds the wait for in-flight requests before a switch.
	DrainTimeout time.Duration
	// StopTimeout bounds the wait for a stopped model to be gone.
	StopTimeout time.Duration
	// StopGrace is how long the local runtime waits after SIGTERM before SIGKILL.
	StopGrace time.Duration
	// Canary sends one tiny completion to a model that turned healthy and
	// requires an answer before it serves (vLLM's /health can be green
	// while decoding is stuck). CanaryTimeout bounds it.
	Canary        bool
	CanaryTimeout time.Duration
}

// Scheduler configures the switching policy.
type Scheduler struct {
	// DefaultModel is loaded at start when set.
	DefaultModel string
	// MaxWait is the starvation bound: a head job waiting longer forces a switch.
	MaxWait time.Duration
	// QueueTimeout fails a job that stayed queued this long.
	QueueTimeout time.Duration
	// ResultTTL is how long a finished job's record and result are kept.
	ResultTTL time.Duration
	// MaxPending bounds the queued jobs of one model, MaxPendingTotal of
	// all models; beyond them requests get 429 with Retry-After.
	MaxPending      int
	MaxPendingTotal int
	// MinResidency keeps a freshly loaded model before any switch away
	// (0 = none); MaxSwitchesPerHour caps switches (0 = no cap);
	// IdleUnloadAfter unloads an idle model to free memory (0 = never).
	MinResidency       time.Duration
	MaxSwitchesPerHour int
	IdleUnloadAfter    time.Duration
	// QuarantineBase is the first backoff of a model that failed to start;
	// it doubles on each further failure up to QuarantineMax.
	QuarantineBase time.Duration
	QuarantineMax  time.Duration
}

// Model is one logical model the switchboard can serve.
type Model struct {
	// Name is the logical name clients ask for.
	Name string
	// Aliases are other names clients may use for it.
	Aliases []string
	// ServedName is the name the backend serves (vLLM --served-model-name);
	// defaults to Name.
	ServedName string
	// Jobspec is the Nomad jobspec path, resolved against the models file's
	// directory. Required with the nomad runtime.
	Jobspec string
	Source  Source
	Backend Backend
	// Quantization is passed to vLLM's --quantization when set.
	Quantization string
	// MaxConcurrency is how many requests the backend serves at once.
	MaxConcurrency int
	// MemoryBytes is the model's memory footprint, for the memory barrier.
	MemoryBytes int64
	// Command is the argv of the local runtime (empty with the nomad runtime),
	// already evaluated: the HCL may use the variables switchboard (path of
	// the running binary) and model (an object with name, served_name, port).
	Command []string
	// Env is extra environment for the local runtime's command.
	Env map[string]string
	// Variables are extra variables for the model's jobspec (nomad
	// runtime), passed to Nomad's parse as variables, never as HCL text.
	// They override the ones the switchboard derives (image, port, ...).
	Variables map[string]string

	// DeclRange is where the model block starts, for diagnostics.
	DeclRange hcl.Range
}

// Source says where the weights come from.
type Source struct {
	Type  string // SourceLocalPath or SourceHuggingFaceRepo
	Value string
}

// Backend describes the inference server of a model.
type Backend struct {
	Image    string
	Port     int
	VLLMArgs []string
}

// Secret is an API key. It never prints itself, so a key cannot leak into a
// log line, an error or /status by accident.
type Secret string

// String redacts the key.
func (Secret) String() string { return "<redacted>" }

// GoString redacts the key under %#v too.
func (Secret) GoString() string { return "<redacted>" }

// Format redacts the key under every verb: without it, a verb that does not
// apply to strings (%d) prints the raw value as "%!d(config.Secret=...)".
func (Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", "<redacted>")
		return
	}
	io.WriteString(f, "<redacted>")
}

// MarshalText redacts the key in JSON and other text encodings, so a Config
// serialized into /status or a log line does not carry it.
func (Secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }

// Reveal returns the key itself, for comparison only.
func (s Secret) Reveal() string { return string(s) }

// Model returns the model named name or carrying it as an alias, or nil.
func (c *Config) Model(name string) *Model {
	for _, m := range c.Models {
		if m.Name == name {
			return m
		}
		for _, a := range m.Aliases {
			if a == name {
				return m
			}
		}
	}
	return nil
}

// ModelNames lists the logical model names in declaration order.
func (c *Config) ModelNames() []string {
	names := make([]string, len(c.Models))
	for i, m := range c.Models {
		names[i] = m.Name
	}
	return names
}
