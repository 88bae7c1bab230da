//go:build linux

package hub

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ssekafka/ssekafka/edge/internal/accept"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// liveConn is a hijacked connection in its live phase. Nothing runs for it
// while it is idle: the feed goroutine writes a client's pending frames with
// one non-blocking writev per flush (batches grow by themselves under load),
// and only a client whose socket is full gets a goroutine, which waits for
// the socket with blocking writes until the queue is empty, then ends.
type liveConn struct {
	s       *streamer
	c       *client
	f       *feed
	viewKey string
	conn    net.Conn
	raw     syscall.RawConn

	writing   bool          // guarded by c.mu: a flush or a drain goroutine owns the socket
	closed    bool          // guarded by c.mu
	watch     *accept.Watch // guarded by c.mu: its hang-up watch, if any
	lastWrite atomic.Int64
}

// newLiveConn is conn's sink if it has a raw socket (not TLS).
func newLiveConn(s *streamer, f *feed, viewKey string, c *client, conn net.Conn) (*liveConn, bool) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return &liveConn{s: s, c: c, f: f, viewKey: viewKey, conn: conn, raw: raw}, true
}

// writevCall is a writev for RawConn.Write: its func made once, with its
// argument and results beside it. A closure per write was three
// allocations per delivery; a pooled call is none, and a connection
// keeps no room for one.
type writevCall struct {
	bufs [][]byte
	n    int
	err  error
	fn   func(fd uintptr) bool
}

var writevCalls = sync.Pool{New: func() any {
	w := &writevCall{}
	w.fn = w.writev
	return w
}}

// writev writes bufs to fd, never waiting: a full socket is the drain
// goroutine's job.
func (w *writevCall) writev(fd uintptr) bool {
	w.n, w.err = unix.Writev(int(fd), w.bufs)
	return true
}

// writev writes bufs with one writev without blocking.
func (lc *liveConn) writev(bufs [][]byte) (int, error) {
	w := writevCalls.Get().(*writevCall)
	w.bufs = bufs
	err := lc.raw.Write(w.fn)
	n, werr := w.n, w.err
	*w = writevCall{fn: w.fn}
	writevCalls.Put(w)
	if err != nil {
		return 0, err
	}
	return n, werr
}

// live hands the connection to flushes: it returns at once, owning the
// stream; nothing runs for it while it is idle.
func (lc *liveConn) live(ls *liveStream) bool {
	// No deadline for the non-blocking writes (the state part set one);
	// a drain goroutine sets its own.
	_ = lc.conn.SetWriteDeadline(time.Time{})
	lc.lastWrite.Store(time.Now().UnixNano())
	ls.attach(lc) // first: from here a flush, not the setup, ends the stream
	ls.goLive()
	lc.s.startKeepAlive()
	lc.flush()
	lc.s.watchLive(ls.ctx, lc)
	return true
}

// flush writes what the client has queued, without blocking.
func (lc *liveConn) flush() {
	c := lc.c
	c.mu.Lock()
	for range 4 { // frames may arrive while we write; a drain goroutine takes over past this
		c.dirty = false
		if lc.writing {
			c.mu.Unlock()
			return
		}
		iv, overflow, closing := c.nextLocked()
		if iv == nil && !overflow && closing == reason.Unknown {
			c.mu.Unlock()
			return
		}
		lc.writing = true
		c.mu.Unlock()
		switch {
		case overflow:
			lc.s.metrics.Overflows.Inc()
			if b := c.end(appendRetry(nil, lc.s.e.retryMs())); len(b) > 0 {
				if rest, err := lc.tryWrite([][]byte{b}); err == nil && len(rest) > 0 {
					go lc.writeEnd(rest, reason.FellBehind) // its socket is full: the retry and the stream's end wait
					return
				}
			}
			lc.close(reason.FellBehind, nil)
			return
		case closing != reason.Unknown:
			lc.close(closing, nil)
			return
		}
		rest, err := lc.tryWrite(iv.bufs)
		if err != nil {
			putIovecs(iv)
			lc.close(reason.WriteFailed, err)
			return
		}
		if len(rest) > 0 {
			go lc.drain(iv, rest)
			return
		}
		putIovecs(iv)
		c.mu.Lock()
		lc.writing = false
	}
	more := len(c.queue) > 0 || c.closing != reason.Unknown // writing is ours to take: we hold c.mu since setting it false
	if more {
		lc.writing = true
	}
	c.mu.Unlock()
	if more {
		go lc.drain(nil, nil)
	}
}

