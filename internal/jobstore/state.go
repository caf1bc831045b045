package jobstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Phase is what a slot is doing.
type Phase string

// Slot phases.
const (
	PhaseIdle          Phase = "idle"           // no model loaded
	PhasePreflight     Phase = "preflight"      // checking the target can start; the active model still serves
	PhaseDraining      Phase = "draining"       // waiting for in-flight requests before a switch
	PhaseStopping      Phase = "stopping"       // the old model is being stopped
	PhaseWaitingMemory Phase = "waiting_memory" // old model gone; waiting for its memory to come back
	PhaseStarting      Phase = "starting"       // the new model is loading
	PhaseCanary        Phase = "canary"         // healthy; a test completion must answer first
	PhaseReady         Phase = "ready"          // the active model serves
	PhaseFailed        Phase = "failed"         // the last start failed; nothing loaded
	PhaseWedged        Phase = "wedged"         // memory did not come back; nothing will start until it does
)

// SwitchRecord is the story of one switch, for /status and the logs.
type SwitchRecord struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Reason    string    `json:"reason"`
	StartedAt time.Time `json:"started_at"`
	// Adopted is set when a new leader took over a model already running.
	Adopted bool `json:"adopted,omitempty"`
	// RequestedBy names the key whose waiting request the switch is for.
	RequestedBy string        `json:"requested_by,omitempty"`
	Preflight   time.Duration `json:"preflight_ns"`
	Drain       time.Duration `json:"drain_ns"`
	Stop        time.Duration `json:"stop_ns"`
	Memory      time.Duration `json:"memory_ns"`
	Start       time.Duration `json:"start_ns"`
	Canary      time.Duration `json:"canary_ns"`
	Total       time.Duration `json:"total_ns"`
	Error       string        `json:"error,omitempty"`
	Generation  int64         `json:"generation"`
}

