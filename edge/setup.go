package edge

import (
	"runtime/debug"
	"sync"
	"time"
)

// setupWorker serves queued requests until the queue is closed. Each
// worker runs one request's state part at a time; a hijacked stream then
// lives on without it.
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

// setupQueue is the requests waiting for a setup worker: first in, first
// out, holding memory only while it has requests.
type setupQueue struct {
	mu      sync.Mutex
	ready   *sync.Cond
	waiting []rawRequest
	max     int
	closed  bool
	started uint64        // requests taken by a worker, ever
	busy    int           // workers serving a request
	mean    time.Duration // moving average of a setup's duration
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
	return len(q.waiting), q.mean
}

// stats reports how many setups have started and whether none is running or waiting.
func (q *setupQueue) stats() (started uint64, idle bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.started, q.busy == 0 && len(q.waiting) == 0
}

// beginDirect counts a setup that runs without a worker (an HTTP/2 stream,
// on net/http's goroutine) among the started and running ones, so that the
// release after a burst counts it and waits for it; end must be called once.
func (q *setupQueue) beginDirect() (end func()) {
	q.mu.Lock()
	q.started++
	q.busy++
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			q.busy--
			q.mu.Unlock()
		})
	}
}

func (q *setupQueue) push(r rawRequest) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || len(q.waiting) >= q.max {
		return false
	}
	q.waiting = append(q.waiting, r)
	q.ready.Signal()
	return true
}

func (q *setupQueue) pop() (rawRequest, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.waiting) == 0 {
		if q.closed {
			return rawRequest{}, false
		}
		q.ready.Wait()
	}
	r := q.waiting[0]
	q.started++
	q.busy++
	q.waiting[0] = rawRequest{}
	q.waiting = q.waiting[1:]
	if len(q.waiting) == 0 {
		q.waiting = nil // let a burst's backing array go
	}
	return r, true
}

// close ends the workers; requests still waiting are closed.
func (q *setupQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, r := range q.waiting {
		r.watch.stop()
		_ = r.conn.Close()
	}
	q.waiting = nil
	q.ready.Broadcast()
}
