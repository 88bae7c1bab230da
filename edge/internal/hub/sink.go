// How a live stream's frames reach its connection: one sink per kind of
// connection, chosen once when the response starts (startResponse).

package hub

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/internal/confcheck"
	"github.com/ssekafka/ssekafka/proto"
)

// sink is where a live stream's queued frames go. There are three:
//   - *liveConn: a hijacked connection with a raw socket (Linux, no TLS),
//     written by non-blocking writevs; nothing runs for it while it is idle;
//   - *goSink: a hijacked connection without one (TLS, not Linux), written
//     by a goroutine of its own;
//   - *responseSink: a ResponseWriter (HTTP/2, or the edge under net/http),
//     written on the handler's goroutine.
//
// The client holds its sink once live (client.sink); the protocol above it
// (queueing, conflation, closing) does not ask which one it has.
type sink interface {
	// flush writes what the client has queued, or wakes the writer that
	// does. The feed goroutine calls it once per client per batch of
	// changes it applied, never per event (client.push marks the client
	// dirty once); a close, a keep-alive and a challenge call it too. It
	// never blocks on the client, and is called with no feed lock held.
	flush()
	// live runs the stream's live phase, from its ready on. It reports
	// whether the sink now owns the stream: it then leaves the feed when
	// the stream ends. A sink that does not (responseSink) returns once
	// the stream has ended.
	live(ls *liveStream) (owned bool)
}

var (
	_ sink = (*liveConn)(nil)
	_ sink = (*goSink)(nil)
	_ sink = (*responseSink)(nil)
)

// liveStream is what a sink needs for a stream's live phase.
type liveStream struct {
	s        *streamer
	ctx      context.Context // the setup's: its hang-up watch; ends with the handler
	f        *feed
	c        *client
	viewKey  string
	format   frameFormat
	at       proto.Progress // where the state part ended
	endSetup func()         // gives the setup slot back; the handler goes on
}

// attach makes sk the client's sink: the feed flushes it once per batch,
// and a close goes to it, not to the setup's context.
func (ls *liveStream) attach(sk sink) {
	c := ls.c
	c.mu.Lock()
	c.sink, c.cancelSetup = sk, nil
	c.mu.Unlock()
}

// goLive ends the state part: the client's pending frames not covered by
// it, then ready, are queued (feed.goLive).
func (ls *liveStream) goLive() {
	ls.f.goLive(ls.ctx, ls.c, ls.format, ls.at, ls.s.cfg.RequestTimeout)
}

// writerSink is a sink written by a goroutine that waits for frames: a
// flush wakes it.
type writerSink struct {
	s    *streamer
	cw   *connWriter
	wake <-chan struct{} // the client's (client.wakeChan)
	c    *client
}

func (w *writerSink) flush() {
	w.c.mu.Lock()
	w.c.signalLocked()
	w.c.mu.Unlock()
}

// writeLive writes the client's queued frames until it leaves, falls too far
// behind, or its feed ends, and returns why it ended (with the failed
// write's error, or the context's).
func (w *writerSink) writeLive(ctx context.Context) (reason.Reason, error) {
	ka := w.s.cfg.KeepAlive
	keepAlive := time.NewTimer(ka)
	defer keepAlive.Stop()
	if ka == confcheck.Off {
		keepAlive.Stop()
	}
	for {
		frames, overflow, closing := w.c.take()
		if frames != nil {
			err := w.cw.writeFrames(frames.bufs)
			putIovecs(frames)
			if err != nil {
				return reason.WriteFailed, err
			}
			if ka != confcheck.Off {
				keepAlive.Reset(ka)
			}
		}
		if overflow {
			w.s.metrics.Overflows.Inc()
			if b := w.c.end(appendRetry(nil, w.s.e.retryMs())); len(b) > 0 {
				_ = w.cw.write(b)
			}
			return reason.FellBehind, nil
		}
		if closing != reason.Unknown {
			return closing, nil
		}
		select {
		case <-ctx.Done():
			return reason.Hangup, ctx.Err()
		case <-w.wake:
		case <-keepAlive.C:
			if err := w.cw.write(w.c.wire(keepAliveFrame)); err != nil {
				return reason.WriteFailed, err
			}
			keepAlive.Reset(ka)
		}
	}
}

// goSink is a hijacked connection without a raw socket (TLS, not Linux):
// the live phase gets a goroutine of its own, so that a setup worker serves
// only state parts.
type goSink struct {
	writerSink
	conn net.Conn
}

func (g *goSink) live(ls *liveStream) bool {
	// Live first: until then a close (a drain) still ends the setup's
	// wait in goLive; the writer takes what a push signalled meanwhile.
	ls.goLive()
	ls.attach(g)
	// The request's context ends with its handler; a hijacked stream
	// ends on a failed write, when its feed ends or on a hang-up.
	liveCtx, end := context.WithCancel(context.WithoutCancel(ls.ctx))
	watch := accept.WatchFrom(ls.ctx)
	watch.GoLiveEnd(end)
	go func() {
		defer func() {
			end()
			watch.Stop()
			_ = g.conn.Close()
			ls.f.leave(ls.viewKey, ls.c)
			ls.s.metrics.Clients.Dec()
		}()
		r, err := g.writeLive(liveCtx)
		ls.s.log.Debug("stream closed", "reason", r.String(), "err", err)
	}()
	return true
}

