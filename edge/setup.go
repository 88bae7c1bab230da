package edge

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// setups returns the edge's setup queue, starting its SetupConcurrency
// workers (and the release of memory after bursts) on first use: by Serve,
// or by the first stream on net/http's goroutine. Close ends them.
func (e *Edge) setups() *setupQueue {
	e.setupsOnce.Do(func() {
		q := newSetupQueue(e.cfg.SetupQueue)
		e.queue.Store(q)
		select {
		case <-e.done: // closed before any stream: nothing to start
			q.close()
			return
		default:
		}
		for range e.cfg.SetupConcurrency {
			go e.setupWorker(q)
		}
		if e.cfg.ReleaseAfterBurst > 0 {
			go e.releaseAfterBursts(q, e.done)
		}
	})
	return e.queue.Load()
}

// setupWorker serves queued streams until the queue is closed, one state
// part at a time: a request Serve read, which it serves itself (a hijacked
// stream then lives on without it), or a stream on net/http's goroutine,
// which it lets start and waits for until its state part ends.
func (e *Edge) setupWorker(queue *setupQueue) {
	for {
		r, ok := queue.pop()
		if !ok {
			return
		}
		e.metrics.setupWait.Observe(time.Since(r.queued).Seconds())
		if e.holdSetup != nil {
			e.holdSetup()
		}
		if r.direct != nil {
			queue.done(r.direct.grant())
			continue
		}
		if r.watch.gone() {
			_ = r.conn.Close() // hung up while it waited
			r.watch.endSetup()
			queue.done(-1)
			continue
		}
		t0 := time.Now()
		ctx, cancel := r.watch.context()
		e.serveRaw(ctx, r.conn, r.req)
		cancel()
		r.watch.endSetup()
		queue.done(time.Since(t0))
	}
}

// directSetup is a stream on net/http's goroutine (HTTP/2, or an edge
// served by net/http) in the setup queue. The worker that takes it grants
// it a setup slot and waits, taken, until the stream's state part ends.
type directSetup struct {
	ctx     context.Context // the stream's request's
	granted chan struct{}   // closed by the worker that takes it
	ended   chan struct{}   // closed by end
	endOnce sync.Once
	state   directState // guarded by the queue's mu
}

type directState uint8

const (
	directWaiting directState = iota
	directTaken               // by a worker
	directLeft                // its client went while it waited: workers skip it
)

// grant lets the stream start its state part and waits for its end; it
// returns how long the state part took, or -1 for a stream whose client
// had left (its goroutine ends it without the slot).
func (d *directSetup) grant() time.Duration {
	if d.ctx.Err() != nil {
		return -1
	}
	t0 := time.Now()
	close(d.granted)
	<-d.ended
	return time.Since(t0)
}

// end gives the slot back; more calls do nothing.
func (d *directSetup) end() { d.endOnce.Do(func() { close(d.ended) }) }

// awaitSetup waits, on the goroutine of a stream no setup worker runs
// (net/http's: HTTP/2, or an edge under net/http), until a worker grants
// it a setup slot, in the queue Serve's requests wait in. ok, it returns
// the slot's release, to call once the state part is done (more calls do
// nothing). Otherwise there is no slot to release, and a non-empty refusal
// says why the stream is to be refused (the queue is full, or closed); an
// empty one, that its client left while it waited: it has left the queue.
func (e *Edge) awaitSetup(ctx context.Context) (release func(), refusal string, ok bool) {
	q := e.setups()
	d := &directSetup{ctx: ctx, granted: make(chan struct{}), ended: make(chan struct{})}
	if refusal := q.push(setupRequest{queued: time.Now(), direct: d}); refusal != "" {
		if refusal == refuseQueueFull {
			e.metrics.setupRejected.Inc()
		}
		return nil, refusal, false
	}
	select {
	case <-d.granted:
		return d.end, "", true
	case <-ctx.Done():
	case <-q.stopped:
		refusal = refuseDraining // the edge is closing: its client comes back, elsewhere
	}
	if !q.leave(d) {
		d.end() // a worker took it meanwhile: the slot goes back at once
	}
	return nil, refusal, false
}

