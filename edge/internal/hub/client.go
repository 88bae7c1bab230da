package hub

import (
	"context"
	"sync"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// client is one SSE connection's queue. The feed goroutine pushes frames;
// the connection's sink (sink.go) writes them. Until the client is
// live (its state part is written), frames wait in pending with their
// offsets, so that those already covered by the state part are skipped
// (docs/architecture.md rule 5).
type client struct {
	maxQueue int // frames
	maxBytes int // bytes of frames and keys, queued or pending

	queueBytes   int // held by queue; guarded by mu
	pendingBytes int // held by pending; guarded by mu
	// pendingLargest is pending's largest frame (guarded by mu): one frame
	// is not counted against maxBytes, however large.
	pendingLargest int

	mu      sync.Mutex
	wake    chan struct{} // capacity 1: "something to do"; only for a sink with a writer goroutine
	pending []pendingFrame
	queue   []queued
	qptr    *[]queued // the pooled array queue came from, if any
	final   []byte    // with closing: written (instead of what is queued) before the stream ends
	sink    sink      // set as it goes live (liveStream.attach): where its frames go
	// cancelSetup ends the stream's setup (state part, waits on the cache
	// tier) when it is closed before it goes live; nil once live.
	cancelSetup context.CancelCauseFunc
	auth        *authStream // a guarded stream's expiry (renew.go)

	// The small fields share one word, then cs's: a client is one of
	// many thousands (TestClientIsThreeCacheLines).
	live     bool
	overflow bool          // fell too far behind: disconnect with a retry hint
	closing  reason.Reason // set (not Unknown): the stream ends, for this reason
	dirty    bool          // frames queued since the sink's last flush
	ended    bool          // its stream's end was taken (endLocked): nothing more is written
	shard    uint16        // its writer (writers.go), set as it joins its feed
	// cs is its stream's framing in its coding (coding.go), used by
	// whoever writes the stream: the setup until the client is live (no
	// sink yet), then its sink's writer, under mu.
	cs compress.Stream
}

// queued is a frame waiting for one client: buf holds the frame (shared by
// every client of its view), then its record's key, which lets a client that
// falls behind keep only the newest frame per key (docs/architecture.md rule 6).
type queued struct {
	buf      []byte
	frameLen uint32
	keyed    bool // false: never conflated (markers, records without a key)
	// ch is the frame as a chunk of its view's coding, made once for the
	// view (feed.encode); nil in identity, and for a marker, which is
	// framed as it is written (client.framedLocked).
	ch *compress.Chunk
}

// marker is an unkeyed frame: ready, keep-alive.
func marker(frame []byte) queued { return queued{buf: frame, frameLen: uint32(len(frame))} }

func (q *queued) frame() []byte { return q.buf[:q.frameLen] }
func (q *queued) key() []byte   { return q.buf[q.frameLen:] }

type pendingFrame struct {
	partition int32
	offset    int64
	queued
}

func newClient(maxQueue, maxBytes int) *client {
	return &client{maxQueue: maxQueue, maxBytes: maxBytes}
}

// wakeChan returns the channel a sink's writer goroutine waits on for
// frames, made on first use: a liveConn has no goroutine and no channel.
func (c *client) wakeChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	return c.wake
}

// signalLocked wakes the writer goroutine, if any. The caller holds c.mu.
func (c *client) signalLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// push queues a frame for the record at (partition, offset). Never blocks.
// A live client whose queue is full (in frames or in bytes) is conflated: only the newest frame per
// key stays, each keeping its id, so whatever id the client last saw, it
// resumes correctly; if that frees too little the client is disconnected
// (with a retry hint). It returns how many frames conflation dropped, and
// whether a live client became dirty: the caller flushes its sink once it
// has delivered what it had (once per batch, not per event).
func (c *client) push(partition int32, offset int64, q queued) (conflated int, dirty bool) {
	c.mu.Lock()
	switch {
	case c.overflow:
	case c.live:
		c.appendLocked(q)
		if len(c.queue) > c.maxQueue || c.queueBytes > c.maxBytes {
			c.queue, conflated = conflate(c.queue)
			c.queueBytes = 0
			largest := 0
			for i := range c.queue {
				c.queueBytes += len(c.queue[i].buf)
				largest = max(largest, len(c.queue[i].buf))
			}
			// One frame always fits, however large: a record Kafka accepted
			// must reach a client that reads (docs/architecture.md rule 10), also beside
			// others (a value over maxBytes and the change after it would
			// cut the client off at every reconnect). The largest frame is
			// not counted: a client holds at most maxBytes/2 and one frame.
			if len(c.queue) > 1 && (len(c.queue) > c.maxQueue/2 || c.queueBytes-largest > c.maxBytes/2) {
				c.overflow = true // too many distinct keys behind
				c.dropLocked()
			}
		}
	case len(c.pending) == 0 || len(c.pending) < c.maxQueue && c.pendingBytes+len(q.buf)-max(c.pendingLargest, len(q.buf)) <= c.maxBytes:
		// As for the queue, the largest frame is not counted.
		c.pending = append(c.pending, pendingFrame{partition, offset, q})
		c.pendingBytes += len(q.buf)
		c.pendingLargest = max(c.pendingLargest, len(q.buf))
	default:
		c.overflow = true
		c.dropLocked()
	}
	if c.sink == nil {
		c.signalLocked()
	} else if c.live && !c.dirty {
		c.dirty, dirty = true, true
	}
	c.mu.Unlock()
	return conflated, dirty
}

