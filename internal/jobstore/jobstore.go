// Package jobstore is the switchboard's Redis model: job records, per-model
// queues, streaming chunk logs, slot state and the notifications that tie
// the gateway and the orchestrator together. Every state transition is one
// atomic step (a Lua script or MULTI/EXEC), so a job is never in two states.
//
// The key schema is documented in docs/redis.md; keep the two in step.
package jobstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// Status is where a job is in its life.
type Status string

// Job statuses. Succeeded, Failed and Canceled are terminal.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Terminal reports whether a job in status s is finished for good.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// Mode is how the client waits for a job.
type Mode string

// Job modes.
const (
	ModeSync   Mode = "sync"
	ModeStream Mode = "stream"
	ModeAsync  Mode = "async"
)

// ErrNotFound means the job does not exist (or expired).
var ErrNotFound = errors.New("job not found")

// Job is one inference request and its outcome.
type Job struct {
	ID string
	// Model is the logical model name; ClientModel is the name the client
	// used (an alias, perhaps), restored in responses.
	Model       string
	ClientModel string
	// Path is the backend route, e.g. /v1/chat/completions.
	Path   string
	Mode   Mode
	Owner  string
	Status Status
	// Body is the request exactly as the backend must receive it.
	Body []byte
	// Notify is the channel of the gateway waiting for this job, if any.
	Notify string

	Created, Started, Finished time.Time
	Generation                 int64

	// ResultStatus, ResultType and Result are the backend's response.
	ResultStatus int
	ResultType   string
	Result       []byte
	// Error says why the job failed or was canceled.
	Error *openai.Error

	// chunkSeq counts the chunks an executor appended (AppendChunk).
	chunkSeq int64
}

// Stream reports whether the backend answers this job with SSE.
func (j *Job) Stream() bool { return j.Mode == ModeStream }

// NewID returns a random, unguessable job id (128 bits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return "job_" + hex.EncodeToString(b[:])
}

// Options tune a Store.
type Options struct {
	// Prefix namespaces every key and channel.
	Prefix string
	// ResultTTL is how long finished jobs and their chunks stay.
	ResultTTL time.Duration
	// StreamMaxLen caps a job's chunk log.
	StreamMaxLen int64
}

// Store reads and writes the Redis model.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient, opts Options) *Store {
	if opts.ResultTTL <= 0 {
		opts.ResultTTL = time.Hour
	}
	if opts.StreamMaxLen <= 0 {
		opts.StreamMaxLen = 100_000
	}
	return &Store{rdb: rdb, opts: opts}
}

// Client is the underlying Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) jobKey(id string) string      { return s.opts.Prefix + "job:" + id }
func (s *Store) queueKey(model string) string { return s.opts.Prefix + "queue:" + model }
func (s *Store) streamKey(id string) string   { return s.opts.Prefix + "stream:" + id }
func (s *Store) runningKey() string           { return s.opts.Prefix + "running" }
func (s *Store) failuresKey() string          { return s.opts.Prefix + "failures" }
func (s *Store) stateKey(slot string) string  { return s.opts.Prefix + "state:" + slot }
func (s *Store) leaderKey(slot string) string { return s.opts.Prefix + "leader:" + slot }
func (s *Store) genKey(slot string) string    { return s.opts.Prefix + "generation:" + slot }
func (s *Store) wakeChannel() string          { return s.opts.Prefix + "wake" }
func (s *Store) cancelChannel() string        { return s.opts.Prefix + "cancel" }
func (s *Store) GatewayChannel(instance string) string {
	return s.opts.Prefix + "gw:" + instance
}