// releaseAfterBursts returns free memory to the OS once a burst of new
// streams (a reconnect storm, a deploy) has been set up: the runtime would
// otherwise keep the burst's transient buffers resident for minutes, while
// an idle stream needs little.
func (e *Edge) releaseAfterBursts(queue *setupQueue, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var released uint64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			started, idle := queue.stats()
			if idle && started-released >= uint64(e.cfg.ReleaseAfterBurst) {
				released = started
				t0 := time.Now()
				debug.FreeOSMemory()
				e.metrics.memoryReleases.Inc()
				e.log.Debug("released memory after a burst of new streams", "streams", started, "took", time.Since(t0))
			}
		}
	}
}

// setupQueue is the streams waiting for a setup worker: first in, first
// out, holding memory only while it has streams.
type setupQueue struct {
	mu      sync.Mutex
	ready   *sync.Cond
	waiting []setupRequest
	left    int // direct streams in waiting whose client has gone
	max     int
	closed  bool
	stopped chan struct{} // closed with the queue
	started uint64        // requests taken by a worker, ever
	busy    int           // workers serving a request
	mean    time.Duration // moving average of a setup's duration
}

func newSetupQueue(max int) *setupQueue {
	q := &setupQueue{max: max, stopped: make(chan struct{})}
	q.ready = sync.NewCond(&q.mu)
	return q
}

// done marks the end of a request's setup, which took d.
func (q *setupQueue) done(d time.Duration) {
	q.mu.Lock()
	q.busy--
	if d >= 0 { // a request whose client left before it started took no time to measure
		q.mean += (d - q.mean) / 8
	}
	q.mu.Unlock()
}

// load reports how many requests wait and the mean setup time.
func (q *setupQueue) load() (waiting int, mean time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting) - q.left, q.mean
}

// stats reports how many setups have started and whether none is running or waiting.
func (q *setupQueue) stats() (started uint64, idle bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.started, q.busy == 0 && len(q.waiting) == q.left
}

// push queues r, or returns the refusal its stream gets: the queue is
// full, or closed.
func (q *setupQueue) push(r setupRequest) (refusal string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return refuseDraining
	case len(q.waiting)-q.left >= q.max:
		return refuseQueueFull
	}
	q.waiting = append(q.waiting, r)
	q.ready.Signal()
	return ""
}

func (q *setupQueue) pop() (setupRequest, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.waiting) > 0 && q.waiting[0].direct != nil && q.waiting[0].direct.state == directLeft {
			q.dropFront()
			q.left--
		}
		if len(q.waiting) > 0 {
			break
		}
		if q.closed {
			return setupRequest{}, false
		}
		q.ready.Wait()
	}
	r := q.waiting[0]
	if r.direct != nil {
		r.direct.state = directTaken
	}
	q.started++
	q.busy++
	q.dropFront()
	return r, true
}

// dropFront removes the first waiting request. The caller holds q.mu.
func (q *setupQueue) dropFront() {
	q.waiting[0] = setupRequest{}
	q.waiting = q.waiting[1:]
	if len(q.waiting) == 0 {
		q.waiting = nil // let a burst's backing array go
	}
}

// leave takes d out of the queue, reporting whether it was still waiting
// (not taken by a worker). Its entry is dropped when a worker reaches it,
// or when the gone outnumber the rest; it no longer counts as waiting.
func (q *setupQueue) leave(d *directSetup) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if d.state != directWaiting {
		return false
	}
	d.state = directLeft
	if q.closed {
		return true // the queue is empty already
	}
	q.left++
	if q.left > len(q.waiting)/2 {
		kept := q.waiting[:0]
		for _, r := range q.waiting {
			if r.direct == nil || r.direct.state != directLeft {
				kept = append(kept, r)
			}
		}
		clear(q.waiting[len(kept):])
		q.waiting, q.left = kept, 0
		if len(kept) == 0 {
			q.waiting = nil
		}
	}
	return true
}

// close ends the workers; requests read by Serve still waiting are closed,
// and direct streams still waiting are woken by stopped (to be refused).
func (q *setupQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	for _, r := range q.waiting {
		if r.direct == nil {
			r.watch.stop()
			_ = r.conn.Close()
		}
	}
	q.waiting, q.left = nil, 0
	close(q.stopped)
	q.ready.Broadcast()
}