// drain writes rest (the unwritten end of iv) and then the queue with
// blocking writes, for a client whose socket was full; it ends when the
// queue is empty.
func (lc *liveConn) drain(iv *iovecs, rest [][]byte) {
	c := lc.c
	for {
		if len(rest) > 0 {
			_ = lc.conn.SetWriteDeadline(time.Now().Add(lc.s.cfg.WriteTimeout))
			bufs := net.Buffers(rest)
			_, err := bufs.WriteTo(lc.conn)
			_ = lc.conn.SetWriteDeadline(time.Time{})
			if err != nil {
				putIovecs(iv)
				lc.close(reason.WriteFailed, err)
				return
			}
			lc.lastWrite.Store(time.Now().UnixNano())
		}
		putIovecs(iv)
		c.mu.Lock()
		next, overflow, closing := c.nextLocked()
		if next == nil {
			lc.writing = false
			c.mu.Unlock()
			if overflow || closing != reason.Unknown {
				go lc.flush() // writes the hint, then closes
			}
			return
		}
		c.mu.Unlock()
		iv, rest = next, next.bufs
	}
}

// writeEnd writes rest, the end of a stream cut off, with a blocking
// write under WriteTimeout, then closes the stream for r. A hang-up
// closes the connection, which ends the write.
func (lc *liveConn) writeEnd(rest [][]byte, r reason.Reason) {
	_ = lc.conn.SetWriteDeadline(time.Now().Add(lc.s.cfg.WriteTimeout))
	bufs := net.Buffers(rest)
	_, err := bufs.WriteTo(lc.conn)
	lc.close(r, err)
}

// tryWrite writes as much of bufs as the socket takes now and returns the rest.
func (lc *liveConn) tryWrite(bufs [][]byte) ([][]byte, error) {
	for len(bufs) > 0 {
		n, werr := lc.writev(bufs[:min(len(bufs), 1024)]) // IOV_MAX
		if errors.Is(werr, unix.EAGAIN) {
			return bufs, nil
		}
		if werr != nil {
			return bufs, werr
		}
		lc.s.metrics.Writes.Inc()
		lc.lastWrite.Store(time.Now().UnixNano())
		bufs = advance(bufs, n)
		if n == 0 {
			return bufs, nil
		}
	}
	return nil, nil
}

// advance drops the first n bytes of bufs.
func advance(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	return bufs
}

// close ends the stream for r (err: the failed write's, if any).
func (lc *liveConn) close(r reason.Reason, err error) {
	lc.c.mu.Lock()
	closed := lc.closed
	lc.closed = true
	watch := lc.watch
	lc.c.mu.Unlock()
	if closed {
		return
	}
	lc.s.log.Debug("stream closed", "reason", r.String(), "err", err)
	watch.Stop()
	_ = lc.conn.Close()
	lc.f.leave(lc.viewKey, lc.c)
	lc.s.metrics.Clients.Dec()
}

// watchLive watches lc for hang-up: with the watch its setup ran under
// (ctx's), or a new one for a connection served by net/http.
func (s *streamer) watchLive(ctx context.Context, lc *liveConn) {
	cw := accept.WatchFrom(ctx)
	fresh := cw == nil
	if fresh {
		if cw = s.e.acc.WatchLive(lc); cw == nil {
			return
		}
	}
	lc.c.mu.Lock()
	lc.watch = cw
	closed := lc.closed
	lc.c.mu.Unlock()
	if closed { // lc.close may have run without seeing the watch
		cw.Stop()
		return
	}
	if !fresh {
		cw.GoLive(lc)
	}
}

// RawConn is lc's socket, for its hang-up watch (accept.Live).
func (lc *liveConn) RawConn() syscall.RawConn { return lc.raw }

var _ accept.Live = (*liveConn)(nil)

// Hangup releases a live connection whose client has gone, within the
// socket's ownership rule: with no writer, it takes the socket and closes
// the stream; a flush or drain goroutine that owns the socket ends the
// stream itself, on the closing reason or on the failed write that closing
// the connection here causes (Close wakes a drain blocked in a write, and
// the runtime closes the descriptor only once no call is using it, so no
// write can reach a reused number).
func (lc *liveConn) Hangup() {
	c := lc.c
	c.mu.Lock()
	if lc.closed {
		c.mu.Unlock()
		return
	}
	if c.closing == reason.Unknown {
		c.closing = reason.Hangup
	}
	owned := !lc.writing
	if owned {
		lc.writing = true
	}
	c.mu.Unlock()
	if owned {
		lc.close(reason.Hangup, nil)
		return
	}
	_ = lc.conn.Close()
}