func micros(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func fromMicros(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n == 0 {
		return time.Time{}
	}
	return time.UnixMicro(n)
}

// Limits bound what Enqueue accepts; zero means unbounded.
type Limits struct {
	MaxPending      int // queued jobs of the job's model
	MaxPendingTotal int // queued jobs of all models
	// Models lists every model, to count MaxPendingTotal.
	Models []string
}

// ErrQueueFull is returned by Enqueue when a limit is reached; Model is
// empty when the total limit was hit.
type ErrQueueFull struct {
	Model   string
	Pending int
	Limit   int
}

func (e *ErrQueueFull) Error() string {
	if e.Model == "" {
		return fmt.Sprintf("the switchboard has %d queued jobs, its limit (max_pending_total %d)", e.Pending, e.Limit)
	}
	return fmt.Sprintf("model %s has %d queued jobs, its limit (max_pending %d)", e.Model, e.Pending, e.Limit)
}

// enqueueScript checks the limits and the idempotency key, then stores the
// job as queued at the tail of its model's queue and wakes the
// orchestrator, all at once. KEYS: job, queue, idempotency key (or the job
// key again when there is none), then every model's queue. It answers
// {"ok", id}, {"dup", existing id} or {"full", model-or-empty, pending, limit}.
var enqueueScript = redis.NewScript(`
if ARGV[8] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'dup', existing} end
end
local limit = tonumber(ARGV[5])
if limit > 0 then
  local n = redis.call('ZCARD', KEYS[2])
  if n >= limit then return {'full', ARGV[4], tostring(n), ARGV[5]} end
end
local total = tonumber(ARGV[6])
if total > 0 then
  local n = 0
  for i = 4, #KEYS do n = n + redis.call('ZCARD', KEYS[i]) end
  if n >= total then return {'full', '', tostring(n), ARGV[6]} end
end
local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if ARGV[8] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[7]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return {'ok', ARGV[1], tostring(redis.call('ZRANK', KEYS[2], ARGV[1]) + 1)}
`)

// Enqueue stores j as queued at the tail of its model's queue and wakes
// the orchestrator, in one atomic step. With an idempotency key, a job
// the same owner already submitted under that key is returned instead
// (dup true) and nothing is stored. A full queue is *ErrQueueFull.
func (s *Store) Enqueue(ctx context.Context, j *Job) error {
	_, err := s.EnqueueWith(ctx, j, Limits{}, "")
	return err
}

// EnqueueWith is Enqueue with limits and an idempotency key ("" for none).
// It returns the id of the job that stands for the request: j's, or the
// earlier one's when the key was seen before.
func (s *Store) EnqueueWith(ctx context.Context, j *Job, lim Limits, idemKey string) (string, error) {
	id, _, err := s.EnqueueAt(ctx, j, lim, idemKey)
	return id, err
}

// EnqueueAt is EnqueueWith that also returns the new job's 1-based queue
// position, read in the same step (0 when the key named an earlier job).
func (s *Store) EnqueueAt(ctx context.Context, j *Job, lim Limits, idemKey string) (string, int, error) {
	if j.ID == "" || j.Model == "" {
		return "", 0, errors.New("enqueue: job needs an id and a model")
	}
	if j.Created.IsZero() {
		j.Created = time.Now()
	}
	j.Status = StatusQueued
	keys := []string{s.jobKey(j.ID), s.queueKey(j.Model), s.jobKey(j.ID)}
	useIdem := "0"
	if idemKey != "" {
		keys[2] = s.opts.Prefix + "idem:" + j.Owner + ":" + idemKey
		useIdem = "1"
	}
	if lim.MaxPendingTotal > 0 {
		for _, m := range lim.Models {
			keys = append(keys, s.queueKey(m))
		}
	}
	args := []any{j.ID, j.Created.UnixMicro(), s.wakeChannel(), j.Model, lim.MaxPending, lim.MaxPendingTotal,
		int64(s.opts.ResultTTL / time.Second), useIdem,
		"id", j.ID, "model", j.Model, "client_model", j.ClientModel, "path", j.Path, "mode", string(j.Mode),
		"owner", j.Owner, "status", string(StatusQueued), "body", j.Body, "notify", j.Notify,
		"created_us", micros(j.Created)}
	res, err := enqueueScript.Run(ctx, s.rdb, keys, args...).StringSlice()
	if err != nil {
		return "", 0, fmt.Errorf("enqueue job %s: %w", j.ID, err)
	}
	switch {
	case res[0] == "ok" && len(res) == 3:
		pos, _ := strconv.Atoi(res[2])
		return res[1], pos, nil
	case res[0] == "dup":
		return res[1], 0, nil
	case res[0] == "full":
		pending, _ := strconv.Atoi(res[2])
		limit, _ := strconv.Atoi(res[3])
		return "", 0, &ErrQueueFull{Model: res[1], Pending: pending, Limit: limit}
	}
	return "", 0, fmt.Errorf("enqueue job %s: unexpected answer %v", j.ID, res)
}

// QueuePosition returns the 1-based position of a queued job in its
// model's queue (0 when it is not queued).
func (s *Store) QueuePosition(ctx context.Context, j *Job) (int, error) {
	rank, err := s.rdb.ZRank(ctx, s.queueKey(j.Model), j.ID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue position of %s: %w", j.ID, err)
	}
	return int(rank) + 1, nil
}

// Get reads a job.
func (s *Store) Get(ctx context.Context, id string) (*Job, error) {
	m, err := s.rdb.HGetAll(ctx, s.jobKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	if len(m) == 0 {
		return nil, ErrNotFound
	}
	return jobFromHash(m), nil
}

func jobFromHash(m map[string]string) *Job {
	j := &Job{
		ID:          m["id"],
		Model:       m["model"],
		ClientModel: m["client_model"],
		Path:        m["path"],
		Mode:        Mode(m["mode"]),
		Owner:       m["owner"],
		Status:      Status(m["status"]),
		Body:        []byte(m["body"]),
		Notify:      m["notify"],
		Created:     fromMicros(m["created_us"]),
		Started:     fromMicros(m["started_us"]),
		Finished:    fromMicros(m["finished_us"]),
		ResultType:  m["result_type"],
	}
	j.Generation, _ = strconv.ParseInt(m["generation"], 10, 64)
	j.ResultStatus, _ = strconv.Atoi(m["result_status"])
	if r, ok := m["result"]; ok {
		j.Result = []byte(r)
	}
	if e := m["error"]; e != "" {
		var env openai.Envelope
		if json.Unmarshal([]byte(e), &env) == nil && env.Error != nil {
			env.Error.Status, _ = strconv.Atoi(m["error_status"])
			env.Error.RetryAfter, _ = strconv.Atoi(m["error_retry_after"])
			j.Error = env.Error
		}
	}
	return j
}

// QueueInfo summarises one model's queue for the scheduler.
type QueueInfo struct {
	Pending int
	// HeadSince is when the oldest pending job was enqueued (zero if none).
	HeadSince time.Time
}

// Snapshot reads every model's queue length and head age in one round trip.
func (s *Store) Snapshot(ctx context.Context, models []string) (map[string]QueueInfo, error) {
	p := s.rdb.Pipeline()
	cards := make([]*redis.IntCmd, len(models))
	heads := make([]*redis.ZSliceCmd, len(models))
	for i, m := range models {
		cards[i] = p.ZCard(ctx, s.queueKey(m))
		heads[i] = p.ZRangeWithScores(ctx, s.queueKey(m), 0, 0)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("snapshot queues: %w", err)
	}
	out := make(map[string]QueueInfo, len(models))
	for i, m := range models {
		qi := QueueInfo{Pending: int(cards[i].Val())}
		if h := heads[i].Val(); len(h) > 0 {
			qi.HeadSince = time.UnixMicro(int64(h[0].Score))
		}
		out[m] = qi
	}
	return out, nil
}

// claimScript pops up to n queued jobs of a model and marks them running
// under generation gen. Canceled jobs left in the queue are skipped. A
// term that a newer one replaced claims nothing (fencing: KEYS[3] holds
// the slot's current generation).
var claimScript = redis.NewScript(`
local out = {}
if tonumber(redis.call('GET', KEYS[3]) or '0') > tonumber(ARGV[2]) then return out end
local n = tonumber(ARGV[1])
while #out < n * 4 do
  local popped = redis.call('ZPOPMIN', KEYS[1])
  if #popped == 0 then break end
  local id = popped[1]
  local jk = ARGV[4] .. id
  if redis.call('HGET', jk, 'status') == 'queued' then
    redis.call('HSET', jk, 'status', 'running', 'started_us', ARGV[3], 'generation', ARGV[2])
    redis.call('HDEL', jk, 'chunk_seq')
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    local f = redis.call('HMGET', jk, 'path', 'mode', 'notify', 'body')
    table.insert(out, id)
    table.insert(out, f[1] or '')
    table.insert(out, f[2] or '')
    table.insert(out, (f[3] or '') .. '\n' .. (f[4] or ''))
  end
end
return out
`)

// Claim moves up to n jobs from the head of model's queue to running,
// under generation gen of slot, and returns them. A stale generation
// claims nothing.
func (s *Store) Claim(ctx context.Context, slot, model string, n int, gen int64) ([]*Job, error) {
	if n <= 0 {
		return nil, nil
	}
	now := time.Now()
	res, err := claimScript.Run(ctx, s.rdb,
		[]string{s.queueKey(model), s.runningKey(), s.genKey(slot)},
		n, gen, micros(now), s.opts.Prefix+"job:").StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim jobs of %s: %w", model, err)
	}
	jobs := make([]*Job, 0, len(res)/4)
	for i := 0; i+3 < len(res); i += 4 {
		notify, body, _ := strings.Cut(res[i+3], "\n")
		jobs = append(jobs, &Job{
			ID: res[i], Model: model, Path: res[i+1], Mode: Mode(res[i+2]),
			Notify: notify, Body: []byte(body),
			Status: StatusRunning, Started: now, Generation: gen,
		})
	}
	return jobs, nil
}

// appendScript adds one chunk to a job's log and, when a gateway waits,
// publishes it there with the chunk's id so the gateway can deduplicate
// against a resync from the log.
// ARGV[7] numbers the chunk within the execution: a call repeated after a
// lost reply (go-redis retries when Redis restarts) appends nothing twice.
var appendScript = redis.NewScript(`
local f = redis.call('HMGET', KEYS[2], 'status', 'generation', 'chunk_seq')
if f[1] ~= 'running' or f[2] ~= ARGV[6] then return false end
if tonumber(ARGV[7]) <= tonumber(f[3] or '0') then return 'dup' end
redis.call('HSET', KEYS[2], 'chunk_seq', ARGV[7])
local eid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'd', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], 'c|' .. ARGV[4] .. '|' .. eid .. '|' .. ARGV[5])
end
return eid
`)

// ErrFenced means the job is no longer this executor's: it finished, was
// canceled, or a newer leader term owns it now.
var ErrFenced = errors.New("job no longer owned by this executor")

// AppendChunk appends one SSE payload to the job's chunk log, if the job
// still runs under j's generation. j is the executor's claimed copy: it
// counts the chunks, so a retried append is not logged twice.
func (s *Store) AppendChunk(ctx context.Context, j *Job, data []byte) error {
	ttl := int64(s.opts.ResultTTL / time.Second)
	j.chunkSeq++
	err := appendScript.Run(ctx, s.rdb, []string{s.streamKey(j.ID), s.jobKey(j.ID)},
		s.opts.StreamMaxLen, ttl, j.Notify, j.ID, data, j.Generation, j.chunkSeq).Err()
	if errors.Is(err, redis.Nil) {
		return ErrFenced
	}
	if err != nil {
		return fmt.Errorf("append chunk to job %s: %w", j.ID, err)
	}
	return nil
}

// Outcome is how a job ended.
type Outcome struct {
	Status       Status
	ResultStatus int
	ResultType   string
	Result       []byte
	Error        *openai.Error
	// Generation, when set, applies the outcome only to a job running
	// under that leader term (an executor's fencing token). OnlyQueued
	// applies it only to a job still queued.
	Generation int64
	OnlyQueued bool
}

// finishScript moves a queued or running job to a terminal status, sets
// its expiry and tells the waiting gateway. A job already terminal is left
// alone (returns 0): the first outcome wins.
var finishScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' and st ~= 'queued' then return 0 end
if ARGV[14] == '1' and st ~= 'queued' then return 0 end
if ARGV[13] ~= '0' and (st ~= 'running' or redis.call('HGET', KEYS[1], 'generation') ~= ARGV[13]) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_us', ARGV[3],
  'result_status', ARGV[5], 'result_type', ARGV[6], 'result', ARGV[7],
  'error', ARGV[8], 'error_status', ARGV[9], 'error_retry_after', ARGV[12])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
