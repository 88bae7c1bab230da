package hub

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// feed is one topic's live feed on this edge: one NATS subscription whose
// changes are turned into frames once per view and queued to every client of
// the view. One goroutine (run) applies changes in order per partition and
// fills gaps from the cache tier before anything newer (docs/architecture.md rule 5); it
// never waits for the cache tier: its requests run beside it (apply.go).
//
// The goroutine boundary: run (and init, before run starts) is the only
// writer of progress, parts, the resume ring (but what streams' pages and
// head requests tell of the tier: known, heard), the slab and the views'
// frames; the gap state (parts) and its jobs are its alone. Everything a
// stream's goroutine touches (join, goLive, waitCovers, awaitWord,
// ringFrom, enterState, leave) is read or changed under mu, but the frames
// encoded from the ring, under encMu; meta and horizonWindow are fixed once init
// returns. The ring's records are never changed once added: a stream may
// read those ringFrom returned without mu.
type feed struct {
	e          *Hub
	topic      string
	ready      chan struct{} // closed when init ends; err says how
	err        error
	done       chan struct{} // closed to stop run
	msgs       chan *tier.Msg
	handling   atomic.Bool // a batch taken from msgs is being applied
	sub        tier.Subscription
	batch      int // changes delivered before clients are written to
	batchBytes int // or bytes of changes, whichever comes first

	meta          proto.Meta
	horizonWindow time.Duration // how far back a position may be and still resume

	// run's alone (apply.go, gap.go): each partition's gap state, what
	// jobs beside it post back, and the context their requests end with
	// when the feed stops.
	parts      []partGap
	results    chan jobResult
	ctx        context.Context
	cancel     context.CancelFunc
	topicCheck topicCheck

	mu        sync.Mutex // guards everything below, and clients' registration
	progress  proto.Progress
	views     map[string]*view
	ring      ring      // recent changes, for resumes from memory
	inState   int       // streams in their state part
	lastState time.Time // when the last one began it
	clients   int
	advanced  chan struct{} // closed and replaced when progress moves and waiters > 0
	waiters   int
	dirty     []*client // hijacked clients with frames to flush
	slab      []byte    // frames are carved from it (see encode)
	scratch   []byte    // a frame being encoded
	linger    *time.Timer
	stopped   bool
	asks      []*wordAsk // per partition, awaitWord's last head request
	shards    feedShards // which writer writes each client (writers.go)
	// chunks: a frame's chunk of a coding is carved from it (liveChunk).
	chunks []compress.Chunk

	encMu    sync.Mutex // a leaf; guards the frames encoded from the ring
	enc      map[string]encodedPage
	encOrder []string
	encBytes int

	ringCharged int64 // ring bytes counted in the edge's feed memory; guarded by mu (budget.go)
	encCharged  int64 // encoding bytes counted; guarded by encMu
}

// view is the clients of one (route, filters, frame format) on a topic:
// they share every frame.
type view struct {
	filters []route.Filter
	format  frameFormat
	clients map[*client]struct{}
}

func (f *feed) init(ctx context.Context) error {
	e := f.e
	f.msgs = make(chan *tier.Msg, e.cfg.FeedBuffer)
	f.batch = max(1, min(1024, e.cfg.MaxQueue/4))
	f.batchBytes = max(1, e.cfg.MaxQueueBytes/4)
	sub, err := e.cache.client.Subscribe(ctx, f.topic, f.msgs)
	if err != nil {
		return err
	}
	f.sub = sub
	meta, err := e.cache.requestMeta(ctx, f.topic)
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	f.meta = meta
	f.horizonWindow = time.Duration(meta.HorizonMs) * time.Millisecond
	f.progress = proto.Progress{Epoch: meta.Epoch, TimeMs: f.e.cfg.Now().UnixMilli(), Offsets: make([]int64, meta.Partitions)}
	f.parts = make([]partGap, meta.Partitions)
	for p := range f.parts {
		head, err := e.cache.requestPageRetrying(ctx, f.topic, meta.Epoch, int32(p), math.MaxInt64)
		if err != nil {
			_ = sub.Unsubscribe()
			return err
		}
		f.progress.Offsets[p] = head.Next
		f.parts[p] = partGap{probeNext: head.Next}
	}
	f.ring = newRing(e.cfg.ResumeRingBytes, e.cfg.ResumeRingAge, f.progress.Offsets)
	f.results = make(chan jobResult, len(f.parts))
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return nil
}

func (f *feed) run() {
	defer f.dropQueues()
	reconnects := f.e.cache.client.Reconnects()
	tick := time.NewTicker(f.e.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-f.done:
			return
		case m := <-f.msgs:
			f.handling.Store(true) // until the batch is applied: see ringFrom
			f.takeBatch(m)
		case r := <-f.results:
			f.handling.Store(true)
			f.settle(r)
		case <-tick.C:
			if r := f.e.cache.client.Reconnects(); r != reconnects {
				reconnects = r
				f.lostInTransit()
			}
			f.onTick()
		}
		f.markBehind()
		f.handling.Store(false)
		f.flushDirty()
		f.e.reclaimFeedMemory()
	}
}

