package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// DefaultModelsFile is the models file a gateway file names when it sets no
// models_file.
const DefaultModelsFile = "models.hcl"

// defaultMaxConcurrency is a model's max_concurrency when unset: vLLM batches
// well at this size on one GPU without long tail latencies.
const defaultMaxConcurrency = 8

// Default returns the defaults every loaded config starts from. They are safe
// for a first start: loopback listener, the local agents' usual addresses,
// and timeouts generous enough for a 100 GB model to load.
func Default() *Config {
	return &Config{
		Gateway: Gateway{
			HealthOpen:      true,
			DirectRoute:     true,
			Listen:          "127.0.0.1:8000",
			MaxRequestBytes: 16 << 20,
		},
		Redis: Redis{
			KeyPrefix: "sb:",
		},
		Nomad: Nomad{
			Address:        "http://127.0.0.1:4646",
			Namespace:      "default",
			Region:         "global",
			JobPrefix:      "sb-",
			MemoryHeadroom: 4 << 30,
			MemoryTimeout:  3 * time.Minute,
		},
		Consul: Consul{
			Address:    "http://127.0.0.1:8500",
			LockKey:    "llm-switchboard/leader",
			SessionTTL: 15 * time.Second,
			LockDelay:  15 * time.Second,
			KVPrefix:   "llm-switchboard/state/",
		},
		Orchestrator: Orchestrator{
			Runtime:          RuntimeNomad,
			Slot:             "default",
			SwitchTimeout:    15 * time.Minute,
			InferenceTimeout: 10 * time.Minute,
			DrainTimeout:     2 * time.Minute,
			StopTimeout:      5 * time.Minute,
			StopGrace:        30 * time.Second,
			Canary:           true,
			CanaryTimeout:    time.Minute,
		},
		Scheduler: Scheduler{
			MaxWait:         10 * time.Minute,
			QueueTimeout:    30 * time.Minute,
			ResultTTL:       time.Hour,
			MaxPending:      1000,
			MaxPendingTotal: 5000,
			QuarantineBase:  30 * time.Second,
			QuarantineMax:   10 * time.Minute,
		},
	}
}

// LoadOptions lets tests and the dev mode supply files and environment.
// The zero value reads the real file system and environment.
type LoadOptions struct {
	// ReadFile reads a configuration or jobspec file; default os.ReadFile.
	// The dev mode passes an embed.FS's ReadFile.
	ReadFile func(name string) ([]byte, error)
	// LookupEnv reads the environment overrides; default os.LookupEnv.
	LookupEnv func(key string) (string, bool)
	// SwitchboardBin is the value of the HCL variable `switchboard` in a
	// model's command; default os.Executable().
	SwitchboardBin string
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.SwitchboardBin == "" {
		if exe, err := os.Executable(); err == nil {
			o.SwitchboardBin = exe
		} else {
			// Without a path to ourselves, trust $PATH.
			o.SwitchboardBin = "switchboard"
		}
	}
	return o
}

// Load reads the gateway config at path and the models file it names
// (models_file, resolved relative to path's directory), applies defaults,
// env overrides, validates.
//
// The order is fixed: Default, then the gateway file, then the environment
// (an empty variable counts as unset), then the models file, then checks
// across both. Every problem found is returned at once as an *Error; the
// returned *Config is read-only.
func Load(path string, opts LoadOptions) (*Config, error) {
	l := &loader{
		opts:   opts.withDefaults(),
		cfg:    Default(),
		parser: hclparse.NewParser(),
	}
	l.load(path)
	if l.diags.HasErrors() {
		return nil, &Error{Diagnostics: sortDiagnostics(l.diags)}
	}
	return l.cfg, nil
}

// loader carries one Load: what was read so far and every diagnostic.
type loader struct {
	opts   LoadOptions
	cfg    *Config
	parser *hclparse.Parser
	diags  hcl.Diagnostics

	// runtimeOK says the configured runtime is valid, so runtime-specific
	// model checks make sense.
	runtimeOK bool
	// defaultModelRange anchors the default_model check, which needs the
	// models.
	defaultModelRange hcl.Range
}