if st == 'queued' then
  redis.call('ZREM', ARGV[10] .. redis.call('HGET', KEYS[1], 'model'), ARGV[1])
end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
local notify = redis.call('HGET', KEYS[1], 'notify')
if notify and notify ~= '' then
  redis.call('PUBLISH', notify, 'd|' .. ARGV[1] .. '|' .. ARGV[2])
end
if ARGV[2] == 'failed' then
  redis.call('LPUSH', ARGV[11], ARGV[1])
  redis.call('LTRIM', ARGV[11], 0, 49)
end
return 1
`)

// Finish records a job's outcome. It reports false when the job was
// already terminal (or gone), in which case nothing changed.
func (s *Store) Finish(ctx context.Context, id string, o Outcome) (bool, error) {
	if !o.Status.Terminal() {
		return false, fmt.Errorf("finish job %s: %q is not a terminal status", id, o.Status)
	}
	var errJSON []byte
	errStatus, retryAfter := 0, 0
	if o.Error != nil {
		errJSON = o.Error.Body()
		errStatus, retryAfter = o.Error.Status, o.Error.RetryAfter
	}
	ttl := int64(s.opts.ResultTTL / time.Second)
	onlyQueued := "0"
	if o.OnlyQueued {
		onlyQueued = "1"
	}
	n, err := finishScript.Run(ctx, s.rdb,
		[]string{s.jobKey(id), s.runningKey(), s.streamKey(id)},
		id, string(o.Status), micros(time.Now()), ttl,
		o.ResultStatus, o.ResultType, o.Result, errJSON, errStatus,
		s.opts.Prefix+"queue:", s.failuresKey(), retryAfter, o.Generation, onlyQueued).Int()
	if err != nil {
		return false, fmt.Errorf("finish job %s: %w", id, err)
	}
	return n == 1, nil
}

// FailQueued fails every job queued for model with e (a model that could
// not start, say) and returns how many it failed.
func (s *Store) FailQueued(ctx context.Context, model string, e *openai.Error) (int, error) {
	failed := 0
	for {
		ids, err := s.rdb.ZRange(ctx, s.queueKey(model), 0, 255).Result()
		if err != nil {
			return failed, fmt.Errorf("list queue of %s: %w", model, err)
		}
		if len(ids) == 0 {
			return failed, nil
		}
		for _, id := range ids {
			ok, err := s.Finish(ctx, id, Outcome{Status: StatusFailed, Error: e, OnlyQueued: true})
			if err != nil {
				return failed, err
			}
			if ok {
				failed++
			} else {
				// Not queued any more (canceled meanwhile): drop the stale entry.
				s.rdb.ZRem(ctx, s.queueKey(model), id)
			}
		}
	}
}

// cancelScript cancels a queued job at once, or flags a running one and
// asks its executor to abort. It returns the status the job had.
var cancelScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return false end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return st
`)

