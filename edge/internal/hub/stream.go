// A stream's setup, from its request's route to its live phase: admission,
// joining the topic's feed, where the client starts (resume.StartAt), the
// response header and the stream's sink, the state part (state.go), then
// the sink's live phase (sink.go).

package hub

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/internal/confcheck"
	"github.com/ssekafka/ssekafka/proto"
)

// streamer serves streams. It holds what streams need of the edge; e is for
// the work of other parts: feeds, the cache tier, refusals, setup slots and
// connection limits.
type streamer struct {
	e       *Hub
	cfg     *Config
	metrics *metrics.Edge
	log     *slog.Logger
	done    <-chan struct{} // closed by Close

	keepAlive sync.Once // starts the keep-alive loop of hijacked connections

	// sharing is when streams share work (resume.Sharing): the edge's
	// strategy, resume.ShareWhenCrowded unless a test picks another
	// (Config.Sharing); every strategy gives clients the same events.
	sharing resume.Sharing
}

func newStreamer(e *Hub) streamer {
	return streamer{e: e, cfg: &e.cfg, metrics: e.metrics, log: e.log, done: e.done, sharing: e.cfg.Sharing}
}

func (h *Hub) retryMs() int64 { return streamRetryMs(&h.cfg, h.acc.SetupBacklog()) }

// streamRetryMs is a stream's "retry:" with the setup queue's backlog.
func streamRetryMs(cfg *Config, backlog time.Duration) int64 {
	if cfg.Retry == confcheck.Off {
		return 0
	}
	ms := cfg.Retry.Milliseconds()
	if cfg.RetryJitter > 0 {
		ms += rand.Int64N(int64(float64(ms)*cfg.RetryJitter) + 1)
	}
	// In a storm, streams started together would come back together: they
	// are spread over the time the setup queue now takes to drain.
	if b := min(backlog, cfg.RetryMax/2).Milliseconds(); b > 0 {
		ms = min(ms+rand.Int64N(b+1), cfg.RetryMax.Milliseconds())
	}
	return ms
}

// setup is one stream until its live phase: what its handler holds, and
// gives back on its way out (finish) unless a sink took the stream over.
type setup struct {
	s       *streamer
	w       http.ResponseWriter
	r       *http.Request
	route   *route.Route
	filters []route.Filter
	format  frameFormat // the route's id format; a timestamp line if asked; the coding negotiated
	vary    bool        // the route offers codings: the response varies by Accept-Encoding
	viewKey string

	ctx    context.Context
	cancel context.CancelCauseFunc
	c      *client
	f      *feed    // joined: left on the way out
	conn   net.Conn // hijacked: closed on the way out

	// release gives back the count of a stream through a trusted proxy
	// against its client's address (an HTTP/2 stream counted as a
	// connection) until it ends: when this handler returns, or once
	// hijacked, when its connection closes.
	release    func()
	endSetup   func() // gives the setup slot back
	park       func() // gives the setup slot back while the state part goes on
	handedOver bool   // a sink owns the stream: it lives on after the handler
}

func (s *streamer) serve(w http.ResponseWriter, r *http.Request, rt *route.Route, index int, topic string, filters []route.Filter, filterKey string) {
	if s.e.draining.Load() {
		s.e.refuse(w, reason.Draining)
		return
	}
	offer := s.offer(rt)
	enc, _ := compress.Negotiate(r.Header.Values("Accept-Encoding"), offer) // none acceptable: identity all the same (an EventSource refused never comes back)
	format := frameFormat{id: rt.IDFormat(), timestamp: wantsTimestamp(r), enc: enc}
	st := &setup{s: s, w: w, r: r, route: rt, filters: filters, format: format, viewKey: format.viewKey(index, filterKey),
		vary: offersCoding(offer), endSetup: func() {}, park: func() {}}
	defer st.finish()
	if !st.admit() {
		return
	}
	st.ctx, st.cancel = context.WithCancelCause(r.Context())
	st.c = newClient(s.cfg.MaxQueue, s.cfg.MaxQueueBytes)
	st.c.cs = compress.NewStream(enc)
	st.c.cancelSetup = st.cancel // a drain ends a stream still in its setup
	live, ok := st.join(topic)
	if !ok {
		return
	}
	start, ok := st.start(live)
	if !ok {
		return
	}
	s.metrics.Connections.Inc()
	cw, sk := st.startResponse()
	at, ok := st.statePart(cw, start, live)
	if !ok {
		return
	}
	ls := &liveStream{s: s, ctx: st.ctx, f: st.f, c: st.c, viewKey: st.viewKey, format: st.format, at: at, endSetup: st.releaseSlot}
	st.handedOver = sk.live(ls)
}