// responseSink is a ResponseWriter (HTTP/2, or the edge under net/http):
// the handler's goroutine writes the live phase.
type responseSink struct{ writerSink }

func (rs *responseSink) live(ls *liveStream) bool {
	ls.goLive() // then attach, as goSink
	ls.attach(rs)
	ls.endSetup() // an idle stream keeps nothing of its slot
	r, err := rs.writeLive(ls.ctx)
	ls.s.log.Debug("stream closed", "reason", r.String(), "err", err)
	return false
}

// connWriter writes frames with a deadline per write: to a hijacked
// connection (one writev), or through a ResponseWriter, then flushed.
type connWriter struct {
	w           io.Writer
	flush       func() error // nil for a hijacked connection
	setDeadline func(time.Time) error
	timeout     time.Duration
	state       *stateWrites // during the state part: its deadlines instead of timeout
	c           *client      // whose stream it writes: chunks go through its framing (writeChunk)
	failed      bool         // a write failed
}

// writeChunk writes ch, a chunk of the stream's coding, after what the
// client's stream puts before it.
func (cw *connWriter) writeChunk(ch compress.Chunk) error {
	var prefix []byte
	if c := cw.c; c != nil && ch.Enc != compress.Identity {
		c.mu.Lock()
		prefix = c.cs.Next(ch)
		c.mu.Unlock()
	}
	switch {
	case len(prefix) == 0 && len(ch.Data) == 0:
		return nil
	case len(prefix) == 0:
		return cw.write(ch.Data)
	}
	return cw.writeFrames([][]byte{prefix, ch.Data})
}

// parkAfter is how long a state-part write may wait for the client before
// its stream gives the setup slot back.
const parkAfter = 100 * time.Millisecond

// stateWrites is how a state part is written: each write of n bytes must be
// taken within timeout + n/minRate, or the stream is cut off (stalled); one
// still waiting after parkAfter (the client's socket is full) gives the
// setup slot back, once: the stream goes on on its goroutine, and a client
// that does not read holds no worker while its deadline runs.
type stateWrites struct {
	park    func()             // gives the slot back; may be called from a timer's goroutine
	parked  prometheus.Counter // counts the streams parked
	once    sync.Once
	done    atomic.Bool // parked
	timeout time.Duration
	minRate int
	stalled bool // a write ran past its deadline
}

func (s *stateWrites) parkNow() {
	s.once.Do(func() {
		s.done.Store(true)
		s.parked.Inc()
		s.park()
	})
}

// begin sets the deadline of a write of n bytes and starts its park timer.
func (s *stateWrites) begin(n int, setDeadline func(time.Time) error) (deadline time.Time, t *time.Timer) {
	deadline = time.Now().Add(s.timeout + time.Duration(n)*time.Second/time.Duration(s.minRate))
	_ = setDeadline(deadline)
	if !s.done.Load() {
		t = time.AfterFunc(parkAfter, s.parkNow)
	}
	return deadline, t
}

// end stops the park timer and notes a write that failed at its deadline.
func (s *stateWrites) end(deadline time.Time, t *time.Timer, err error) {
	if t != nil {
		t.Stop()
	}
	if err != nil && !time.Now().Before(deadline) {
		s.stalled = true
	}
}

func (cw *connWriter) write(b []byte) error {
	if cw.flush == nil {
		if s := cw.state; s != nil {
			deadline, t := s.begin(len(b), cw.setDeadline)
			_, err := cw.w.Write(b)
			s.end(deadline, t, err)
			return cw.failedIf(err)
		}
		_ = cw.setDeadline(time.Now().Add(cw.timeout))
		_, err := cw.w.Write(b)
		return cw.failedIf(err)
	}
	return cw.writeFrames([][]byte{b})
}

// failedIf notes a failed write: nothing more goes to the stream.
func (cw *connWriter) failedIf(err error) error {
	if err != nil {
		cw.failed = true
	}
	return err
}

func (cw *connWriter) writeFrames(frames [][]byte) error {
	if s := cw.state; s != nil {
		n := 0
		for _, fr := range frames {
			n += len(fr)
		}
		deadline, t := s.begin(n, cw.setDeadline)
		err := cw.writeAll(frames)
		s.end(deadline, t, err)
		return cw.failedIf(err)
	}
	_ = cw.setDeadline(time.Now().Add(cw.timeout))
	return cw.failedIf(cw.writeAll(frames))
}

func (cw *connWriter) writeAll(frames [][]byte) error {
	if cw.flush == nil {
		bufs := net.Buffers(frames)
		_, err := bufs.WriteTo(cw.w)
		return err
	}
	for _, fr := range frames {
		if _, err := cw.w.Write(fr); err != nil {
			return err
		}
	}
	return cw.flush()
}
