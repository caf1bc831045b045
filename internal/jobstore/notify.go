package jobstore

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event is a notification a subscriber receives.
type Event struct {
	// Resync is set when the subscription was (re)established: messages
	// may have been missed, so the subscriber must re-read what it needs.
	Resync bool
	// Kind is 'c' (chunk), 'd' (done), 'w' (wake: Model has work), 'x'
	// (cancel: JobID should be aborted), 'a' (the direct route's admission
	// changed) or 'r' (a direct-route lease was released).
	Kind    byte
	JobID   string
	ChunkID string
	Status  Status
	Model   string
	Data    []byte
	// Hard is set on a cancel that also restarts the backend.
	Hard bool
}

// Subscriber receives notifications on a set of channels. It survives
// Redis restarts: go-redis resubscribes, and each resubscription is
// delivered as a Resync event.
type Subscriber struct {
	ps       *redis.PubSub
	channels int
	s        *Store
	backoff  time.Duration
}

// SubscribeGateway listens for the chunks and completions of the jobs a
// gateway instance waits for, until ctx ends.
func (s *Store) SubscribeGateway(ctx context.Context, instance string) *Subscriber {
	return s.subscribe(ctx, s.GatewayChannel(instance))
}

// SubscribeOrchestrator listens for new work and cancel requests, until
// ctx ends.
func (s *Store) SubscribeOrchestrator(ctx context.Context) *Subscriber {
	return s.subscribe(ctx, s.wakeChannel(), s.cancelChannel())
}

func (s *Store) subscribe(ctx context.Context, channels ...string) *Subscriber {
	ps := s.rdb.Subscribe(ctx, channels...)
	// A blocked PubSub read does not watch ctx; closing the connection
	// is what ends it.
	context.AfterFunc(ctx, func() { _ = ps.Close() })
	return &Subscriber{ps: ps, s: s, channels: len(channels)}
}

// Receive blocks for the next event; it returns an error only when ctx
// ends or the subscriber is closed (transient Redis errors are retried).
func (sub *Subscriber) Receive(ctx context.Context) (Event, error) {
	for {
		msg, err := sub.ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return Event{}, ctx.Err()
			}
			if err == redis.ErrClosed {
				return Event{}, err
			}
			// go-redis reconnects on the next Receive; wait for it.
			sub.backoff = min(max(2*sub.backoff, 50*time.Millisecond), 2*time.Second)
			wait := sub.backoff/2 + rand.N(sub.backoff/2)
			select {
			case <-ctx.Done():
				return Event{}, ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		sub.backoff = 0
		switch m := msg.(type) {
		case *redis.Subscription:
			// One confirmation per channel; the last one means all of
			// them are live again.
			if m.Kind == "subscribe" && m.Count == sub.channels {
				return Event{Resync: true}, nil
			}
		case *redis.Message:
			if ev, ok := sub.parse(m); ok {
				return ev, nil
			}
		}
	}
}

func (sub *Subscriber) parse(m *redis.Message) (Event, bool) {
	switch m.Channel {
	case sub.s.wakeChannel():
		return Event{Kind: 'w', Model: m.Payload}, true
	case sub.s.cancelChannel():
		id, hard := strings.CutSuffix(m.Payload, "|hard")
		return Event{Kind: 'x', JobID: id, Hard: hard}, true
	}
	if strings.HasPrefix(m.Channel, sub.s.admissionChannel("")) {
		return Event{Kind: 'a'}, true
	}
	if strings.HasPrefix(m.Channel, sub.s.releasedChannel("")) {
		return Event{Kind: 'r'}, true
	}
	kind, rest, ok := strings.Cut(m.Payload, "|")
	if !ok || len(kind) != 1 {
		return Event{}, false
	}
	switch kind[0] {
	case 'c':
		parts := strings.SplitN(rest, "|", 3)
		if len(parts) != 3 {
			return Event{}, false
		}
		return Event{Kind: 'c', JobID: parts[0], ChunkID: parts[1], Data: []byte(parts[2])}, true
	case 'd':
		id, st, ok := strings.Cut(rest, "|")
		if !ok {
			return Event{}, false
		}
		return Event{Kind: 'd', JobID: id, Status: Status(st)}, true
	}
	return Event{}, false
}

// Close ends the subscription.
func (sub *Subscriber) Close() error { return sub.ps.Close() }

// ChunkAfter reports whether chunk id a comes after chunk id b (Redis
// stream ids "ms-seq"; "" is before everything).
func ChunkAfter(a, b string) bool {
	if b == "" {
		return a != ""
	}
	ams, aseq := splitID(a)
	bms, bseq := splitID(b)
	if ams != bms {
		return ams > bms
	}
	return aseq > bseq
}

func splitID(id string) (uint64, uint64) {
	ms, seq, _ := strings.Cut(id, "-")
	a, _ := strconv.ParseUint(ms, 10, 64)
	b, _ := strconv.ParseUint(seq, 10, 64)
	return a, b
}