// finish gives back what the setup holds, unless a sink took it over.
func (st *setup) finish() {
	if !st.handedOver {
		if st.conn != nil {
			_ = st.conn.Close()
		}
		if st.f != nil {
			st.f.leave(st.viewKey, st.c)
			st.s.metrics.Clients.Dec()
		}
	}
	if st.cancel != nil {
		st.cancel(nil)
	}
	st.releaseSlot()
	if st.release != nil {
		st.release()
	}
}

// releaseSlot gives the setup slot back, once.
func (st *setup) releaseSlot() {
	end := st.endSetup
	st.endSetup = func() {}
	end()
}

// admit counts the stream against its client's limits and, on net/http's
// goroutine (HTTP/2, or the edge under net/http), waits for a setup slot as
// Serve's requests do; on a setup worker it has one.
func (st *setup) admit() bool {
	e, w, r := st.s.e, st.w, st.r
	release, overLimit := e.acc.AdmitStream(r)
	if overLimit != reason.Unknown {
		e.refuse(w, overLimit)
		return false
	}
	st.release = release
	if park, onWorker := accept.Park(w); onWorker {
		if park != nil {
			st.park = park
		}
		return true
	}
	endSetup, refusal, ok := e.acc.AwaitSetup(r.Context(), e.acc.ClientKey(r))
	if !ok {
		if refusal != reason.Unknown {
			e.refuse(w, refusal)
		}
		return false
	}
	st.endSetup, st.park = endSetup, endSetup
	if e.draining.Load() { // the drain began while it waited
		e.refuse(w, reason.Draining)
		return false
	}
	return true
}

// join registers the client with its topic's feed and returns the feed's
// position then: every change after it reaches the client's pending frames.
func (st *setup) join(topic string) (proto.Progress, bool) {
	e := st.s.e
	for attempt := 0; ; attempt++ {
		f, err := e.feedFor(st.ctx, topic)
		if !st.feedFound(topic, err) {
			return proto.Progress{}, false
		}
		if live, ok := f.join(st.viewKey, st.filters, st.format, st.c); ok {
			st.f = f
			st.s.metrics.Clients.Inc()           // joined: finish leaves and decrements
			e.auth.track(st.ctx, st.c, st.route) // a guarded stream ends at its token's expiry
			return live, true
		}
		// The feed stopped between lookup and join (a topic change, or
		// its linger ended): the next lookup starts a new one.
		if attempt == 2 {
			e.refuse(st.w, reason.FeedRestarting)
			return proto.Progress{}, false
		}
	}
}

// feedFound answers a failed feed lookup and reports whether there was none.
func (st *setup) feedFound(topic string, err error) bool {
	e := st.s.e
	switch {
	case err == nil:
		return true
	case errors.Is(err, errTopicNotFound):
		e.fail(st.w, http.StatusNotFound, "topic "+topic+" not found")
	case st.ended():
	default:
		st.s.log.Warn("topic feed", "topic", topic, "err", err)
		e.refuse(st.w, reason.CacheUnavailable)
	}
	return false
}

// start decides where the client starts (resume.StartAt) and confirms an
// offset ahead of what the feed knows with the cache tier.
func (st *setup) start(live proto.Progress) (resume.Start, bool) {
	s, f, q := st.s, st.f, st.r.URL.Query()
	var id resume.ID
	if v := st.r.Header.Values("Last-Event-ID"); len(v) > 0 {
		id.Value, id.InHeader = v[0], true
	} else {
		id.Value = q.Get("lastEventId")
	}
	id.FromLive = q.Get("from") == "live"
	topic := resume.Topic{Epoch: f.meta.Epoch, Partitions: int(f.meta.Partitions), Horizon: f.horizonWindow}
	start := resume.StartAt(id, topic, live, s.cfg.Now())
	if start.Err != nil {
		s.metrics.BadLastEventID.Inc()
		s.log.Debug("bad Last-Event-ID", "err", start.Err)
	}
	if start.Reset != reason.Unknown {
		return start, true
	}
	ahead, err := s.aheadOfCache(st.ctx, f, start.At, live)
	switch {
	case err != nil && st.ended():
		return start, false
	case err != nil:
		s.log.Warn("check position", "topic", f.topic, "err", err)
		s.e.refuse(st.w, reason.CacheUnavailable)
		return start, false
	case ahead:
		start.At, start.Reset = topic.Zero(), reason.ResetOffsets
	}
	return start, true
}

