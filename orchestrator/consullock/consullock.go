// Package consullock is the production Lock: leadership is a Consul KV key
// acquired with a session, the recipe of Consul's leader-election guide and
// of the api package's Lock helper, with the loss detection the
// orchestrator needs spelled out.
//
// One term is one session: create it (TTL, lock-delay, behavior release),
// renew it every TTL/2, wait for the key with blocking queries and acquire
// it, run fn, release the key (no lock-delay for the next holder), destroy
// the session. fn's context ends the moment the term may be over: the key
// no longer names our session, Consul says the session is gone, or
// renewals have failed for so long that the session may have expired.
// Held.Check re-reads the key with a consistent read before every
// mutating step, so a paused ex-leader does not act on stale belief
// (DESIGN.md, invariant 4).
//
// This is the only package that uses consul/api for locking.
package consullock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/orchestrator"
)

var _ orchestrator.Lock = (*Lock)(nil)

// ErrLockLost is the cause of a term that ended because leadership may
// have passed to someone else. fn's context carries it
// (context.Cause), and Check returns it wrapped.
var ErrLockLost = errors.New("consul lock lost")

// errTermEnded is the cause of a term that ended because fn returned or
// RunWhileHeld's context ended; a Held kept past its term fails with it.
var errTermEnded = errors.New("leadership term ended")

// SessionName names the lock sessions in Consul's UI and session list.
const SessionName = "llm-switchboard-orchestrator"

const (
	defaultSessionTTL = 15 * time.Second
	defaultLockDelay  = 15 * time.Second
	defaultRetryMax   = 10 * time.Second
	// watchWait is the wait of blocking reads of the lock key.
	watchWait = 5 * time.Minute
	// delayRetryMax caps the retries of an acquire refused while the key
	// looks free (the lock-delay of an invalidated holder): Consul does
	// not say when the delay ends, so we look again about once a second
	// at most, instead of the api helper's fixed 5 s.
	delayRetryMax = time.Second
	// cleanupMax bounds release and destroy at the end of a term, which
	// run even when RunWhileHeld's context is already over.
	cleanupMax = 5 * time.Second
)

// Options configures a Lock.
type Options struct {
	// Client talks to the local Consul agent; the caller builds it (address,
	// token, TLS) and owns it.
	Client *api.Client
	// Key is the KV key of the lock, e.g. "llm-switchboard/leader".
	Key string
	// SessionTTL is the session's TTL; default 15s. Consul refuses TTLs
	// under 10s (the create error is logged and retried). A leader that
	// cannot renew for a TTL gives up leadership; Consul frees the key of
	// a dead leader after up to 2xTTL.
	SessionTTL time.Duration
	// LockDelay is how long Consul keeps the key from others after our
	// session is invalidated while holding it; default 15s (Consul's).
	// A voluntary release imposes none.
	LockDelay time.Duration
	// Holder says who we are; it is stored in the lock value as JSON
	// {"holder","node","pid","since"} for operators. Default: the host
	// name.
	Holder string
	// Log receives the lock's events under the name "consullock"; default:
	// discard.
	Log hclog.Logger
	// RetryMax caps the jittered exponential backoff while Consul is
	// unreachable or refusing; default 10s.
	RetryMax time.Duration
}

// Lock is leadership as a Consul session lock on one key. A Lock holds no
// state between terms; one value may serve any number of RunWhileHeld
// calls.
type Lock struct {
	kv       *api.KV
	sessions *api.Session
	opts     Options
	log      hclog.Logger
	node     string
	pid      int
}

