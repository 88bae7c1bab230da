package edge

import "sync"

// client is one SSE connection's queue. The feed goroutine pushes frames;
// the connection's handler goroutine writes them. Until the client is live
// (its state part is written), frames wait in pending with their offsets, so
// that those already covered by the state part are skipped (DESIGN rule 5).
type client struct {
	maxQueue int

	mu       sync.Mutex
	wake     chan struct{} // capacity 1: "something to do"; only for a connection not hijacked
	live     bool
	pending  []pendingFrame
	queue    [][]byte
	overflow bool      // fell too far behind: disconnect with a retry hint
	closing  string    // non-empty: the feed ended; disconnect
	lc       *liveConn // set for a hijacked connection: written by flushes, no goroutine
	dirty    bool      // lc has frames queued since its last flush
}

type pendingFrame struct {
	partition int32
	offset    int64
	frame     []byte
}

func newClient(maxQueue int) *client {
	return &client{maxQueue: maxQueue}
}

// wakeChan returns the channel a handler goroutine waits on for frames,
// made on first use: a hijacked client has no goroutine and no channel.
func (c *client) wakeChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	return c.wake
}

// signalLocked wakes the handler goroutine, if any. The caller holds c.mu.
func (c *client) signalLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// push queues a frame for the record at (partition, offset). Never blocks.
// It reports whether a hijacked client became dirty: the caller flushes it
// once it has delivered what it had.
func (c *client) push(partition int32, offset int64, frame []byte) (dirty bool) {
	c.mu.Lock()
	switch {
	case c.overflow:
	case c.live && len(c.queue) < c.maxQueue:
		c.queue = append(c.queue, frame)
	case !c.live && len(c.pending) < c.maxQueue:
		c.pending = append(c.pending, pendingFrame{partition, offset, frame})
	default:
		c.overflow = true
		c.queue, c.pending = nil, nil
	}
	if c.lc == nil {
		c.signalLocked()
	} else if c.live && !c.dirty {
		c.dirty, dirty = true, true
	}
	c.mu.Unlock()
	return dirty
}

// close asks the handler (or, hijacked, a flush) to end the stream. It may
// be called with feed locks held: a hijacked connection closes on a
// goroutine of its own.
func (c *client) close(reason string) {
	c.mu.Lock()
	c.closing = reason
	lc := c.lc
	if lc == nil {
		c.signalLocked()
	}
	c.mu.Unlock()
	if lc != nil {
		go lc.flush()
	}
}

// take returns the frames to write, swapping in spare as the new queue.
// spare must not share memory with the queue: pass the frames of the
// previous take once written, never an empty result.
func (c *client) take(spare [][]byte) (frames [][]byte, overflow bool, closing string) {
	c.mu.Lock()
	if len(c.queue) > 0 {
		frames, c.queue = c.queue, spare[:0]
	}
	overflow, closing = c.overflow, c.closing
	c.mu.Unlock()
	return frames, overflow, closing
}
