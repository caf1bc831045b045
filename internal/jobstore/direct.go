package jobstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The direct route: a gateway may send a request for the ready active
// model straight to its backend, without a job record, while it holds a
// lease. The leader opens admission (model, backend, generation) when a
// model becomes ready and closes it when it stops being so; before it
// stops a backend it waits until no lease is live. A gateway extends its
// lease while admission is open, and after a close only until the drain
// deadline; it cancels its direct requests when its lease runs out
// locally, which is before Redis expires it. So no request is in flight
// to a backend the leader stops (invariant 2), without a Redis round trip
// per request.
//
// Keys: admission:{slot} (hash: gen (the leader's, for fencing), epoch
// (counts openings), open, model, backend, drain_until, last_use) and
// leases:{slot} (sorted set: "{instance}|{epoch}" scored by
// expiry in Redis server milliseconds). Channels: admission-changed:{slot}
// (for gateways) and released:{slot} (a lease let go, for the
// leader).

// Lease timing, shared by gateways (who renew) and the leader (who must
// assume a lease Redis forgot may still be held that long): a lease lasts
// LeaseTTL from each renewal, renewals come every LeaseRenew.
const (
	LeaseTTL   = 3 * time.Second
	LeaseRenew = time.Second
)

// ErrStaleLeader means a newer leader generation owns the slot.
var ErrStaleLeader = errors.New("a newer leader generation owns the slot")

// Admission is what the leader grants gateways.
type Admission struct {
	Open bool
	// Epoch numbers the openings; a lease serves one epoch.
	Epoch   int64
	Model   string
	Backend string
}

// LeaseGrant is a gateway's view after a renewal.
type LeaseGrant struct {
	// Admission as it stands now; when Open, the gateway holds a lease on
	// it for Granted.
	Admission
	Granted time.Duration
	// Held is the remaining time of each lease the gateway asked to
	// extend, by epoch; 0 when it is gone.
	Held map[int64]time.Duration
}

func (s *Store) admissionKey(slot string) string { return s.opts.Prefix + "admission:" + slot }
func (s *Store) leasesKey(slot string) string    { return s.opts.Prefix + "leases:" + slot }
func (s *Store) admissionChannel(slot string) string {
	return s.opts.Prefix + "admission-changed:" + slot
}
func (s *Store) releasedChannel(slot string) string { return s.opts.Prefix + "released:" + slot }

// LeaseMember names a gateway's lease on an epoch of admission.
func LeaseMember(instance string, epoch int64) string {
	return instance + "|" + strconv.FormatInt(epoch, 10)
}

// setAdmissionScript opens or closes admission, fenced by generation.
// KEYS: admission hash, leases set, the slot's generation counter. ARGV:
// gen, open ("1"/"0"), model, backend, drain ms, channel, Redis run id.
// Returns {live leases, ms since Redis was seen to restart (or lose the
// hash)}, or {-1} when a newer generation owns the slot.
var setAdmissionScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 'gen', 'open', 'model', 'backend', 'run', 'run_since')
if tonumber(cur[1] or '0') > tonumber(ARGV[1]) or tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[1]) then
  return {-1}
end
-- A restarted Redis may have lost the last lease renewals (and with the
-- hash, all of them): the leader must then wait out a whole lease. A
-- missing hash under the first generation is a fresh Redis: nothing to
-- wait for.
local since = tonumber(cur[6] or '0')
if cur[5] ~= ARGV[7] then
  since = 0
  if cur[5] or tonumber(ARGV[1]) > 1 then since = now end
  redis.call('HSET', KEYS[1], 'run', ARGV[7], 'run_since', since)
end
local changed = cur[1] ~= ARGV[1] or (cur[2] or '0') ~= ARGV[2] or (cur[3] or '') ~= ARGV[3] or (cur[4] or '') ~= ARGV[4]
if changed then
  if ARGV[2] == '1' then
    -- Every opening is a new epoch: leases name the epoch they serve.
    -- It never repeats, even after Redis lost the hash (a clock reading).
    local e = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') + 1
    if e < now then e = now end
    redis.call('HSET', KEYS[1], 'epoch', e)
    redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'open', '1', 'model', ARGV[3], 'backend', ARGV[4])
    redis.call('HDEL', KEYS[1], 'drain_until')
  elseif cur[2] ~= '0' then
    -- A close starts the drain: leases extend no further than this.
    redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'open', '0', 'model', ARGV[3], 'backend', ARGV[4],
      'drain_until', now + tonumber(ARGV[5]))
  else
    redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'model', ARGV[3], 'backend', ARGV[4])
  end
  redis.call('PUBLISH', ARGV[6], ARGV[2])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {redis.call('ZCARD', KEYS[2]), now - since}
`)

// SetAdmission opens admission to the direct route for model at backend
// for the leader of generation gen, or closes it (open false) giving leases drain to
// finish. A newer generation's admission is left alone (ErrStaleLeader).
// It returns the number of live leases and how long ago Redis was first
// seen restarted (or without the admission hash): leases renewed just
// before that may be missing from the count.
func (s *Store) SetAdmission(ctx context.Context, slot string, gen int64, a Admission, drain time.Duration) (int, time.Duration, error) {
	open := "0"
	if a.Open {
		open = "1"
	}
	run := s.runID(ctx)
	v, err := setAdmissionScript.Run(ctx, s.rdb, []string{s.admissionKey(slot), s.leasesKey(slot), s.genKey(slot)},
		gen, open, a.Model, a.Backend, drain.Milliseconds(), s.admissionChannel(slot), run).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("set admission: %w", err)
	}
	if len(v) == 0 || v[0] < 0 {
		return 0, 0, ErrStaleLeader
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("set admission: unexpected reply %v", v)
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}

// runID identifies the Redis process: it changes when Redis restarts.
// "unknown" when Redis does not say (the embedded one) or cannot be asked
// (the script that follows reports that error).
func (s *Store) runID(ctx context.Context) string {
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok {
			return v
		}
	}
	return "unknown"
}

// liveLeasesScript drops expired leases and reports how many remain and
// the longest time one has left (ms).
var liveLeasesScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n == 0 then return {0, 0} end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
return {n, tonumber(last[2]) - now}
`)