// dropLocked drops every queued and pending frame. The caller holds c.mu.
func (c *client) dropLocked() {
	if len(c.queue) > 0 {
		c.releaseQueueLocked() // not framed: the stream's CRC counts what is written only
	}
	c.pending, c.pendingBytes, c.pendingLargest = nil, 0, 0
}

// conflate keeps, of q's keyed frames, only the last per key, in order, and
// reports how many it dropped.
func conflate(q []queued) ([]queued, int) {
	seen := make(map[string]struct{}, len(q))
	w := len(q)
	for i := len(q) - 1; i >= 0; i-- {
		if q[i].keyed {
			if _, newer := seen[string(q[i].key())]; newer {
				continue
			}
			seen[string(q[i].key())] = struct{}{}
		}
		w--
		q[w] = q[i]
	}
	n := copy(q, q[w:])
	clear(q[n:])
	return q[:n], w
}

// close asks the sink (or the setup) to end the stream for r. It may be
// called with feed locks held: a live stream's sink is flushed on a
// goroutine of its own.
func (c *client) close(r reason.Reason) { c.closeWith(r, nil) }

// closeWith is close, with final written last (a drain's "retry:"); the
// frames still queued are dropped: the client resumes from the last id it
// received.
func (c *client) closeWith(r reason.Reason, final []byte) {
	if r == reason.Unknown { // Unknown is "not closing"
		r = reason.FeedEnded
	}
	c.mu.Lock()
	c.closing, c.final = r, final
	sk, cancelSetup := c.sink, c.cancelSetup
	if c.live {
		// Its writer ends it, final first: a cancelled context could end
		// the writer's wait first, without final.
		cancelSetup = nil
	}
	if sk == nil {
		c.signalLocked()
	}
	c.mu.Unlock()
	if sk != nil {
		go sk.flush()
	} else if cancelSetup != nil {
		// Still in its setup: it ends now (a drain's with a refusal, so its
		// client comes back elsewhere; an expired token's without more).
		cause := errSetupClosed
		if final != nil {
			cause = errSetupDrained
		}
		cancelSetup(cause)
	}
}

// appendLocked queues q, taking a pooled array for an empty queue: a
// client's queue costs nothing while it is idle and allocates nothing per
// flush. The caller holds c.mu.
func (c *client) appendLocked(q queued) {
	if c.queue == nil {
		p := queuePool.Get().(*[]queued)
		c.queue, c.qptr = (*p)[:0], p
	}
	c.queue = append(c.queue, q)
	c.queueBytes += len(q.buf)
}

// takeLocked returns the queued frames as buffers to write (nil if none)
// and gives the queue's array back to the pool. The caller holds c.mu.
func (c *client) takeLocked() *iovecs {
	if len(c.queue) == 0 {
		return nil
	}
	iv := c.framedLocked(c.queue)
	c.releaseQueueLocked()
	return iv
}

// releaseQueueLocked empties the queue and gives its array back to the
// pool. The caller holds c.mu.
func (c *client) releaseQueueLocked() {
	clear(c.queue)
	if c.qptr != nil {
		*c.qptr = c.queue[:0]
		queuePool.Put(c.qptr)
	}
	c.queue, c.qptr, c.queueBytes = nil, nil, 0
}

// nextLocked is what a writer of a hijacked connection does next: write
// the queued frames (nil if none), or end the stream (overflow: with a retry
// hint) without writing them. The caller holds c.mu.
func (c *client) nextLocked() (frames *iovecs, overflow bool, closing reason.Reason) {
	if iv := c.finalLocked(); iv != nil {
		return iv, false, reason.Unknown
	}
	if c.overflow || c.closing != reason.Unknown {
		return nil, c.overflow, c.closing
	}
	return c.takeLocked(), false, reason.Unknown
}

// finalLocked returns, once, what a client closed cleanly is sent last,
// dropping what is queued: its final frame, then its stream's end (the gzip
// trailer); nil if none. A client that hung up, or whose write failed,
// gets nothing more. The caller holds c.mu.
func (c *client) finalLocked() *iovecs {
	if c.closing == reason.Unknown || c.overflow || c.ended || c.closing == reason.Hangup || c.closing == reason.WriteFailed {
		return nil
	}
	if c.final == nil && c.cs.Encoding() == compress.Identity {
		return nil
	}
	b := c.endLocked(c.final)
	c.final = nil
	c.dropLocked()
	if len(b) == 0 {
		return nil
	}
	iv := iovecPool.Get().(*iovecs)
	iv.bufs = append(iv.bufs, b)
	return iv
}

var queuePool = sync.Pool{New: func() any { return new([]queued) }}

// take is takeLocked for a writer that does not hold c.mu, with the state
// that ends the stream.
func (c *client) take() (frames *iovecs, overflow bool, closing reason.Reason) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dirty = false
	if iv := c.finalLocked(); iv != nil {
		return iv, false, c.closing
	}
	return c.takeLocked(), c.overflow, c.closing
}

// iovecs is a reusable list of buffers for one writev.
type iovecs struct{ bufs [][]byte }

var iovecPool = sync.Pool{New: func() any { return new(iovecs) }}

func putIovecs(iv *iovecs) {
	if iv == nil {
		return
	}
	clear(iv.bufs)
	iv.bufs = iv.bufs[:0]
	iovecPool.Put(iv)
}