// New checks opts and fills in defaults. It does not talk to Consul:
// RunWhileHeld waits for Consul as it waits for the lock.
func New(opts Options) (*Lock, error) {
	if opts.Client == nil {
		return nil, errors.New("consullock: no consul client")
	}
	if opts.Key == "" || strings.HasPrefix(opts.Key, "/") {
		return nil, fmt.Errorf("consullock: lock key %q must be non-empty and not start with /", opts.Key)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"session TTL", &opts.SessionTTL, defaultSessionTTL},
		{"lock-delay", &opts.LockDelay, defaultLockDelay},
		{"retry cap", &opts.RetryMax, defaultRetryMax},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("consullock: negative %s %s", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	node, err := os.Hostname()
	if err != nil {
		node = "unknown"
	}
	if opts.Holder == "" {
		opts.Holder = node
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	return &Lock{
		kv:       opts.Client.KV(),
		sessions: opts.Client.Session(),
		opts:     opts,
		log:      opts.Log.Named("consullock").With("key", opts.Key),
		node:     node,
		pid:      os.Getpid(),
	}, nil
}

// RunWhileHeld implements orchestrator.Lock. It waits for Consul and for
// the lock as long as ctx lasts, creating a new session whenever the one
// it waits with dies. Release and session destroy failures at the end of
// a term are logged, not returned: the term is over either way, and
// Consul frees the key when the session expires.
func (l *Lock) RunWhileHeld(ctx context.Context, fn func(context.Context, orchestrator.Held) error) error {
	retry := l.backoff(l.opts.RetryMax)
	for {
		id, created, err := l.createSession(ctx, retry)
		if err != nil {
			return err
		}
		ran, err := l.term(ctx, id, created, fn)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if ran {
			return err
		}
		l.log.Warn("session ended while waiting for the lock, starting over", "session", id, "error", err)
	}
}

// createSession creates the term's session, retrying until ctx ends. It
// returns when the request was sent, where the session's TTL starts at
// the latest.
func (l *Lock) createSession(ctx context.Context, retry *backoff) (string, time.Time, error) {
	entry := &api.SessionEntry{
		Name:      SessionName,
		TTL:       l.opts.SessionTTL.String(),
		LockDelay: l.opts.LockDelay,
		Behavior:  api.SessionBehaviorRelease,
	}
	for {
		sent := time.Now()
		cctx, cancel := context.WithTimeout(ctx, l.opts.SessionTTL)
		id, _, err := l.sessions.Create(entry, (&api.WriteOptions{}).WithContext(cctx))
		cancel()
		if err == nil {
			retry.reset()
			return id, sent, nil
		}
		if ctx.Err() != nil {
			return "", time.Time{}, ctx.Err()
		}
		d := retry.next()
		l.logCallError(l.log, "create session", err, d)
		if err := sleep(ctx, d); err != nil {
			return "", time.Time{}, err
		}
	}
}

// term runs one session: renew it, acquire the key, run fn while the key
// is ours, release and destroy. ran reports whether fn ran; when it did
// not, err says why the wait ended.
func (l *Lock) term(ctx context.Context, id string, created time.Time, fn func(context.Context, orchestrator.Held) error) (ran bool, err error) {
	log := l.log.With("session", id)
	tctx, end := context.WithCancelCause(ctx)
	lease := newLease(created, l.opts.SessionTTL)
	var (
		wg    sync.WaitGroup
		value []byte
	)
	wg.Go(func() { l.renew(tctx, end, log, id, lease) })
	defer func() {
		// Monitors stop before the release, so a release is not reported
		// as a loss; the release runs even when fn panicked.
		end(errTermEnded)
		wg.Wait()
		l.cleanup(ctx, log, id, value)
	}()

	value, err = l.acquire(tctx, log, id)
	if err != nil {
		return false, err
	}
	log.Info("acquired the lock")
	wg.Go(func() { l.watch(tctx, end, log, id) })
	return true, fn(tctx, &held{l: l, id: id, ctx: tctx, lose: end, log: log, lease: lease})
}

// acquire waits until the key is free and takes it with session id,
// returning the value written. It returns context.Cause(ctx) when ctx
// ends (our session died, or RunWhileHeld's ctx ended).
func (l *Lock) acquire(ctx context.Context, log hclog.Logger, id string) ([]byte, error) {
	var (
		idx        uint64
		retry      = l.backoff(l.opts.RetryMax)
		delayed    = l.backoff(delayRetryMax)
		lastHolder string
	)
	fail := func(action string, err error) error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		idx = 0
		d := retry.next()
		l.logCallError(log, action, err, d)
		if sleep(ctx, d) != nil {
			return context.Cause(ctx)
		}
		return nil
	}
	for {
		q := &api.QueryOptions{WaitIndex: idx, WaitTime: watchWait}
		pair, meta, err := l.kv.Get(l.opts.Key, q.WithContext(ctx))
		if err != nil {
			if err := fail("read lock key", err); err != nil {
				return nil, err
			}
			continue
		}
		retry.reset()
		if pair != nil && pair.Session == id {
			// An acquire whose answer we lost went through.
			return pair.Value, nil
		}
		if pair != nil && pair.Session != "" {
			if pair.Session != lastHolder {
				lastHolder = pair.Session
				log.Info("lock held by another session, waiting", "holder_session", pair.Session, "holder", string(pair.Value))
			}
			idx = nextIndex(idx, meta.LastIndex)
			delayed.reset()
			continue
		}

		value := l.value()
		p := &api.KVPair{Key: l.opts.Key, Value: value, Session: id, Flags: api.LockFlagValue}
		ok, _, err := l.kv.Acquire(p, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			if err := fail("acquire lock key", err); err != nil {
				return nil, err
			}
			continue
		}
		if ok {
			return value, nil
		}
		// Refused although the key looked free: another contender won
		// the race, or the lock-delay of an invalidated holder is still
		// running. Look again shortly.
		idx = 0
		d := delayed.next()
		log.Debug("acquire refused (lock-delay or lost race), retrying", "retry_in", d)
		if sleep(ctx, d) != nil {
			return nil, context.Cause(ctx)
		}
	}
}

// renew keeps session id alive while ctx lasts. It ends the term when
// Consul no longer knows the session, or when the lease ran out: no
// renewal went through for a TTL after it was sent (so after TTL/2 of
// failed renewals), when the session may have expired on the servers.
func (l *Lock) renew(ctx context.Context, end context.CancelCauseFunc, log hclog.Logger, id string, ls *lease) {
	ttl := l.opts.SessionTTL
	retry := l.backoff(max(ttl/8, time.Millisecond))
	retry.min = max(ttl/20, time.Millisecond)
	wait := ttl / 2
	var lastErr error
	for {
		if sleep(ctx, wait) != nil {
			return
		}
		deadline := ls.deadline()
		if !time.Now().Before(deadline) {
			err := fmt.Errorf("%w: session %s not renewed within its TTL of %s", ErrLockLost, id, ttl)
			if lastErr != nil {
				err = fmt.Errorf("%w: last renewal: %w", err, lastErr)
			}
			log.Error("giving up the session: renewals failed for too long", "error", err)
			end(err)
			return
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(ctx, deadline)
		entry, _, err := l.sessions.Renew(id, (&api.WriteOptions{}).WithContext(rctx))
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			lastErr = err
			wait = min(retry.next(), time.Until(deadline))
			l.logCallError(log, "renew session", err, wait)
		case entry == nil:
			err := fmt.Errorf("%w: consul invalidated session %s", ErrLockLost, id)
			log.Error("session invalidated", "error", err)
			end(err)
			return
		default:
			ls.renewed(sent)
			retry.reset()
			lastErr = nil
			wait = ttl / 2
		}
	}
}

// watch follows the lock key with consistent blocking reads while ctx
// lasts, and ends the term as soon as the key no longer names session id.
// Read errors are retried: if Consul stays unreachable, renew ends the
// term.
func (l *Lock) watch(ctx context.Context, end context.CancelCauseFunc, log hclog.Logger, id string) {
	var idx uint64
	retry := l.backoff(l.opts.RetryMax)
	for {
		q := &api.QueryOptions{RequireConsistent: true, WaitIndex: idx, WaitTime: watchWait}
		pair, meta, err := l.kv.Get(l.opts.Key, q.WithContext(ctx))
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			idx = 0
			d := retry.next()
			l.logCallError(log, "watch lock key", err, d)
			if sleep(ctx, d) != nil {
				return
			}
			continue
		}
		retry.reset()
		if err := notOurs(l.opts.Key, pair, id); err != nil {
			log.Error("lost the lock", "error", err)
			end(err)
			return
		}
		idx = nextIndex(idx, meta.LastIndex)
	}
}