// resetLive ends the live streams of the views a null-key record may match
// (those without a key filter) with event:reset and an id at the start, so
// that their clients come back for the full state (docs/architecture.md rule 3), and
// returns how many. Streams in their state part are left: like a resume,
// they hold no null-key record from before their ready.
func (f *feed) resetLive(r reason.Reason) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	zero := proto.Progress{Epoch: f.progress.Epoch, TimeMs: f.e.cfg.Now().UnixMilli(), Offsets: make([]int64, len(f.progress.Offsets))}
	n := 0
	for _, v := range f.views {
		if !resume.LostReaches(len(v.filters), slices.ContainsFunc(v.filters, func(fl route.Filter) bool { return fl.Key == nil })) {
			continue
		}
		final := append([]byte("id:"), proto.AppendEventID(nil, v.format.id, nil, true, &zero, "")...)
		final = appendReset(append(final, '\n'), r)
		for c := range v.clients {
			c.mu.Lock()
			live := c.live
			c.mu.Unlock()
			if live {
				c.closeWith(r, final)
				n++
			}
		}
	}
	f.e.metrics.Resets.WithLabelValues(r.Label()).Add(float64(n))
	return n
}

// deliver advances the feed past rec and queues its frame to every view it
// matches. The caller holds f.mu.
func (f *feed) deliver(p int32, rec *proto.Record) {
	f.advance(p, rec.Offset+1)
	f.ring.add(p, rec, time.Now())
	f.chargeRingLocked()
	if rec.KeyNull && rec.Tombstone {
		return
	}
	for _, v := range f.views {
		if len(v.clients) == 0 || !route.Matches(v.filters, rec) {
			continue
		}
		q := f.encode(v.format, rec)
		conflated := 0
		for c := range v.clients {
			n, dirty := c.push(p, rec.Offset, q)
			conflated += n
			if dirty {
				f.dirty = append(f.dirty, c)
			}
		}
		f.e.metrics.FramesQueued.Add(float64(len(v.clients)))
		if conflated > 0 {
			f.e.metrics.Conflated.Add(float64(conflated))
		}
	}
}

// frameSlabBytes is the size of the blocks frames are carved from: encoding
// an event allocates nothing but, now and then, a new block.
const frameSlabBytes = 64 << 10

// encode returns rec's frame in format, with its key, carved from the
// feed's current slab. Frames are immutable and shared by every client of
// a view; a slab lives while any client still queues one of its frames.
// The caller holds f.mu.
func (f *feed) encode(format frameFormat, rec *proto.Record) queued {
	f.scratch = format.appendEvent(f.scratch[:0], rec, &f.progress)
	need := len(f.scratch) + len(rec.Key)
	if cap(f.slab)-len(f.slab) < need {
		f.slab = make([]byte, 0, max(frameSlabBytes, need))
	}
	start := len(f.slab)
	f.slab = append(f.slab, f.scratch...)
	f.slab = append(f.slab, rec.Key...)
	q := queued{buf: f.slab[start:len(f.slab):len(f.slab)], frameLen: uint32(len(f.scratch)), keyed: !rec.KeyNull}
	if format.enc != compress.Identity {
		q.ch = f.liveChunk(format.enc, f.scratch)
	}
	return q
}

// chunkSlab is how many chunks a block of the feed's chunk slab holds.
const chunkSlab = 256

// liveChunk makes a live frame into a chunk of enc, once for every client
// of its view: stored, or compressed when long enough to gain. Each chunk
// stands alone (conflation drops frames per client, and each client's
// stream combines the CRCs of those it sends). It is carved from the
// feed's chunk slab, as frames are from its slab. The caller holds f.mu.
func (f *feed) liveChunk(enc compress.Encoding, frame []byte) *compress.Chunk {
	if len(f.chunks) == cap(f.chunks) {
		f.chunks = make([]compress.Chunk, 0, chunkSlab)
	}
	var ch compress.Chunk
	if len(frame) >= liveCompressMin && len(frame) <= liveCompressMax {
		ch = f.e.codings.compress(enc, frame)
	} else {
		ch = f.e.codings.store(enc, frame)
	}
	f.chunks = append(f.chunks, ch)
	return &f.chunks[len(f.chunks)-1]
}

// flushDirty flushes the sink of each client queued to since the last
// flush, once (a hijacked one: one non-blocking writev), over the edge's
// writers (writers.go).
func (f *feed) flushDirty() {
	f.mu.Lock()
	dirty := f.dirty
	f.dirty = nil
	f.mu.Unlock()
	f.e.writers.flush(&f.shards, dirty)
	clear(dirty)
	f.mu.Lock()
	f.dirty = dirty[:0] // only this goroutine appends to it
	f.mu.Unlock()
}

// advance moves the feed's position in p and wakes clients waiting for it.
// The caller holds f.mu.
func (f *feed) advance(p int32, next int64) {
	f.progress.Offsets[p] = next
	if f.waiters > 0 {
		close(f.advanced)
		f.advanced = make(chan struct{})
		f.waiters = 0
	}
}

