package accept

import (
	"context"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// setups returns the setup queue, starting its SetupConcurrency workers
// (and the release of memory after bursts) on first use: by Serve, or by
// the first stream on net/http's goroutine. Close ends them.
func (s *Server) setups() *setupQueue {
	s.setupsOnce.Do(func() {
		q := newSetupQueue(s.cfg.SetupQueue, s.cfg.SetupPerAddress, s.cfg.SetupQueuePerAddress)
		s.queue.Store(q)
		select {
		case <-s.done: // closed before any stream: nothing to start
			q.close()
			return
		default:
		}
		for range s.cfg.SetupConcurrency {
			go s.setupWorker(q)
		}
		if s.cfg.ReleaseAfterBurst > 0 {
			go s.releaseAfterBursts(q, s.done)
		}
	})
	return s.queue.Load()
}

// setupWorker serves queued streams until the queue is closed, one state
// part at a time: a request Serve read, which it serves itself (a hijacked
// stream then lives on without it), or a stream on net/http's goroutine,
// which it lets start and waits for until its state part ends. A state
// part whose client does not take it as fast as it is written gives the
// worker back (park): a new worker takes this one's place, and this
// goroutine ends with that stream's setup.
func (s *Server) setupWorker(queue *setupQueue) {
	for {
		r, ok := queue.pop()
		if !ok {
			return
		}
		s.cfg.Metrics.SetupWait.Observe(time.Since(r.queued).Seconds())
		if r.direct != nil {
			queue.done(r.key, r.direct.grant())
			continue
		}
		if r.watch.gone() {
			_ = r.conn.Close() // hung up while it waited
			r.watch.endSetup()
			queue.done(r.key, -1)
			continue
		}
		t0 := time.Now()
		var once sync.Once
		replaced := false
		park := func() {
			once.Do(func() {
				replaced = true
				queue.done(r.key, time.Since(t0))
				go s.setupWorker(queue)
			})
		}
		ctx, cancel := r.watch.context()
		s.serveRaw(ctx, r.conn, r.req, park)
		cancel()
		r.watch.endSetup()
		once.Do(func() { queue.done(r.key, time.Since(t0)) })
		if replaced {
			return
		}
	}
}

// directSetup is a stream on net/http's goroutine (HTTP/2, or an edge
// served by net/http) in the setup queue. The worker that takes it grants
// it a setup slot and waits, taken, until the stream's state part ends.
type directSetup struct {
	ctx     context.Context // the stream's request's
	key     netip.Prefix    // its client's address
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

// AwaitSetup waits, on the goroutine of a stream no setup worker runs
// (net/http's: HTTP/2, or an edge under net/http), until a worker grants
// it a setup slot, in the queue Serve's requests wait in. ok, it returns
// the slot's release, to call once the state part is done (more calls do
// nothing). Otherwise there is no slot to release, and a refusal says why
// the stream is to be refused (the queue is full, or closed); Unknown, that
// its client left while it waited: it has left the queue.
func (s *Server) AwaitSetup(ctx context.Context, key netip.Prefix) (release func(), refusal reason.Reason, ok bool) {
	q := s.setups()
	d := &directSetup{ctx: ctx, key: key, granted: make(chan struct{}), ended: make(chan struct{})}
	if refusal := q.push(setupRequest{key: key, queued: time.Now(), direct: d}); refusal != reason.Unknown {
		s.setupRefused(refusal, key)
		return nil, refusal, false
	}
	select {
	case <-d.granted:
		return d.end, reason.Unknown, true
	case <-ctx.Done():
	case <-q.stopped:
		refusal = reason.Draining // the edge is closing: its client comes back, elsewhere
	}
	if !q.leave(d) {
		d.end() // a worker took it meanwhile: the slot goes back at once
	}
	return nil, refusal, false
}

// setupRefused counts a stream refused a place in the setup queue.
func (s *Server) setupRefused(refusal reason.Reason, key netip.Prefix) {
	switch refusal {
	case reason.QueueFull:
		s.cfg.Metrics.SetupRejected.Inc()
	case reason.SetupPerAddress:
		label := refusal.Label()
		s.cfg.Metrics.ConnectionsRefused.WithLabelValues(label).Inc()
		s.cfg.Log.Warn("address at its share of the setup queue", "reason", label, "client", key.String(), "share", s.cfg.SetupQueuePerAddress)
	}
}

// releaseAfterBursts returns free memory to the OS once a burst of new
// streams (a reconnect storm, a deploy) has been set up: the runtime would
// otherwise keep the burst's transient buffers resident for minutes, while
// an idle stream needs little.
func (s *Server) releaseAfterBursts(queue *setupQueue, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var released uint64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			started, idle := queue.stats()
			if idle && started-released >= uint64(s.cfg.ReleaseAfterBurst) {
				released = started
				t0 := time.Now()
				debug.FreeOSMemory()
				s.cfg.Metrics.MemoryReleases.Inc()
				s.cfg.Log.Debug("released memory after a burst of new streams", "streams", started, "took", time.Since(t0))
			}
		}
	}
}