// cleanup releases the key and destroys the session, bounded by
// cleanupMax even when ctx is over. The release runs even when we never
// saw the key as ours: an acquire whose answer was lost may have taken it,
// and releasing (instead of letting the destroy free it) spares the next
// holder the lock-delay. Consul refuses the release when we do not hold
// the key.
func (l *Lock) cleanup(ctx context.Context, log hclog.Logger, id string, value []byte) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(l.opts.SessionTTL, cleanupMax))
	defer cancel()
	w := (&api.WriteOptions{}).WithContext(cctx)
	p := &api.KVPair{Key: l.opts.Key, Value: value, Session: id, Flags: api.LockFlagValue}
	ok, _, err := l.kv.Release(p, w)
	switch {
	case err != nil:
		log.Error("release lock failed; if we held it, others wait for the session to expire, then the lock-delay", "error", err)
	case ok:
		log.Info("released the lock")
	}
	if _, err := l.sessions.Destroy(id, w); err != nil {
		log.Error("destroy session failed; it expires after its TTL", "error", err)
	}
}

// value is the lock value: who holds it, since when.
func (l *Lock) value() []byte {
	b, err := json.Marshal(lockValue{Holder: l.opts.Holder, Node: l.node, PID: l.pid, Since: time.Now().UTC()})
	if err != nil {
		panic(fmt.Sprintf("consullock: marshal lock value: %v", err)) // plain struct; cannot fail
	}
	return b
}