// aheadOfCache reports whether start names, for some partition, an offset
// past that partition's end as the cache tier knows it: an id from another
// incarnation of the topic (a Zilla id carries no epoch), or a made-up one,
// which cannot resume. Only offsets past both the feed's position (live)
// and the cache's head as the feed last heard it are asked about, once: a
// node answers for a partition only when caught up, and no setup worker
// waits for offsets that may never come (issue 11: each such id used to
// hold one for PageTimeout). A client whose id came from a node a moment
// ahead of the one answering gets a reset and the full state: correct, and
// rare (its last edge went away and it came back within that moment).
func (s *streamer) aheadOfCache(ctx context.Context, f *feed, start, live proto.Progress) (bool, error) {
	for p, o := range start.Offsets {
		pp := int32(p)
		if !resume.MustConfirm(o, live.Offset(pp), f.cacheKnown(pp)) {
			continue
		}
		page, _, err := s.e.cache.sharedPageRetrying(ctx, f.topic, f.meta.Epoch, pp, o, o, true)
		if err != nil {
			return false, err
		}
		f.cacheAt(pp, page.Next)
		if resume.PastEnd(o, page.Next) {
			return true, nil
		}
	}
	return false, nil
}

// startResponse sends the response header and chooses the stream's sink,
// once: a hijacked connection with a raw socket (liveConn), one without
// (goSink), or the ResponseWriter (responseSink). It returns the writer of
// the state part too.
func (st *setup) startResponse() (*connWriter, sink) {
	st.s.e.codings.stream(st.format.enc)
	cw, conn := writeHeader(st.w, st.r, st.s.cfg, st.format.contentType(), codingHeader{enc: st.format.enc, vary: st.vary})
	cw.c = st.c
	if conn == nil {
		return cw, &responseSink{st.writerSink(cw)}
	}
	if st.release != nil {
		conn, st.release = accept.Counted(conn, st.release), nil
	}
	st.conn = conn
	if lc, ok := newLiveConn(st.s, st.f, st.viewKey, st.c, conn); ok {
		return cw, lc
	}
	return cw, &goSink{writerSink: st.writerSink(cw), conn: conn}
}

func (st *setup) writerSink(cw *connWriter) writerSink {
	return writerSink{s: st.s, cw: cw, wake: st.c.wakeChan(), c: st.c}
}