// join registers c with the view named key. The client receives every change
// the feed applies from now on (in pending until goLive).
func (f *feed) join(key string, filters []route.Filter, format frameFormat, c *client) (current proto.Progress, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return proto.Progress{}, false
	}
	v := f.views[key]
	if v == nil {
		v = &view{filters: filters, format: format, clients: map[*client]struct{}{}}
		f.views[key] = v
	}
	v.clients[c] = struct{}{}
	f.e.writers.assign(&f.shards, c)
	f.clients++
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	return f.progress.Clone(), true
}

// goLive ends c's state part, which reached progress at. The state pages
// may be ahead of the live feed (the cache applies a change before the feed
// hears of it), so it first waits, up to timeout, until the feed has caught
// up with at: from then on every shared frame's id covers all the client
// holds. Pending frames already covered are dropped, the rest queued, then
// the ready marker with the feed's progress.
func (f *feed) goLive(ctx context.Context, c *client, format frameFormat, at proto.Progress, timeout time.Duration) {
	if !f.waitCovers(ctx, at, timeout) && ctx.Err() == nil {
		f.e.log.Warn("live feed behind state at ready", "topic", f.topic)
	}
	defer f.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pf := range c.pending {
		if resume.KeepPending(pf.partition, pf.offset, at) {
			c.appendLocked(pf.queued)
		}
	}
	c.pending, c.pendingBytes, c.pendingLargest = nil, 0, 0
	resume.ReadyAt(&at, f.progress)
	if !f.e.cfg.NoReady {
		c.appendLocked(marker(appendReady(nil, format.id, &at)))
	}
	c.live = true
	c.signalLocked()
}

// waitCovers waits, up to timeout, until the feed has delivered everything
// below at, and reports whether it has. It returns with f.mu held.
func (f *feed) waitCovers(ctx context.Context, at proto.Progress, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	f.mu.Lock()
	for !f.covers(at) {
		if f.advanced == nil {
			f.advanced = make(chan struct{})
		}
		f.waiters++
		ch := f.advanced
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			f.mu.Lock()
			return f.covers(at)
		case <-ctx.Done():
			f.mu.Lock()
			return f.covers(at)
		}
		f.mu.Lock()
	}
	return true
}

// enterState and leaveState count the streams in their state part;
// crowded reports whether there is more than one. enterState reports
// whether another stream began its state part less than stormWindow ago
// (streams arriving together: a storm).
func (f *feed) enterState() (storm bool) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inState++
	storm = !f.lastState.IsZero() && now.Sub(f.lastState) < stormWindow
	f.lastState = now
	return storm
}

// stormWindow: streams starting closer together than this are a storm.
const stormWindow = time.Second

func (f *feed) leaveState() {
	f.mu.Lock()
	f.inState--
	f.mu.Unlock()
}

func (f *feed) crowded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inState > 1
}

// covers reports whether the feed has delivered everything below at. The
// caller holds f.mu.
func (f *feed) covers(at proto.Progress) bool {
	for p, o := range at.Offsets {
		if p < len(f.progress.Offsets) && f.progress.Offsets[p] < o {
			return false
		}
	}
	return true
}

// leave unregisters c; the feed stops after FeedLinger without clients.
func (f *feed) leave(key string, c *client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.views[key]
	if v == nil {
		return
	}
	if _, ok := v.clients[c]; !ok {
		return
	}
	delete(v.clients, c)
	f.e.writers.release(&f.shards, c)
	f.e.auth.forget(c)
	if len(v.clients) == 0 {
		delete(f.views, key)
	}
	f.clients--
	if f.clients == 0 && !f.stopped {
		f.linger = time.AfterFunc(f.e.cfg.FeedLinger, f.stopIfIdle)
	}
}

func (f *feed) stopIfIdle() {
	f.e.mu.Lock()
	defer f.e.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients != 0 || f.stopped {
		return
	}
	f.stopLocked()
}

// stopLocked ends the feed; the caller holds e.mu and f.mu.
func (f *feed) stopLocked() {
	f.stopped = true
	f.releaseMemLocked()
	if f.e.feeds[f.topic] == f {
		delete(f.e.feeds, f.topic)
	}
	close(f.done)
	if f.cancel != nil {
		f.cancel()
	}
	_ = f.sub.Unsubscribe()
}

// fail ends the feed because the topic changed under it (a new epoch, more
// partitions): every client is disconnected and, reconnecting, resumes or is
// reset against the new metadata.
func (f *feed) fail(r reason.Reason) {
	if r == reason.Shutdown {
		f.e.log.Debug("topic feed closed", "topic", f.topic)
	} else {
		f.e.metrics.FeedFailures.Inc()
		f.e.log.Warn("topic feed ended", "topic", f.topic, "reason", r.String())
	}
	f.e.mu.Lock()
	f.mu.Lock()
	if !f.stopped {
		f.stopLocked()
	}
	for _, v := range f.views {
		for c := range v.clients {
			c.close(r)
		}
	}
	f.mu.Unlock()
	f.e.mu.Unlock()
}