// lockValue is the JSON stored in the lock key for operators (Consul UI,
// /status).
type lockValue struct {
	Holder string    `json:"holder"`
	Node   string    `json:"node"`
	PID    int       `json:"pid"`
	Since  time.Time `json:"since"`
}

// logCallError logs a failed Consul call that will be retried, naming
// Consul's address when the failure is at the connection level.
func (l *Lock) logCallError(log hclog.Logger, action string, err error, retryIn time.Duration) {
	if addr, ok := unreachable(err); ok {
		log.Error(fmt.Sprintf("consul at %s unreachable", addr), "action", action, "error", err, "retry_in", retryIn)
		return
	}
	log.Error(action+" failed", "error", err, "retry_in", retryIn)
}

// unreachable reports whether err happened at the connection level (no
// HTTP answer), and to which address.
func unreachable(err error) (string, bool) {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return "", false
	}
	if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
		return u.Host, true
	}
	return ue.URL, true
}

// notOurs says why pair does not show key held by session id, or nil.
func notOurs(key string, pair *api.KVPair, id string) error {
	switch {
	case pair == nil:
		return fmt.Errorf("%w: key %q was deleted", ErrLockLost, key)
	case pair.Session == "":
		return fmt.Errorf("%w: key %q is free; session %s no longer holds it", ErrLockLost, key, id)
	case pair.Session != id:
		return fmt.Errorf("%w: key %q is held by session %s, not ours (%s)", ErrLockLost, key, pair.Session, id)
	}
	return nil
}

// nextIndex applies Consul's blocking-query index rules: an index that
// went backwards resets the wait, and an index is never 0 after an answer.
func nextIndex(prev, got uint64) uint64 {
	switch {
	case got < prev:
		return 0
	case got == 0:
		return 1
	}
	return got
}

// held is the proof of one term.
type held struct {
	l     *Lock
	id    string
	ctx   context.Context // the term's; done once the term is over
	lose  context.CancelCauseFunc
	log   hclog.Logger
	lease *lease
}

// Check implements orchestrator.Held: it fails at once, without I/O,
// when the term is known to be over or the lease ran out; otherwise it
// asks the Consul servers (a consistent read) whether the key still
// names our session.
func (h *held) Check(ctx context.Context) error {
	if h.ctx.Err() != nil {
		return context.Cause(h.ctx)
	}
	deadline := h.lease.deadline()
	if !time.Now().Before(deadline) {
		err := fmt.Errorf("%w: session %s not renewed within its TTL", ErrLockLost, h.id)
		h.log.Error("lease ran out", "error", err)
		h.lose(err)
		return err
	}
	// The read ends with the term or the lease: an answer after either
	// proves nothing.
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	pair, _, err := h.l.kv.Get(h.l.opts.Key, (&api.QueryOptions{RequireConsistent: true}).WithContext(rctx))
	if h.ctx.Err() != nil {
		return context.Cause(h.ctx)
	}
	if err != nil {
		return fmt.Errorf("check consul lock %q: %w", h.l.opts.Key, err)
	}
	if err := notOurs(h.l.opts.Key, pair, h.id); err != nil {
		h.log.Error("lost the lock", "error", err)
		h.lose(err)
		return err
	}
	return nil
}

// lease tracks until when the session is surely alive on the servers: a
// TTL after the last successful renewal was sent. Written by renew, read
// by Check.
type lease struct {
	base  time.Time // monotonic origin
	ttl   time.Duration
	until atomic.Int64 // deadline as a time.Duration after base
}

func newLease(created time.Time, ttl time.Duration) *lease {
	ls := &lease{base: created, ttl: ttl}
	ls.until.Store(int64(ttl))
	return ls
}

func (ls *lease) renewed(sent time.Time) { ls.until.Store(int64(sent.Sub(ls.base) + ls.ttl)) }

func (ls *lease) deadline() time.Time { return ls.base.Add(time.Duration(ls.until.Load())) }

// backoff is capped exponential backoff with equal jitter.
type backoff struct {
	min, max, cur time.Duration
}

func (l *Lock) backoff(maxDelay time.Duration) *backoff {
	return &backoff{min: min(100*time.Millisecond, maxDelay), max: maxDelay}
}

// next returns the next delay: the current step doubled (up to max), half
// of it fixed and half random.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