// LiveLeases reports how many direct-route leases are live and how long
// the longest has left.
func (s *Store) LiveLeases(ctx context.Context, slot string) (int, time.Duration, error) {
	v, err := liveLeasesScript.Run(ctx, s.rdb, []string{s.leasesKey(slot)}).Int64Slice()
	if err != nil || len(v) != 2 {
		return 0, 0, fmt.Errorf("read direct-route leases: %w", errors.Join(err, errShape(len(v) != 2)))
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}

func errShape(bad bool) error {
	if bad {
		return errors.New("unexpected reply")
	}
	return nil
}

// renewLeaseScript takes or extends a gateway's leases.
// KEYS: admission hash, leases set. ARGV: instance, ttl ms, used ("1" if
// the gateway served direct requests since its last renewal), then the
// epochs whose leases it holds. While admission is open the lease on its
// epoch is (re)granted for ttl; a lease on any other epoch only extends,
// and no further than the drain deadline.
// Returns {open, epoch, model, backend, granted ms, held ms...}.
var renewLeaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local a = redis.call('HMGET', KEYS[1], 'open', 'epoch', 'model', 'backend', 'drain_until')
local ttl = tonumber(ARGV[2])
local open = a[1] == '1'
local out = {open and 1 or 0, a[2] or '0', a[3] or '', a[4] or '', 0}
if open then
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1] .. '|' .. a[2])
  out[5] = ttl
  if ARGV[3] == '1' then redis.call('HSET', KEYS[1], 'last_use', now) end
end
for i = 4, #ARGV do
  local m = ARGV[1] .. '|' .. ARGV[i]
  local left = 0
  if open and ARGV[i] == a[2] then
    left = ttl
  else
    local score = redis.call('ZSCORE', KEYS[2], m)
    if score then
      local untl = now + ttl
      local dl = tonumber(a[5] or '0')
      if not open and dl < untl then untl = dl end
      if untl > tonumber(score) then redis.call('ZADD', KEYS[2], untl, m); score = untl end
      left = tonumber(score) - now
    end
  end
  out[#out + 1] = left
end
return out
`)

// RenewLease takes a lease on the open admission (if any) for instance and
// extends the leases it holds on the epochs in held.
func (s *Store) RenewLease(ctx context.Context, slot, instance string, ttl time.Duration, used bool, held []int64) (*LeaseGrant, error) {
	args := []any{instance, ttl.Milliseconds(), map[bool]string{true: "1", false: "0"}[used]}
	for _, g := range held {
		args = append(args, g)
	}
	v, err := renewLeaseScript.Run(ctx, s.rdb, []string{s.admissionKey(slot), s.leasesKey(slot)}, args...).Slice()
	if err != nil {
		return nil, fmt.Errorf("renew direct-route lease: %w", err)
	}
	if len(v) != 5+len(held) {
		return nil, fmt.Errorf("renew direct-route lease: unexpected reply of %d values", len(v))
	}
	str := func(x any) string { s, _ := x.(string); return s }
	num := func(x any) int64 {
		switch n := x.(type) {
		case int64:
			return n
		case string:
			i, _ := strconv.ParseInt(n, 10, 64)
			return i
		}
		return 0
	}
	g := &LeaseGrant{
		Admission: Admission{Open: num(v[0]) == 1, Epoch: num(v[1]), Model: str(v[2]), Backend: str(v[3])},
		Granted:   time.Duration(num(v[4])) * time.Millisecond,
		Held:      make(map[int64]time.Duration, len(held)),
	}
	for i, epoch := range held {
		g.Held[epoch] = time.Duration(num(v[5+i])) * time.Millisecond
	}
	return g, nil
}

// ReleaseLease lets go of a gateway's lease and tells a waiting leader.
func (s *Store) ReleaseLease(ctx context.Context, slot, member string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, s.leasesKey(slot), member)
		p.Publish(ctx, s.releasedChannel(slot), member)
		return nil
	})
	if err != nil {
		return fmt.Errorf("release direct-route lease: %w", err)
	}
	return nil
}

// LastDirectUse is when a gateway last reported serving a direct request
// (zero if never): the leader's idle rule counts it as activity.
func (s *Store) LastDirectUse(ctx context.Context, slot string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, s.admissionKey(slot), "last_use").Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read direct-route use: %w", err)
	}
	return time.UnixMilli(v), nil
}

// SubscribeAdmission listens for admission changes (gateways).
func (s *Store) SubscribeAdmission(ctx context.Context, slot string) *Subscriber {
	return s.subscribe(ctx, s.admissionChannel(slot))
}

// SubscribeReleases listens for released leases (the leader, waiting).
func (s *Store) SubscribeReleases(ctx context.Context, slot string) *Subscriber {
	return s.subscribe(ctx, s.releasedChannel(slot))
}