// Cancel cancels job id. A queued job becomes canceled now; a running job
// is aborted by its executor, which records the canceled outcome. The
// status the job had before is returned (ErrNotFound if none).
func (s *Store) Cancel(ctx context.Context, id, reason string) (Status, error) {
	return s.cancel(ctx, id, reason, false)
}

// CancelHard cancels like Cancel and, for a running job, also asks the
// leader to restart the backend: the answer to a hung generation.
func (s *Store) CancelHard(ctx context.Context, id, reason string) (Status, error) {
	return s.cancel(ctx, id, reason, true)
}

func (s *Store) cancel(ctx context.Context, id, reason string, hard bool) (Status, error) {
	msg := id
	if hard {
		msg += "|hard"
	}
	st, err := cancelScript.Run(ctx, s.rdb, []string{s.jobKey(id)}, id, s.cancelChannel(), msg).Text()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("cancel job %s: %w", id, err)
	}
	if Status(st) == StatusQueued {
		ok, err := s.Finish(ctx, id, Outcome{Status: StatusCanceled, OnlyQueued: true,
			Error: openai.Errorf(499, "canceled", "canceled", "", "%s", reason)})
		if err != nil {
			return StatusQueued, err
		}
		if !ok {
			// Claimed in between: it runs now, so abort it like one.
			return s.cancel(ctx, id, reason, hard)
		}
	}
	return Status(st), nil
}