func (l *loader) load(path string) {
	l.cfg.Files = append(l.cfg.Files, path)
	var gf gatewayFile
	if body, ok := l.parse(path); ok {
		l.diags = append(l.diags, gohcl.DecodeBody(body, nil, &gf)...)
		l.applyGateway(&gf)
	}
	l.applyEnv()
	// An invalid runtime left the default in place; checking the models
	// against that default would only add noise.
	l.runtimeOK = gf.Orchestrator == nil || gf.Orchestrator.Runtime == nil ||
		checkRuntime(*gf.Orchestrator.Runtime) == nil

	modelsFile := DefaultModelsFile
	if gf.ModelsFile != nil && *gf.ModelsFile != "" {
		modelsFile = *gf.ModelsFile
	}
	modelsPath := resolvePath(filepath.Dir(path), modelsFile)
	l.cfg.Files = append(l.cfg.Files, modelsPath)
	if body, ok := l.parse(modelsPath); ok {
		l.loadModels(modelsPath, body)
		l.checkDefaultModel()
	}
	if gf.Gateway != nil && gf.Gateway.KeysFile != nil && *gf.Gateway.KeysFile != "" {
		l.loadKeys(resolvePath(filepath.Dir(path), *gf.Gateway.KeysFile))
	}
}

// parse reads and parses one HCL file. It reports false when the file is
// unreadable or not even syntactically HCL, since decoding it would only
// add noise to the syntax errors.
func (l *loader) parse(path string) (hcl.Body, bool) {
	src, err := l.opts.ReadFile(path)
	if err != nil {
		detail := err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			detail = "the file does not exist"
		}
		l.diags = append(l.diags, errorDiag(fileRange(path), "cannot read configuration file", detail))
		return nil, false
	}
	f, diags := l.parser.ParseHCL(src, path)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil, false
	}
	return f.Body, true
}

// resolvePath resolves p against dir unless it is absolute.
func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// gatewayFile is the schema of gateway.hcl. Every attribute is optional: what
// is absent keeps its Default.
type gatewayFile struct {
	ModelsFile      *string   `hcl:"models_file,optional"`
	ModelsFileRange hcl.Range `hcl:"models_file,attr_value_range"`

	Gateway      *gatewayBlock      `hcl:"gateway,block"`
	Redis        *redisBlock        `hcl:"redis,block"`
	Nomad        *nomadBlock        `hcl:"nomad,block"`
	Consul       *consulBlock       `hcl:"consul,block"`
	Orchestrator *orchestratorBlock `hcl:"orchestrator,block"`
	Scheduler    *schedulerBlock    `hcl:"scheduler,block"`
}

type gatewayBlock struct {
	HealthOpen           *bool     `hcl:"health_open,optional"`
	DirectRoute          *bool     `hcl:"direct_route,optional"`
	AdminViaFunnel       *bool     `hcl:"admin_via_funnel,optional"`
	CORSOrigins          []string  `hcl:"cors_origins,optional"`
	KeysFile             *string   `hcl:"keys_file,optional"`
	KeysFileRange        hcl.Range `hcl:"keys_file,attr_value_range"`
	Listen               *string   `hcl:"listen,optional"`
	ListenRange          hcl.Range `hcl:"listen,attr_value_range"`
	MaxRequestBytes      *int64    `hcl:"max_request_bytes,optional"`
	MaxRequestBytesRange hcl.Range `hcl:"max_request_bytes,attr_value_range"`
}

type redisBlock struct {
	URL            *string   `hcl:"url,optional"`
	URLRange       hcl.Range `hcl:"url,attr_value_range"`
	KeyPrefix      *string   `hcl:"key_prefix,optional"`
	KeyPrefixRange hcl.Range `hcl:"key_prefix,attr_value_range"`
}