// setupQueue is the streams waiting for a setup worker, holding memory
// only while it has streams. It is fair between client addresses: each
// has its own first-in-first-out line and at most perAddr streams in
// their setup at once; the addresses with a stream waiting and a share
// left take turns, so a crowd from one address waits behind itself, not
// in front of everyone else.
type setupQueue struct {
	mu      sync.Mutex
	ready   *sync.Cond
	addrs   map[netip.Prefix]*addrSetups // addresses with a stream waiting or in its setup
	turns   []*addrSetups                // addresses whose turn may come, in order (an entry may have emptied since)
	waiting int                          // streams waiting, in all
	max     int
	perAddr int // workers one address may hold
	perLine int // streams one address may have waiting
	closed  bool
	stopped chan struct{} // closed with the queue
	started uint64        // requests taken by a worker, ever
	busy    int           // workers serving a request
	mean    time.Duration // moving average of a setup's duration
}

// addrSetups is one client address's line and share, guarded by the queue's mu.
type addrSetups struct {
	key     netip.Prefix
	waiting []setupRequest
	busy    int  // its streams in their setup
	inTurns bool // in the queue's turns
}

func newSetupQueue(maxWaiting, perAddr, perLine int) *setupQueue {
	q := &setupQueue{max: maxWaiting, perAddr: perAddr, perLine: perLine, stopped: make(chan struct{}), addrs: make(map[netip.Prefix]*addrSetups)}
	q.ready = sync.NewCond(&q.mu)
	return q
}

// done marks the end of the setup of a request from key, which took d
// (-1: its client had left before it started).
func (q *setupQueue) done(key netip.Prefix, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy--
	if d >= 0 {
		q.mean += (d - q.mean) / 8
	}
	if q.closed {
		return
	}
	a := q.addrs[key]
	a.busy--
	q.offerTurn(a)
	q.forgetIdle(a)
}

// offerTurn puts a in line for a worker if it has a stream waiting and a
// share left. The caller holds q.mu.
func (q *setupQueue) offerTurn(a *addrSetups) {
	if !a.inTurns && len(a.waiting) > 0 && a.busy < q.perAddr {
		a.inTurns = true
		q.turns = append(q.turns, a)
		q.ready.Signal()
	}
}

// forgetIdle drops a's entry once nothing of it is left. The caller holds q.mu.
func (q *setupQueue) forgetIdle(a *addrSetups) {
	if a.busy == 0 && len(a.waiting) == 0 && !a.inTurns {
		delete(q.addrs, a.key)
	}
}

// load reports how many requests wait and the mean setup time.
func (q *setupQueue) load() (waiting int, mean time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting, q.mean
}

// stats reports how many setups have started and whether none is running or waiting.
func (q *setupQueue) stats() (started uint64, idle bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.started, q.busy == 0 && q.waiting == 0
}

// push queues r, or returns the refusal its stream gets: the queue is
// full, its address's line is, or the queue is closed (Unknown: queued).
func (q *setupQueue) push(r setupRequest) (refusal reason.Reason) {
	q.mu.Lock()
	defer q.mu.Unlock()
	a := q.addrs[r.key]
	switch {
	case q.closed:
		return reason.Draining
	case q.waiting >= q.max:
		return reason.QueueFull
	case a != nil && len(a.waiting) >= q.perLine:
		return reason.SetupPerAddress
	}
	if a == nil {
		a = &addrSetups{key: r.key}
		q.addrs[r.key] = a
	}
	a.waiting = append(a.waiting, r)
	q.waiting++
	q.offerTurn(a)
	return reason.Unknown
}

func (q *setupQueue) pop() (setupRequest, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for len(q.turns) > 0 {
			a := q.turns[0]
			q.turns[0] = nil
			q.turns = q.turns[1:]
			if len(q.turns) == 0 {
				q.turns = nil // let a burst's backing array go
			}
			a.inTurns = false
			if len(a.waiting) == 0 || a.busy >= q.perAddr { // its streams left meanwhile
				q.forgetIdle(a)
				continue
			}
			r := a.waiting[0]
			a.waiting[0] = setupRequest{}
			a.waiting = a.waiting[1:]
			if len(a.waiting) == 0 {
				a.waiting = nil
			}
			if r.direct != nil {
				r.direct.state = directTaken
			}
			q.waiting--
			q.started++
			q.busy++
			a.busy++
			q.offerTurn(a) // to the back of the line: its next stream after the other addresses'
			return r, true
		}
		if q.closed {
			return setupRequest{}, false
		}
		q.ready.Wait()
	}
}

// leave takes d out of the queue, reporting whether it was still waiting
// (not taken by a worker).
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
	a := q.addrs[d.key]
	for i, r := range a.waiting {
		if r.direct == d {
			a.waiting = slices.Delete(a.waiting, i, i+1)
			q.waiting--
			break
		}
	}
	if len(a.waiting) == 0 {
		a.waiting = nil
	}
	q.forgetIdle(a)
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
	for _, a := range q.addrs {
		for _, r := range a.waiting {
			if r.direct == nil {
				r.watch.Stop()
				_ = r.conn.Close()
			}
		}
	}
	q.addrs, q.turns, q.waiting = nil, nil, 0
	close(q.stopped)
	q.ready.Broadcast()
}
