// Hang-up watch. A connection the edge serves itself is never read once its
// request is in, so without a watch a client that leaves would keep its file
// descriptor (and its place in its feed) until a write to it fails: about a
// keep-alive period, or for ever with keep-alives off. Where the platform
// allows (hangup_linux.go), one watcher per edge learns of every hang-up
// with no goroutine per connection and releases the connection at once.

package edge

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
)

// connWatch is one connection watched for hang-up, from its queued request
// to the end of its stream. Its fields past id are guarded by the watcher's
// mu, a leaf lock; the hang-up is handled without it, on the watcher's
// goroutine, at most once. It is kept small: a live stream holds it.
type connWatch struct {
	w  *hangupWatcher
	id uint64 // never reused: an event for a watch already gone finds nothing

	setup   *watchSetup // until the stream is live: a hang-up cancels and closes
	lc      *liveConn   // once it is: a hang-up calls lc.hangup
	end     func()      // or, for a live stream with no raw socket (TLS), end
	fired   bool        // the watcher saw the hang-up (and forgot the watch)
	stopped bool        // unregistered without a hang-up
}

// watchSetup is what a watch needs only until its stream is live.
type watchSetup struct {
	conn   net.Conn
	raw    syscall.RawConn
	ctx    context.Context // the setup's context: cancelled by a hang-up
	cancel context.CancelFunc
}

type watchKey struct{}

// watchConn starts watching conn, whose request waits for a setup worker.
// Until the stream is live, a hang-up cancels the watch's context (the
// setup's) and closes conn: a queued request is skipped, a state part ends
// at its next wait or write. Nil when conn cannot be watched; a nil watch's
// methods do nothing.
func (e *Edge) watchConn(conn net.Conn) *connWatch {
	if tc, ok := conn.(*tls.Conn); ok {
		// The TCP connection under TLS: a hang-up closes it without
		// waiting on the TLS connection's locks (a close_notify behind a
		// blocked write).
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &watchSetup{conn: conn, raw: raw, cancel: cancel}
	cw := &connWatch{setup: s}
	s.ctx = context.WithValue(ctx, watchKey{}, cw)
	if !e.hangups.watch(e, cw, raw) {
		cancel()
		return nil
	}
	return cw
}

// watchFrom returns the watch a setup's context carries, if any.
func watchFrom(ctx context.Context) *connWatch {
	cw, _ := ctx.Value(watchKey{}).(*connWatch)
	return cw
}

// context is the context a setup runs under (a hang-up cancels it), and
// its cancel.
func (cw *connWatch) context() (context.Context, context.CancelFunc) {
	if cw == nil {
		return context.WithCancel(context.Background())
	}
	return cw.setup.ctx, cw.setup.cancel // set before the watch was shared
}

// gone reports whether the client has hung up.
func (cw *connWatch) gone() bool {
	if cw == nil {
		return false
	}
	cw.w.mu.Lock()
	defer cw.w.mu.Unlock()
	return cw.fired
}

// goLive hands the watch to a live stream: a hang-up now releases lc (at
// once, if the client has already left).
func (cw *connWatch) goLive(lc *liveConn) {
	cw.w.mu.Lock()
	fired := cw.fired
	if !fired {
		cw.lc, cw.setup = lc, nil
	}
	cw.w.mu.Unlock()
	if fired {
		lc.hangup()
	}
}

// goLiveEnd hands the watch to a live stream written by a goroutine of its
// own (no raw socket: TLS): a hang-up now calls end (at once, if the client
// has already left). The stream stops the watch when it ends.
func (cw *connWatch) goLiveEnd(end func()) {
	if cw == nil {
		return
	}
	cw.w.mu.Lock()
	fired := cw.fired
	if !fired {
		cw.end, cw.setup = end, nil
	}
	cw.w.mu.Unlock()
	if fired {
		end()
	}
}

// endSetup ends the setup's part of the watch: one whose stream did not go
// live is stopped (its connection is closed or about to be).
func (cw *connWatch) endSetup() {
	if cw == nil {
		return
	}
	cw.w.mu.Lock()
	live := cw.lc != nil || cw.end != nil
	cw.w.mu.Unlock()
	if !live {
		cw.stop()
	}
}

// stop unregisters the watch. Call it before the connection is closed.
func (cw *connWatch) stop() {
	if cw == nil {
		return
	}
	cw.w.mu.Lock()
	defer cw.w.mu.Unlock()
	if cw.fired || cw.stopped {
		return
	}
	cw.stopped = true
	cw.w.unregisterLocked(cw)
}