type nomadBlock struct {
	Address        *string   `hcl:"address,optional"`
	AddressRange   hcl.Range `hcl:"address,attr_value_range"`
	Namespace      *string   `hcl:"namespace,optional"`
	NamespaceRange hcl.Range `hcl:"namespace,attr_value_range"`
	Region         *string   `hcl:"region,optional"`
	RegionRange    hcl.Range `hcl:"region,attr_value_range"`
	JobPrefix      *string   `hcl:"job_prefix,optional"`
	JobPrefixRange hcl.Range `hcl:"job_prefix,attr_value_range"`
	PurgeOnStop    *bool     `hcl:"purge_on_stop,optional"`
	NodeID         *string   `hcl:"node_id,optional"`
	NodeIDRange    hcl.Range `hcl:"node_id,attr_value_range"`
	Headroom       *string   `hcl:"memory_headroom,optional"`
	HeadroomRange  hcl.Range `hcl:"memory_headroom,attr_value_range"`
	MemTimeout     *string   `hcl:"memory_timeout,optional"`
	MemTimeoutRng  hcl.Range `hcl:"memory_timeout,attr_value_range"`
}

type consulBlock struct {
	Address      *string   `hcl:"address,optional"`
	AddressRange hcl.Range `hcl:"address,attr_value_range"`
	LockKey      *string   `hcl:"lock_key,optional"`
	LockKeyRange hcl.Range `hcl:"lock_key,attr_value_range"`
	SessionTTL   *string   `hcl:"session_ttl,optional"`
	TTLRange     hcl.Range `hcl:"session_ttl,attr_value_range"`
	LockDelay    *string   `hcl:"lock_delay,optional"`
	DelayRange   hcl.Range `hcl:"lock_delay,attr_value_range"`
	KVPrefix     *string   `hcl:"kv_prefix,optional"`
	KVRange      hcl.Range `hcl:"kv_prefix,attr_value_range"`
}

type orchestratorBlock struct {
	Runtime               *string   `hcl:"runtime,optional"`
	RuntimeRange          hcl.Range `hcl:"runtime,attr_value_range"`
	Slot                  *string   `hcl:"slot,optional"`
	SlotRange             hcl.Range `hcl:"slot,attr_value_range"`
	SwitchTimeout         *string   `hcl:"switch_timeout,optional"`
	SwitchTimeoutRange    hcl.Range `hcl:"switch_timeout,attr_value_range"`
	InferenceTimeout      *string   `hcl:"inference_timeout,optional"`
	InferenceTimeoutRange hcl.Range `hcl:"inference_timeout,attr_value_range"`
	DrainTimeout          *string   `hcl:"drain_timeout,optional"`
	DrainTimeoutRange     hcl.Range `hcl:"drain_timeout,attr_value_range"`
	StopTimeout           *string   `hcl:"stop_timeout,optional"`
	StopTimeoutRange      hcl.Range `hcl:"stop_timeout,attr_value_range"`
	StopGrace             *string   `hcl:"stop_grace,optional"`
	StopGraceRange        hcl.Range `hcl:"stop_grace,attr_value_range"`
	Canary                *bool     `hcl:"canary,optional"`
	CanaryTimeout         *string   `hcl:"canary_timeout,optional"`
	CanaryTimeoutRange    hcl.Range `hcl:"canary_timeout,attr_value_range"`
}

type schedulerBlock struct {
	DefaultModel      *string   `hcl:"default_model,optional"`
	DefaultModelRange hcl.Range `hcl:"default_model,attr_value_range"`
	MaxWait           *string   `hcl:"max_wait,optional"`
	MaxWaitRange      hcl.Range `hcl:"max_wait,attr_value_range"`
	QueueTimeout      *string   `hcl:"queue_timeout,optional"`
	QueueTimeoutRange hcl.Range `hcl:"queue_timeout,attr_value_range"`
	ResultTTL         *string   `hcl:"result_ttl,optional"`
	ResultTTLRange    hcl.Range `hcl:"result_ttl,attr_value_range"`
	MaxPending        *int      `hcl:"max_pending,optional"`
	MaxPendingRange   hcl.Range `hcl:"max_pending,attr_value_range"`
	MaxTotal          *int      `hcl:"max_pending_total,optional"`
	MaxTotalRange     hcl.Range `hcl:"max_pending_total,attr_value_range"`
	MinResidency      *string   `hcl:"min_residency,optional"`
	MinResidencyRange hcl.Range `hcl:"min_residency,attr_value_range"`
	MaxSwitches       *int      `hcl:"max_switches_per_hour,optional"`
	MaxSwitchesRange  hcl.Range `hcl:"max_switches_per_hour,attr_value_range"`
	IdleUnload        *string   `hcl:"idle_unload_after,optional"`
	IdleUnloadRange   hcl.Range `hcl:"idle_unload_after,attr_value_range"`
	QuarantineBase    *string   `hcl:"quarantine_base,optional"`
	QBaseRange        hcl.Range `hcl:"quarantine_base,attr_value_range"`
	QuarantineMax     *string   `hcl:"quarantine_max,optional"`
	QMaxRange         hcl.Range `hcl:"quarantine_max,attr_value_range"`
}