// Chunk is one entry of a job's chunk log.
type Chunk struct {
	ID   string
	Data []byte
}

// Chunks returns the chunks logged after the chunk id after ("" for all).
func (s *Store) Chunks(ctx context.Context, id, after string) ([]Chunk, error) {
	if after == "" {
		after = "0-0"
	}
	res, err := s.rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{s.streamKey(id), after},
		Block:   -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read chunks of job %s: %w", id, err)
	}
	var out []Chunk
	for _, st := range res {
		for _, m := range st.Messages {
			d, _ := m.Values["d"].(string)
			out = append(out, Chunk{ID: m.ID, Data: []byte(d)})
		}
	}
	return out, nil
}

// StreamComplete reports whether a streaming job's chunk log ends with
// [DONE]: its client had the whole answer.
func (s *Store) StreamComplete(ctx context.Context, id string) (bool, error) {
	msgs, err := s.rdb.XRevRangeN(ctx, s.streamKey(id), "+", "-", 1).Result()
	if err != nil {
		return false, fmt.Errorf("read last chunk of job %s: %w", id, err)
	}
	if len(msgs) == 0 {
		return false, nil
	}
	d, _ := msgs[0].Values["d"].(string)
	return d == "[DONE]", nil
}

// Orphans lists running jobs claimed by a generation older than gen:
// their executor died with its leader.
func (s *Store) Orphans(ctx context.Context, gen int64) ([]string, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.runningKey(), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(gen, 10),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list orphaned jobs: %w", err)
	}
	return ids, nil
}

