package gateway

import (
	"sync"

	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
)

// maxBuffered bounds the chunks buffered for one slow client; past it the
// waiter drops them and re-reads from the job's chunk log instead.
const maxBuffered = 4096

// waiters routes job notifications to the requests waiting for them.
type waiters struct {
	mu sync.RWMutex
	m  map[string]*waiter
}

func newWaiters() *waiters { return &waiters{m: make(map[string]*waiter)} }

// waiter is one request waiting for its job. Notifications are buffered
// and the request goroutine is kicked; it drains the buffer at its pace.
type waiter struct {
	kick chan struct{}

	mu     sync.Mutex
	chunks []jobstore.Chunk
	done   bool
	resync bool
}

func (ws *waiters) register(id string) *waiter {
	w := &waiter{kick: make(chan struct{}, 1)}
	ws.mu.Lock()
	ws.m[id] = w
	ws.mu.Unlock()
	return w
}

func (ws *waiters) unregister(id string) {
	ws.mu.Lock()
	delete(ws.m, id)
	ws.mu.Unlock()
}

// deliver hands one notification to its waiter; a resync goes to all.
func (ws *waiters) deliver(ev jobstore.Event) {
	ws.mu.RLock()
	defer ws.mu.RUnlock()
	if ev.Resync {
		for _, w := range ws.m {
			w.update(func() { w.resync = true })
		}
		return
	}
	w, ok := ws.m[ev.JobID]
	if !ok {
		return
	}
	switch ev.Kind {
	case 'c':
		w.update(func() {
			if len(w.chunks) >= maxBuffered {
				w.chunks, w.resync = nil, true
				return
			}
			w.chunks = append(w.chunks, jobstore.Chunk{ID: ev.ChunkID, Data: ev.Data})
		})
	case 'd':
		w.update(func() { w.done = true })
	}
}

func (w *waiter) update(f func()) {
	w.mu.Lock()
	f()
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// take empties the buffer and reports what happened since the last take.
func (w *waiter) take() (chunks []jobstore.Chunk, done, resync bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	chunks, done, resync = w.chunks, w.done, w.resync
	w.chunks, w.resync = nil, false
	return chunks, done, resync
}