// applyGateway copies what gateway.hcl sets over the defaults, checking each
// value where it is read so the diagnostic points at it.
func (l *loader) applyGateway(gf *gatewayFile) {
	if gf.ModelsFile != nil {
		l.check(gf.ModelsFileRange, "models_file", checkNonEmpty(*gf.ModelsFile))
	}
	c := l.cfg
	if b := gf.Gateway; b != nil {
		l.setString(&c.Gateway.Listen, b.Listen, b.ListenRange, "gateway.listen", checkListen)
		if b.AdminViaFunnel != nil {
			c.Gateway.AdminViaFunnel = *b.AdminViaFunnel
		}
		if b.HealthOpen != nil {
			c.Gateway.HealthOpen = *b.HealthOpen
		}
		if b.DirectRoute != nil {
			c.Gateway.DirectRoute = *b.DirectRoute
		}
		c.Gateway.CORSOrigins = b.CORSOrigins
		if b.MaxRequestBytes != nil {
			if *b.MaxRequestBytes <= 0 {
				l.check(b.MaxRequestBytesRange, "gateway.max_request_bytes", fmt.Errorf("%d must be larger than zero", *b.MaxRequestBytes))
			} else {
				c.Gateway.MaxRequestBytes = *b.MaxRequestBytes
			}
		}
	}
	if b := gf.Redis; b != nil {
		l.setString(&c.Redis.URL, b.URL, b.URLRange, "redis.url", func(s string) error {
			if s == "" {
				return nil // embedded Redis in dev mode
			}
			return checkRedisURL(s)
		})
		l.setString(&c.Redis.KeyPrefix, b.KeyPrefix, b.KeyPrefixRange, "redis.key_prefix", nil)
	}
	if b := gf.Nomad; b != nil {
		l.setString(&c.Nomad.Address, b.Address, b.AddressRange, "nomad.address", checkAgentURL)
		l.setString(&c.Nomad.Namespace, b.Namespace, b.NamespaceRange, "nomad.namespace", checkNonEmpty)
		l.setString(&c.Nomad.Region, b.Region, b.RegionRange, "nomad.region", checkNonEmpty)
		l.setString(&c.Nomad.JobPrefix, b.JobPrefix, b.JobPrefixRange, "nomad.job_prefix", checkJobPrefix)
		if b.PurgeOnStop != nil {
			c.Nomad.PurgeOnStop = *b.PurgeOnStop
		}
		l.setString(&c.Nomad.NodeID, b.NodeID, b.NodeIDRange, "nomad.node_id", nil)
		if b.Headroom != nil {
			if n, err := parseSize(*b.Headroom); err != nil {
				l.check(b.HeadroomRange, "nomad.memory_headroom", err)
			} else {
				c.Nomad.MemoryHeadroom = n
			}
		}
		l.setDuration(&c.Nomad.MemoryTimeout, b.MemTimeout, b.MemTimeoutRng, "nomad.memory_timeout")
	}
	if b := gf.Consul; b != nil {
		l.setString(&c.Consul.Address, b.Address, b.AddressRange, "consul.address", checkConsulAddress)
		l.setString(&c.Consul.LockKey, b.LockKey, b.LockKeyRange, "consul.lock_key", checkLockKey)
		l.setDuration(&c.Consul.SessionTTL, b.SessionTTL, b.TTLRange, "consul.session_ttl")
		if b.SessionTTL != nil && c.Consul.SessionTTL < 10*time.Second {
			l.check(b.TTLRange, "consul.session_ttl", fmt.Errorf("%s is below Consul's minimum session TTL of 10s", c.Consul.SessionTTL))
		}
		l.setDuration(&c.Consul.LockDelay, b.LockDelay, b.DelayRange, "consul.lock_delay")
		l.setString(&c.Consul.KVPrefix, b.KVPrefix, b.KVRange, "consul.kv_prefix", checkLockKey)
	}
	if b := gf.Orchestrator; b != nil {
		l.setString(&c.Orchestrator.Runtime, b.Runtime, b.RuntimeRange, "orchestrator.runtime", checkRuntime)
		l.setString(&c.Orchestrator.Slot, b.Slot, b.SlotRange, "orchestrator.slot", checkSlot)
		l.setDuration(&c.Orchestrator.SwitchTimeout, b.SwitchTimeout, b.SwitchTimeoutRange, "orchestrator.switch_timeout")
		l.setDuration(&c.Orchestrator.InferenceTimeout, b.InferenceTimeout, b.InferenceTimeoutRange, "orchestrator.inference_timeout")
		l.setDuration(&c.Orchestrator.DrainTimeout, b.DrainTimeout, b.DrainTimeoutRange, "orchestrator.drain_timeout")
		l.setDuration(&c.Orchestrator.StopTimeout, b.StopTimeout, b.StopTimeoutRange, "orchestrator.stop_timeout")
		l.setDuration(&c.Orchestrator.StopGrace, b.StopGrace, b.StopGraceRange, "orchestrator.stop_grace")
		if b.Canary != nil {
			c.Orchestrator.Canary = *b.Canary
		}
		l.setDuration(&c.Orchestrator.CanaryTimeout, b.CanaryTimeout, b.CanaryTimeoutRange, "orchestrator.canary_timeout")
	}
	if b := gf.Scheduler; b != nil {
		if b.DefaultModel != nil {
			// Checked against the models once they are loaded.
			c.Scheduler.DefaultModel = *b.DefaultModel
			l.defaultModelRange = b.DefaultModelRange
		}
		l.setDuration(&c.Scheduler.MaxWait, b.MaxWait, b.MaxWaitRange, "scheduler.max_wait")
		l.setDuration(&c.Scheduler.QueueTimeout, b.QueueTimeout, b.QueueTimeoutRange, "scheduler.queue_timeout")
		l.setDuration(&c.Scheduler.ResultTTL, b.ResultTTL, b.ResultTTLRange, "scheduler.result_ttl")
		l.setPositive(&c.Scheduler.MaxPending, b.MaxPending, b.MaxPendingRange, "scheduler.max_pending")
		l.setPositive(&c.Scheduler.MaxPendingTotal, b.MaxTotal, b.MaxTotalRange, "scheduler.max_pending_total")
		l.setOptionalDuration(&c.Scheduler.MinResidency, b.MinResidency, b.MinResidencyRange, "scheduler.min_residency")
		if b.MaxSwitches != nil {
			if *b.MaxSwitches < 0 {
				l.check(b.MaxSwitchesRange, "scheduler.max_switches_per_hour", fmt.Errorf("%d must not be negative (0 = no cap)", *b.MaxSwitches))
			} else {
				c.Scheduler.MaxSwitchesPerHour = *b.MaxSwitches
			}
		}
		l.setOptionalDuration(&c.Scheduler.IdleUnloadAfter, b.IdleUnload, b.IdleUnloadRange, "scheduler.idle_unload_after")
		l.setDuration(&c.Scheduler.QuarantineBase, b.QuarantineBase, b.QBaseRange, "scheduler.quarantine_base")
		l.setDuration(&c.Scheduler.QuarantineMax, b.QuarantineMax, b.QMaxRange, "scheduler.quarantine_max")
	}
}