// NextGeneration increments and returns the slot's leader generation.
// Every leadership term has its own, so jobs can be told apart by term.
func (s *Store) NextGeneration(ctx context.Context, slot string) (int64, error) {
	g, err := s.rdb.Incr(ctx, s.genKey(slot)).Result()
	if err != nil {
		return 0, fmt.Errorf("next generation of slot %s: %w", slot, err)
	}
	return g, nil
}

// maxRequeues bounds how often a job orphaned by a dying leader is put
// back: a request that keeps killing leaders must not loop forever.
const maxRequeues = 3

// recoverScript decides the fate of a job orphaned by a dead leader: if
// nothing of it reached the client (no chunk logged) it goes back to the
// head of its queue (its original enqueue time keeps its place); else it
// must be failed. It answers requeued, sent, exhausted or gone.
var recoverScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'running' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 'gone'
end
local gen = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if (ARGV[6] == 'exact' and gen ~= tonumber(ARGV[5])) or (ARGV[6] == 'below' and gen >= tonumber(ARGV[5])) then
  return 'gone'
end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'sent' end
if redis.call('HINCRBY', KEYS[1], 'requeues', 1) > tonumber(ARGV[4]) then return 'exhausted' end
local f = redis.call('HMGET', KEYS[1], 'model', 'created_us')
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'started_us', 'generation')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', ARGV[2] .. f[1], f[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], f[1])
return 'requeued'
`)

// Recovery is what RecoverOrphan did with a job.
type Recovery string

// Recovery outcomes.
const (
	Requeued  Recovery = "requeued"  // back in its queue, nothing had reached the client
	Sent      Recovery = "sent"      // part of it reached the client: the caller must fail it
	Exhausted Recovery = "exhausted" // requeued too often: the caller must fail it
	Gone      Recovery = "gone"      // no longer running
)

// RecoverOrphan re-queues a job whose executor is gone if nothing of it
// reached the client yet; otherwise it reports that the job must be
// failed. Only a job running under a generation older than below is
// touched (a new term settling its predecessors' jobs); with exact, only
// one running under exactly that generation (a term handing over its own).
func (s *Store) RecoverOrphan(ctx context.Context, id string, gen int64, exact bool) (Recovery, error) {
	mode := "below"
	if exact {
		mode = "exact"
	}
	r, err := recoverScript.Run(ctx, s.rdb, []string{s.jobKey(id), s.runningKey(), s.streamKey(id)},
		id, s.opts.Prefix+"queue:", s.wakeChannel(), maxRequeues, gen, mode).Text()
	if err != nil {
		return "", fmt.Errorf("recover job %s: %w", id, err)
	}
	return Recovery(r), nil
}

// ExpireQueued fails the jobs of model queued before cutoff with e and
// returns how many it failed.
func (s *Store) ExpireQueued(ctx context.Context, model string, cutoff time.Time, e *openai.Error) (int, error) {
	ids, err := s.rdb.ZRangeByScore(ctx, s.queueKey(model), &redis.ZRangeBy{
		Min: "-inf", Max: "(" + strconv.FormatInt(cutoff.UnixMicro(), 10),
	}).Result()
	if err != nil {
		return 0, fmt.Errorf("list expired jobs of %s: %w", model, err)
	}
	n := 0
	for _, id := range ids {
		ok, err := s.Finish(ctx, id, Outcome{Status: StatusFailed, Error: e, OnlyQueued: true})
		if err != nil {
			return n, err
		}
		if ok {
			n++
		} else {
			s.rdb.ZRem(ctx, s.queueKey(model), id)
		}
	}
	return n, nil
}

// RunningJob is a job an executor serves now.
type RunningJob struct {
	ID, Model, Owner string
	Started          time.Time
	Generation       int64
}

// Running lists the running jobs.
func (s *Store) Running(ctx context.Context) ([]RunningJob, error) {
	ids, err := s.rdb.ZRange(ctx, s.runningKey(), 0, 999).Result()
	if err != nil {
		return nil, fmt.Errorf("list running jobs: %w", err)
	}
	p := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = p.HMGet(ctx, s.jobKey(id), "model", "owner", "started_us", "generation")
	}
	if len(ids) > 0 {
		if _, err := p.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read running jobs: %w", err)
		}
	}
	out := make([]RunningJob, 0, len(ids))
	for i, id := range ids {
		v := cmds[i].Val()
		str := func(k int) string { x, _ := v[k].(string); return x }
		gen, _ := strconv.ParseInt(str(3), 10, 64)
		out = append(out, RunningJob{ID: id, Model: str(0), Owner: str(1), Started: fromMicros(str(2)), Generation: gen})
	}
	return out, nil
}

// RecentFailures returns the last failed jobs (newest first) that still
// exist.
func (s *Store) RecentFailures(ctx context.Context, n int) ([]*Job, error) {
	ids, err := s.rdb.LRange(ctx, s.failuresKey(), 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("list recent failures: %w", err)
	}
	var out []*Job
	for _, id := range ids {
		j, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		j.Body, j.Result = nil, nil
		out = append(out, j)
	}
	return out, nil
}

// CancelRequested reports whether a cancel was asked for a running job
// (for a leader that may have missed the notification).
func (s *Store) CancelRequested(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.jobKey(id), "cancel_requested").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read cancel flag of %s: %w", id, err)
	}
	return v == "1", nil
}