// SlotState is what the leader publishes about its slot.
type SlotState struct {
	Slot        string        `json:"slot"`
	Leader      string        `json:"leader"`
	LeaderSince time.Time     `json:"leader_since"`
	Generation  int64         `json:"generation"`
	Phase       Phase         `json:"phase"`
	Active      string        `json:"active_model"`
	Target      string        `json:"target_model,omitempty"`
	Backend     string        `json:"backend,omitempty"`
	InFlight    int           `json:"in_flight"`
	LastSwitch  *SwitchRecord `json:"last_switch,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
	Decisions   []string      `json:"recent_decisions,omitempty"`
	// Runtime is what the runtime reports of the active model's backend
	// (for Nomad: job id, status, allocation).
	Runtime map[string]string `json:"runtime,omitempty"`
	// SwitchAvg is the learned duration of a switch to each model, and
	// JobAvg of one job of each model (moving averages), for ETAs.
	SwitchAvg map[string]time.Duration `json:"switch_avg_ns,omitempty"`
	JobAvg    map[string]time.Duration `json:"job_avg_ns,omitempty"`
	// RecentSwitches are the start times of the last hour's switches,
	// for max_switches_per_hour.
	RecentSwitches []time.Time `json:"recent_switches,omitempty"`
	UpdatedAt      time.Time   `json:"updated_at"`
}

// PutState publishes the slot state.
func (s *Store) PutState(ctx context.Context, st *SlotState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode slot state: %w", err)
	}
	if err := s.rdb.Set(ctx, s.stateKey(st.Slot), b, 0).Err(); err != nil {
		return fmt.Errorf("publish slot state: %w", err)
	}
	return nil
}

// State reads the slot state; nil when no leader ever published one.
func (s *Store) State(ctx context.Context, slot string) (*SlotState, error) {
	b, err := s.rdb.Get(ctx, s.stateKey(slot)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read slot state: %w", err)
	}
	var st SlotState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decode slot state: %w", err)
	}
	return &st, nil
}

// Heartbeat records that leader leads slot, for ttl.
func (s *Store) Heartbeat(ctx context.Context, slot, leader string, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.leaderKey(slot), leader, ttl).Err(); err != nil {
		return fmt.Errorf("leader heartbeat: %w", err)
	}
	return nil
}

// Leader returns the live leader of slot, or "" when none has beaten its
// heart recently.
func (s *Store) Leader(ctx context.Context, slot string) (string, error) {
	v, err := s.rdb.Get(ctx, s.leaderKey(slot)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read leader: %w", err)
	}
	return v, nil
}

// defaultSwitch is the switch time assumed for a model never loaded yet.
const defaultSwitch = 90 * time.Second

// EstimateStart estimates how long until the job at (1-based) position
// pos of model's queue starts, from the learned averages: the rest of a
// switch under way (or a whole one when model is not loaded), then the
// batches ahead of it at the model's concurrency.
func (st *SlotState) EstimateStart(model string, pos, concurrency int, now time.Time) time.Duration {
	if concurrency < 1 {
		concurrency = 1
	}
	job := st.JobAvg[model]
	ahead := pos - 1
	var wait time.Duration
	switch {
	case st.Active == model && st.Phase == PhaseReady:
		ahead += st.InFlight
	case st.Target == model && st.LastSwitch != nil:
		wait = max(st.switchTime(model)-now.Sub(st.LastSwitch.StartedAt), 0)
	default:
		wait = st.switchTime(model)
		if st.Active != "" {
			// The active model finishes what it has in flight first.
			wait += st.JobAvg[st.Active]
		}
	}
	return wait + time.Duration(ahead/concurrency)*job
}

func (st *SlotState) switchTime(model string) time.Duration {
	if d, ok := st.SwitchAvg[model]; ok && d > 0 {
		return d
	}
	return defaultSwitch
}

// AdminState is what operators asked of a slot: a pin, maintenance, and
// one-shot load and unload requests the leader consumes.
type AdminState struct {
	Pinned      string `json:"pinned,omitempty"`
	Maintenance bool   `json:"maintenance"`
	Load        string `json:"load,omitempty"`
	Unload      bool   `json:"unload,omitempty"`
}

// AdminWake is the wake-up message that tells the leader to re-read the
// admin state.
const AdminWake = "@admin"

func (s *Store) adminKey(slot string) string { return s.opts.Prefix + "admin:" + slot }

// Admin reads the slot's admin state.
func (s *Store) Admin(ctx context.Context, slot string) (AdminState, error) {
	m, err := s.rdb.HGetAll(ctx, s.adminKey(slot)).Result()
	if err != nil {
		return AdminState{}, fmt.Errorf("read admin state: %w", err)
	}
	return AdminState{Pinned: m["pinned"], Maintenance: m["maintenance"] == "1", Load: m["load"], Unload: m["unload"] == "1"}, nil
}

// SetAdmin sets (value != "") or clears one admin field and wakes the
// leader: pinned, maintenance ("1"), load (a model), unload ("1").
func (s *Store) SetAdmin(ctx context.Context, slot, field, value string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if value == "" {
			p.HDel(ctx, s.adminKey(slot), field)
		} else {
			p.HSet(ctx, s.adminKey(slot), field, value)
		}
		p.Publish(ctx, s.wakeChannel(), AdminWake)
		return nil
	})
	if err != nil {
		return fmt.Errorf("set admin %s: %w", field, err)
	}
	return nil
}

// ClearAdmin removes a one-shot admin request once the leader took it,
// unless it was replaced meanwhile.
func (s *Store) ClearAdmin(ctx context.Context, slot, field, was string) error {
	err := clearIfScript.Run(ctx, s.rdb, []string{s.adminKey(slot)}, field, was).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("clear admin %s: %w", field, err)
	}
	return nil
}

var clearIfScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`)

func (s *Store) switchesKey(owner string) string { return s.opts.Prefix + "switches:" + owner }

// HeadOwner returns the owner (key name) of the oldest job queued for
// model, "" when none waits: the key a switch to model is for.
func (s *Store) HeadOwner(ctx context.Context, model string) (string, error) {
	ids, err := s.rdb.ZRange(ctx, s.queueKey(model), 0, 0).Result()
	if err != nil || len(ids) == 0 {
		return "", err
	}
	owner, err := s.rdb.HGet(ctx, s.jobKey(ids[0]), "owner").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return owner, err
}

// RecordSwitch attributes a switch at to the key owner, for its
// switches-per-hour budget.
func (s *Store) RecordSwitch(ctx context.Context, owner string, at time.Time) error {
	key := s.switchesKey(owner)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: at.UnixNano()})
		p.ZRemRangeByScore(ctx, key, "-inf", fmt.Sprint(at.Add(-time.Hour).UnixMilli()))
		p.Expire(ctx, key, 2*time.Hour)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record switch of %s: %w", owner, err)
	}
	return nil
}

// SwitchesBy counts the switches attributed to owner since since, and
// returns when the oldest of them was.
func (s *Store) SwitchesBy(ctx context.Context, owner string, since time.Time) (int, time.Time, error) {
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.switchesKey(owner), &redis.ZRangeBy{
		Min: fmt.Sprint(since.UnixMilli()), Max: "+inf",
	}).Result()
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count switches of %s: %w", owner, err)
	}
	if len(zs) == 0 {
		return 0, time.Time{}, nil
	}
	return len(zs), time.UnixMilli(int64(zs[0].Score)), nil
}