func checkRuntime(s string) error {
	if s != RuntimeNomad && s != RuntimeLocal {
		return fmt.Errorf("%q is not a runtime; want %q (production) or %q (child processes, dev mode)", s, RuntimeNomad, RuntimeLocal)
	}
	return nil
}

// checkJobPrefix keeps Nomad job ids valid: letters, digits, - _ . only.
func checkJobPrefix(s string) error {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q may only hold letters, digits, '-', '_' and '.'", s)
		}
	}
	return nil
}

func checkLockKey(s string) error {
	if err := checkNonEmpty(s); err != nil {
		return err
	}
	if strings.HasPrefix(s, "/") {
		return fmt.Errorf("%q must not start with \"/\": Consul KV keys are relative", s)
	}
	return nil
}

// setOptionalDuration is setDuration for durations where "0" means off.
func (l *loader) setOptionalDuration(dst *time.Duration, v *string, rng hcl.Range, what string) {
	if v != nil && (*v == "0" || *v == "0s") {
		*dst = 0
		return
	}
	l.setDuration(dst, v, rng, what)
}

// setPositive stores *v in dst when the attribute is present and > 0.
func (l *loader) setPositive(dst *int, v *int, rng hcl.Range, what string) {
	if v == nil {
		return
	}
	if *v <= 0 {
		l.check(rng, what, fmt.Errorf("%d must be larger than zero", *v))
		return
	}
	*dst = *v
}