// writeHeader sends the response header. On HTTP/1.x it hijacks the
// connection (net/http's buffers and goroutine are let go; the stream is
// delimited by the connection's close) and returns it; on a connection that
// cannot be hijacked (HTTP/2) it writes through the ResponseWriter.
func writeHeader(w http.ResponseWriter, r *http.Request, cfg *Config, contentType string, ch codingHeader) (*connWriter, net.Conn) {
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 && !cfg.NoHijack {
		if conn, _, err := rc.Hijack(); err == nil {
			// Written as one buffer: the header map holds only what was
			// set before (CORS's lines).
			head := make([]byte, 0, 192+len(contentType))
			head = append(head, accept.StatusLineProto(r)...)
			head = append(head, " 200 OK\r\nContent-Type: "...)
			head = append(head, contentType...)
			head = append(head, "\r\nCache-Control: no-cache, no-transform\r\n"...)
			head = ch.appendEncoding(head)
			head = append(head, "X-Accel-Buffering: no\r\n"...)
			head = accept.AppendCORSLines(head, w.Header())
			if ch.vary { // after CORS's Vary: Origin, as Header.Add puts it
				head = append(head, "Vary: Accept-Encoding\r\n"...)
			}
			head = append(head, "Connection: close\r\n\r\n"...)
			cw := &connWriter{w: conn, setDeadline: conn.SetWriteDeadline, timeout: cfg.WriteTimeout}
			if err := cw.write(head); err != nil {
				_ = conn.Close()
			}
			return cw, conn
		}
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache, no-transform") // a proxy must not compress again
	h.Set("X-Accel-Buffering", "no")
	if ch.enc != compress.Identity {
		h.Set("Content-Encoding", ch.enc.String())
	}
	if ch.vary {
		h.Add("Vary", "Accept-Encoding")
	}
	w.WriteHeader(http.StatusOK)
	return &connWriter{w: w, flush: rc.Flush, setDeadline: rc.SetWriteDeadline, timeout: cfg.WriteTimeout}, nil
}

// codingHeader is what a stream's response header says of its coding.
type codingHeader struct {
	enc  compress.Encoding
	vary bool // the route offers codings
}

// appendEncoding appends its Content-Encoding line, for a hijacked
// connection.
func (ch codingHeader) appendEncoding(head []byte) []byte {
	if ch.enc == compress.Identity {
		return head
	}
	head = append(head, "Content-Encoding: "...)
	head = append(head, ch.enc.String()...)
	return append(head, "\r\n"...)
}

// offer is the codings rt's streams offer: its own, or the edge's.
func (s *streamer) offer(rt *route.Route) []compress.Encoding {
	if o := rt.Compression(); o != nil {
		return o
	}
	return s.cfg.Compression
}

// statePart writes the retry hint, the reset if any, and the state part,
// at a minimum rate; a write the client does not take at once gives the
// setup slot back (stateWrites). It returns where the state part ended.
func (st *setup) statePart(cw *connWriter, start resume.Start, live proto.Progress) (proto.Progress, bool) {
	s := st.s
	sw := &stateWrites{park: st.park, parked: s.metrics.StateParked, timeout: s.cfg.StateWriteTimeout, minRate: s.cfg.StateMinRate}
	cw.state = sw
	defer func() { cw.state = nil }()
	buf := appendRetry(nil, s.e.retryMs())
	if start.Reset != reason.Unknown {
		s.metrics.Resets.WithLabelValues(start.Reset.Label()).Inc()
		buf = appendReset(buf, start.Reset)
	}
	err := cw.write(st.c.wire(buf))
	var at proto.Progress
	var kind resume.Kind
	if err == nil {
		at, kind, err = s.writeState(st.ctx, cw, st.f, st.viewKey, st.format, st.filters, start.At, live)
	}
	if err != nil {
		st.stateFailed(sw, err)
		st.endAfterState(cw)
		return at, false
	}
	if start.Resumed {
		s.metrics.Resumes.WithLabelValues(kind.Label()).Inc()
	}
	return at, true
}

// endAfterState ends cleanly a stream whose state part ended other than by
// a failed write or a hang-up (a drain, an expired token, the cache tier):
// its client gets its stream's end (the gzip trailer), then the close.
func (st *setup) endAfterState(cw *connWriter) {
	if cw.failed || st.r.Context().Err() != nil {
		return
	}
	if b := st.c.end(nil); len(b) > 0 {
		_ = cw.write(b)
	}
}

func (st *setup) stateFailed(sw *stateWrites, err error) {
	s := st.s
	switch {
	case sw.stalled:
		s.metrics.StateStalled.Inc()
		s.log.Warn("client did not read its state part: cut off", "topic", st.f.topic, "remote", st.r.RemoteAddr,
			"timeout", s.cfg.StateWriteTimeout, "minRate", s.cfg.StateMinRate)
	case st.ctx.Err() == nil:
		s.log.Warn("state part", "topic", st.f.topic, "err", err)
	}
}

// errSetupDrained and errSetupClosed end the setup of a stream closed by a
// drain, or for another reason (its token expired, its feed ended).
var (
	errSetupDrained = errors.New("stream drained during its setup")
	errSetupClosed  = errors.New("stream closed during its setup")
)

// ended answers a setup whose context ended: one a drain closed gets the
// draining refusal (its client comes back, to another edge); one whose
// client hung up gets nothing. It reports whether the context ended.
func (st *setup) ended() bool {
	if st.ctx.Err() == nil {
		return false
	}
	if errors.Is(context.Cause(st.ctx), errSetupDrained) {
		st.s.e.refuse(st.w, reason.Draining)
	}
	return true
}

// startKeepAlive starts the keep-alive loop of hijacked connections, once.
func (s *streamer) startKeepAlive() {
	if s.cfg.KeepAlive != confcheck.Off {
		s.keepAlive.Do(func() { go s.keepAliveLoop() })
	}
}