// setString stores *v in dst when the attribute is present and passes check
// (nil accepts anything); otherwise it reports what is wrong at rng.
func (l *loader) setString(dst *string, v *string, rng hcl.Range, what string, check func(string) error) {
	if v == nil {
		return
	}
	if check != nil {
		if err := check(*v); err != nil {
			l.check(rng, what, err)
			return
		}
	}
	*dst = *v
}

// setDuration stores a positive duration such as "15m" in dst when present.
func (l *loader) setDuration(dst *time.Duration, v *string, rng hcl.Range, what string) {
	if v == nil {
		return
	}
	d, err := parseDuration(*v)
	if err != nil {
		l.check(rng, what, err)
		return
	}
	*dst = d
}

// check reports err, if any, as "invalid <what>" at rng.
func (l *loader) check(rng hcl.Range, what string, err error) {
	if err != nil {
		l.diags = append(l.diags, errorDiag(rng, "invalid "+what, err.Error()))
	}
}

// applyEnv applies the environment overrides. They win over the gateway
// file, so one file serves every deployment; API keys come only from here.
func (l *loader) applyEnv() {
	c := l.cfg
	l.envString("GATEWAY_LISTEN", &c.Gateway.Listen, checkListen)
	if v, ok := l.env("GATEWAY_API_KEY"); ok {
		c.Gateway.UserKeys = splitKeys(v)
	}
	if v, ok := l.env("GATEWAY_ADMIN_API_KEY"); ok {
		c.Gateway.AdminKeys = splitKeys(v)
	}
	l.envString("REDIS_URL", &c.Redis.URL, checkRedisURL)
	l.envString("NOMAD_ADDR", &c.Nomad.Address, checkAgentURL)
	l.envString("CONSUL_HTTP_ADDR", &c.Consul.Address, checkConsulAddress)
	l.envSeconds("SWITCH_TIMEOUT_SEC", &c.Orchestrator.SwitchTimeout)
	l.envSeconds("INFERENCE_TIMEOUT_SEC", &c.Orchestrator.InferenceTimeout)
}

// env looks key up; an empty value counts as unset, since shells and
// compose files export empty variables all the time.
func (l *loader) env(key string) (string, bool) {
	v, ok := l.opts.LookupEnv(key)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return v, true
}

func (l *loader) envString(key string, dst *string, check func(string) error) {
	v, ok := l.env(key)
	if !ok {
		return
	}
	if err := check(v); err != nil {
		l.envError(key, err)
		return
	}
	*dst = v
}

func (l *loader) envSeconds(key string, dst *time.Duration) {
	v, ok := l.env(key)
	if !ok {
		return
	}
	d, err := parseSeconds(v)
	if err != nil {
		l.envError(key, err)
		return
	}
	*dst = d
}

func (l *loader) envError(key string, err error) {
	l.diags = append(l.diags, errorDiag(hcl.Range{}, "invalid environment variable "+key, err.Error()))
}
