// A stream's setup: where a client starts, its response header, its state
// part, and the live phase of a connection that keeps a goroutine.

package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// startProgress decides where a client starts: its Last-Event-ID (header,
// else the lastEventId query parameter), or live with ?from=live. A header
// that is present but empty wins over the parameter and means zero, as in
// Zilla. A non-empty reset reason means its position cannot resume: it starts from
// zero after "event:reset". resumed says the client resumes from its id.
func (e *Edge) startProgress(r *http.Request, f *feed, live proto.Progress) (p proto.Progress, reset string, resumed bool) {
	n := int(f.meta.Partitions)
	zero := proto.Progress{Epoch: f.meta.Epoch, Offsets: make([]int64, n)}
	id, inHeader := "", false
	if v := r.Header.Values("Last-Event-ID"); len(v) > 0 {
		id, inHeader = v[0], true
	} else {
		id = r.URL.Query().Get("lastEventId")
	}
	if inHeader && id == "" {
		return zero, "", false
	}
	if id == "" {
		if r.URL.Query().Get("from") == "live" {
			return live, "", false
		}
		return zero, "", false
	}
	p, err := proto.ParseEventID(id)
	if err != nil {
		e.metrics.badLastEventID.Inc()
		e.log.Debug("bad Last-Event-ID", "err", err)
		return zero, "", false
	}
	switch {
	case p.Epoch != 0 && p.Epoch != f.meta.Epoch:
		reset = resetEpoch
	case len(p.Offsets) > n:
		reset = resetPartitions
	case p.TimeMs != 0 && p.TimeMs < e.cfg.Now().Add(-f.horizonWindow).UnixMilli():
		reset = resetHorizon
	}
	if reset != "" {
		return zero, reset, false
	}
	for len(p.Offsets) < n {
		p.Offsets = append(p.Offsets, 0)
	}
	p.Epoch = f.meta.Epoch
	return p, "", true
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
func (e *Edge) aheadOfCache(ctx context.Context, f *feed, start, live proto.Progress) (bool, error) {
	for p, o := range start.Offsets {
		pp := int32(p)
		if o <= live.Offset(pp) || o <= f.cacheKnown(pp) {
			continue
		}
		page, _, err := e.sharedPageRetrying(ctx, f.topic, f.meta.Epoch, pp, o, o, true)
		if err != nil {
			return false, err
		}
		f.cacheAt(pp, page.Next)
		if page.Next < o {
			return true, nil
		}
	}
	return false, nil
}

func (e *Edge) retryMs() int64 { return streamRetryMs(&e.cfg, e.acc.SetupBacklog()) }

// streamRetryMs is a stream's "retry:" with the setup queue's backlog.
func streamRetryMs(cfg *Config, backlog time.Duration) int64 {
	if cfg.Retry == Off {
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

func (e *Edge) stream(w http.ResponseWriter, r *http.Request, route *Route, topic string, filters []filter, filterKey string) {
	if e.draining.Load() {
		e.refuse(w, reason.Draining)
		return
	}
	// A stream through a trusted proxy counts against its client's address,
	// an HTTP/2 stream as a connection, until it ends: when this handler
	// returns, or once hijacked, when its connection closes.
	releaseForwarded, overLimit := e.acc.AdmitStream(r)
	if overLimit != reason.Unknown {
		e.refuse(w, overLimit)
		return
	}
	if releaseForwarded != nil {
		defer func() {
			if releaseForwarded != nil {
				releaseForwarded()
			}
		}()
	}
	endSetup := func() {}
	defer func() { endSetup() }() // a slot taken below goes back however the setup ends
	park := func() {}             // gives the setup slot back while the state part goes on
	if workerPark, onWorker := accept.Park(w); onWorker {
		if workerPark != nil {
			park = workerPark
		}
	} else {
		// On net/http's goroutine (HTTP/2, or the edge under net/http): the
		// state part waits for a setup slot as Serve's requests do.
		release, refusal, ok := e.acc.AwaitSetup(r.Context(), e.acc.ClientKey(r))
		if !ok {
			if refusal != reason.Unknown {
				e.refuse(w, refusal)
			}
			return
		}
		endSetup, park = release, release
		if e.draining.Load() { // the drain began while it waited
			e.refuse(w, reason.Draining)
			return
		}
	}
	if e.holdState != nil {
		e.holdState(r.Context())
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	c := newClient(e.cfg.MaxQueue, e.cfg.MaxQueueBytes)
	c.cancelSetup = cancel // a drain ends a stream still in its setup
	viewKey := fmt.Sprintf("%d%s", route.index, filterKey)
	var f *feed
	var live proto.Progress
	for attempt := 0; ; attempt++ {
		var err error
		f, err = e.feedFor(ctx, topic)
		switch {
		case errors.Is(err, errTopicNotFound):
			e.fail(w, http.StatusNotFound, "topic "+topic+" not found")
			return
		case err != nil && e.setupEnded(w, ctx):
			return
		case err != nil:
			e.log.Warn("topic feed", "topic", topic, "err", err)
			e.refuse(w, reason.CacheUnavailable)
			return
		}
		var ok bool
		if live, ok = f.join(viewKey, filters, route.idFormat, c); ok {
			break
		}
		// The feed stopped between lookup and join (a topic change, or
		// its linger ended): the next lookup starts a new one.
		if attempt == 2 {
			e.refuse(w, reason.FeedRestarting)
			return
		}
	}
	e.metrics.clients.Inc()     // joined: every way out below leaves and decrements
	e.auth.track(ctx, c, route) // a guarded stream ends at its token's expiry
	handedOver := false         // a hijacked connection lives on after this handler
	defer func() {
		if !handedOver {
			f.leave(viewKey, c)
			e.metrics.clients.Dec()
		}
	}()
	start, reset, resumed := e.startProgress(r, f, live)
	if reset == "" {
		ahead, err := e.aheadOfCache(ctx, f, start, live)
		if err != nil && e.setupEnded(w, ctx) {
			return
		}
		if err != nil {
			e.log.Warn("check position", "topic", topic, "err", err)
			e.refuse(w, reason.CacheUnavailable)
			return
		}
		if ahead {
			start, reset = proto.Progress{Epoch: f.meta.Epoch, Offsets: make([]int64, len(start.Offsets))}, resetOffsets
		}
	}

	e.metrics.connections.Inc()
	cw, conn := e.startResponse(w, r)
	if conn != nil && releaseForwarded != nil {
		conn, releaseForwarded = accept.Counted(conn, releaseForwarded), nil
	}
	if conn != nil {
		defer func() {
			if !handedOver {
				_ = conn.Close()
			}
		}()
	}

	// The state part is written at a minimum rate, and a write the client
	// does not take at once gives the setup slot back (stateWrites).
	sw := &stateWrites{park: park, parked: e.metrics.stateParked, timeout: e.cfg.StateWriteTimeout, minRate: e.cfg.StateMinRate}
	cw.state = sw
	buf := appendRetry(nil, e.retryMs())
	if reset != "" {
		e.metrics.resets.WithLabelValues(reset).Inc()
		buf = appendReset(buf, reset)
	}
	err := cw.write(buf)
	var at proto.Progress
	var kind string
	if err == nil {
		at, kind, err = e.writeState(ctx, cw, f, viewKey, route.idFormat, filters, start, live)
	}
	cw.state = nil
	if err != nil {
		switch {
		case sw.stalled:
			e.metrics.stateStalled.Inc()
			e.log.Warn("client did not read its state part: cut off", "topic", topic, "remote", r.RemoteAddr,
				"timeout", e.cfg.StateWriteTimeout, "minRate", e.cfg.StateMinRate)
		case ctx.Err() == nil:
			e.log.Warn("state part", "topic", topic, "err", err)
		}
		return
	}
	if resumed {
		e.metrics.resumes.WithLabelValues(kind).Inc()
	}
	if conn != nil {
		if lc, ok := newLiveConn(f, viewKey, c, conn); ok {
			c.mu.Lock()
			c.lc, c.cancelSetup = lc, nil
			c.mu.Unlock()
			f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
			handedOver = true
			if e.cfg.KeepAlive != Off {
				e.keepAlive.Do(func() { go e.keepAliveLoop() })
			}
			lc.flush()
			e.watchLive(ctx, lc)
			return
		}
		// No raw socket (TLS, not Linux): the live phase gets a goroutine
		// of its own, so that a setup worker serves only state parts.
		f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
		handedOver = true
		// The request's context ends with its handler; a hijacked stream
		// ends on a failed write, when its feed ends or on a hang-up.
		liveCtx, end := context.WithCancel(context.WithoutCancel(ctx))
		watch := accept.WatchFrom(ctx)
		watch.GoLiveEnd(end)
		go func() {
			defer func() {
				end()
				watch.Stop()
				_ = conn.Close()
				f.leave(viewKey, c)
				e.metrics.clients.Dec()
			}()
			e.writeLive(liveCtx, cw, c)
		}()
		return
	}
	f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
	endSetup()
	endSetup = func() {} // an idle stream keeps nothing of its slot
	e.writeLive(ctx, cw, c)
}

// startResponse sends the response header. On HTTP/1.x it hijacks the
// connection (net/http's buffers and goroutine are let go; the stream is
// delimited by the connection's close) and returns it; on a connection that
// cannot be hijacked (HTTP/2) it writes through the ResponseWriter.
func (e *Edge) startResponse(w http.ResponseWriter, r *http.Request) (*connWriter, net.Conn) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 && !e.cfg.NoHijack {
		if conn, _, err := rc.Hijack(); err == nil {
			head := accept.StatusLineProto(r) + " 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
				"X-Accel-Buffering: no\r\n" + accept.CORSLines(h) + "Connection: close\r\n\r\n"
			cw := &connWriter{w: conn, setDeadline: conn.SetWriteDeadline, timeout: e.cfg.WriteTimeout}
			if err := cw.write([]byte(head)); err != nil {
				_ = conn.Close()
			}
			return cw, conn
		}
	}
	w.WriteHeader(http.StatusOK)
	return &connWriter{w: w, flush: rc.Flush, setDeadline: rc.SetWriteDeadline, timeout: e.cfg.WriteTimeout}, nil
}

// How a stream's state part was served, in resumes_total.
const (
	resumeRing      = "ring"      // from the feed's resume ring only
	resumeCoalesced = "coalesced" // state pages shared with other streams
	resumeState     = "state"     // some state request of its own
)

// errSetupDrained and errSetupClosed end the setup of a stream closed by a
// drain, or for another reason (its token expired, its feed ended).
var (
	errSetupDrained = errors.New("stream drained during its setup")
	errSetupClosed  = errors.New("stream closed during its setup")
)

// setupEnded answers a setup whose context ended: one a drain closed gets
// the draining refusal (its client comes back, to another edge); one whose
// client hung up gets nothing. It reports whether ctx ended.
func (e *Edge) setupEnded(w http.ResponseWriter, ctx context.Context) bool {
	if ctx.Err() == nil {
		return false
	}
	if errors.Is(context.Cause(ctx), errSetupDrained) {
		e.refuse(w, reason.Draining)
	}
	return true
}

// writeState writes every current entry at or after start, partition by
// partition in offset order, each with its true progress (DESIGN rule 2),
// and returns the progress reached and how it was served. A partition whose
// position lies in the feed's resume ring is written from it; otherwise
// from state pages (shared with other streams asking for the same, see
// sharedPage) until the ring covers the rest or the pages reach joined, the
// feed's position when the client joined it: what came before that is not
// among the client's pending live frames, so a page from a cache node that
// lags the feed is followed by another until it is covered.
func (e *Edge) writeState(ctx context.Context, cw *connWriter, f *feed, viewKey string, format proto.IDFormat, filters []filter, start, joined proto.Progress) (proto.Progress, string, error) {
	at := start.Clone()
	// In whole seconds (a time a little early is safe against the horizon),
	// so that streams starting together have the same ids and share frames.
	at.TimeMs = e.cfg.Now().UnixMilli() / 1000 * 1000
	if start.TimeMs != 0 {
		at.TimeMs = min(at.TimeMs, start.TimeMs)
	}
	kind := resumeRing
	began := time.Now()
	storm := (f.enterState() || e.shareAlways) && !e.shareNever
	defer f.leaveState()
	if storm {
		// The ring serves a partition only once the tier's word on it came
		// after the stream began: its ready then lacks nothing a holder had.
		f.awaitWord(ctx, began)
	}
	for p := range at.Offsets {
		pp := int32(p)
		since := start.Offsets[p]
		// A client that starts from zero in p cannot hold the key of a
		// tombstone the cache had applied at the first page it reads (any
		// page's Next tells what its node had applied): below skipBelow,
		// tombstones are left out. One applied later may delete a key an
		// earlier page gave it, so it is sent.
		skipBelow := int64(-1)
		if since == 0 {
			skipBelow = math.MaxInt64
		}
		behind := time.Duration(0)
		paged, again := false, false
		for {
			// In a storm, a resume inside the ring is written from it, up
			// to the feed's position, as if the client had never left;
			// from zero, the cache tier's state (it may be ahead of the
			// feed), then the ring for what follows the pages. A lone
			// stream reads the cache tier's state, and its ready then
			// covers all the tier had (so the ring resumes of a storm's
			// others are at least as current).
			recs, next, ringStart, ok := f.ringFrom(pp, since, began)
			if ok && storm && (since > 0 || paged) {
				skipBelow = min(skipBelow, next)
				if len(recs) > 0 {
					// The same records for every stream of the view at
					// this position: encoded once.
					key := encodingKey(viewKey, 'r', pp, skipBelow, next, &at)
					enc, shared := f.ringEncoded(key)
					if shared {
						e.metrics.framesShared.Inc()
						e.metrics.stateEventsWritten.Add(float64(enc.events))
					} else {
						for _, rec := range latestPerKey(recs) {
							n := len(enc.frames)
							if enc.frames = e.appendStateRecord(enc.frames, format, filters, rec, pp, skipBelow, &at); len(enc.frames) > n {
								enc.events++
							}
						}
						f.keepRingEncoded(key, enc)
					}
					if err := cw.write(enc.frames); err != nil {
						return at, kind, err
					}
				}
				at.Offsets[p] = max(at.Offsets[p], next)
				break
			}
			if again {
				// The node that answered lags the live feed: ask again,
				// for a page of now.
				if behind += 10 * time.Millisecond; behind > e.cfg.RequestTimeout {
					return at, kind, fmt.Errorf("state %s/%d: cache stays at %d, behind the live feed at %d", f.topic, p, at.Offsets[p], joined.Offset(pp))
				}
				select {
				case <-ctx.Done():
					return at, kind, ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			reuse := !again && (e.shareAlways || f.crowded())
			sp, shared, err := e.sharedPageRetrying(ctx, f.topic, f.meta.Epoch, pp, since, min(next, ringStart), reuse)
			if err != nil {
				return at, kind, err
			}
			paged = true
			f.cacheAt(pp, sp.Next)
			switch {
			case !shared:
				kind = resumeState
			case kind == resumeRing:
				kind = resumeCoalesced
			}
			page := &sp.StatePage
			// A page taken before the feed's last changes (a shared one)
			// leaves out what they superseded: the stream gets those
			// changes from the ring or its live frames, and the page is
			// then as of the feed's position.
			var superseded map[string]struct{}
			current := int64(-1)
			if newer, next, _, ok := f.ringFrom(pp, page.Next, began); ok && len(newer) > 0 {
				superseded = make(map[string]struct{}, len(newer))
				for _, r := range newer {
					superseded[string(r.Key)] = struct{}{}
				}
				current = next
			}
			skipBelow = min(skipBelow, max(page.Next, current))
			if err := e.writePage(cw, sp, viewKey, format, filters, pp, skipBelow, superseded, current, &at); err != nil {
				return at, kind, err
			}
			if e.afterPage != nil {
				e.afterPage(pp)
			}
			if page.More {
				if page.Cursor <= since { // a page that does not move on would never end
					e.metrics.badPages.Inc()
					return at, kind, fmt.Errorf("state %s/%d: page cursor %d does not advance past %d", f.topic, p, page.Cursor, since)
				}
				since = page.Cursor
				continue
			}
			at.Offsets[p] = max(at.Offsets[p], page.Next)
			if at.Offsets[p] >= joined.Offset(pp) {
				break
			}
			// Short of the feed (a page shared from before its last
			// changes, or a node that lags): the ring covers the rest, or
			// the cache tier is asked again.
			since, again = at.Offsets[p], true
		}
	}
	return at, kind, nil
}

// writePage writes the frames of a state page of partition p but those of
// the keys superseded (as of the feed's position current), encoded once for
// every stream of the view at the same position, and moves at past it.
func (e *Edge) writePage(cw *connWriter, sp *sharedPage, viewKey string, format proto.IDFormat, filters []filter, p int32, skipBelow int64, superseded map[string]struct{}, current int64, at *proto.Progress) error {
	recs := sp.Records
	if len(recs) == 0 {
		return nil
	}
	key := encodingKey(viewKey, 'p', p, skipBelow, current, at)
	enc, ok := sp.encoded(key)
	if ok {
		e.metrics.framesShared.Inc()
		e.metrics.stateEventsWritten.Add(float64(enc.events))
	} else {
		for i := range recs {
			if _, old := superseded[string(recs[i].Key)]; old {
				continue
			}
			n := len(enc.frames)
			enc.frames = e.appendStateRecord(enc.frames, format, filters, &recs[i], p, skipBelow, at)
			if len(enc.frames) > n {
				enc.events++
			}
		}
		sp.keep(key, enc)
	}
	at.Offsets[p] = recs[len(recs)-1].Offset + 1
	return cw.write(enc.frames)
}

// encodingKey names the frames of a stretch of state records written for a
// view from position at: whatever else decides them (what the stretch is,
// which deletes are left out) is in tag, p, a and b.
func encodingKey(viewKey string, tag byte, p int32, a, b int64, at *proto.Progress) string {
	key := make([]byte, 0, len(viewKey)+64)
	key = append(key, viewKey...)
	key = append(key, 0, tag)
	key = strconv.AppendInt(key, int64(p), 10)
	key = append(key, 0)
	key = strconv.AppendInt(key, a, 10)
	key = append(key, 0)
	key = strconv.AppendInt(key, b, 10)
	key = append(key, 0)
	return string(proto.AppendProgress(key, at))
}

// appendStateRecord appends rec's frame, when the client is to get it, with
// its true progress (at, moved past it). A tombstone below skipBelow, or
// without a key, is left out: the client cannot hold its key.
func (e *Edge) appendStateRecord(buf []byte, format proto.IDFormat, filters []filter, rec *proto.Record, p int32, skipBelow int64, at *proto.Progress) []byte {
	at.Offsets[p] = rec.Offset + 1
	if rec.Tombstone && (rec.Offset < skipBelow || rec.KeyNull) {
		return buf
	}
	if !matches(filters, rec) {
		return buf
	}
	return appendRecordFrame(buf, format, rec, at)
}

// writeLive writes the client's queued frames until it leaves, falls too far
// behind, or its feed ends.
func (e *Edge) writeLive(ctx context.Context, cw *connWriter, c *client) {
	keepAlive := time.NewTimer(e.cfg.KeepAlive)
	defer keepAlive.Stop()
	if e.cfg.KeepAlive == Off {
		keepAlive.Stop()
	}
	wake := c.wakeChan()
	for {
		frames, overflow, closing := c.take()
		if frames != nil {
			err := cw.writeFrames(frames.bufs)
			putIovecs(frames)
			if err != nil {
				return
			}
			if e.cfg.KeepAlive != Off {
				keepAlive.Reset(e.cfg.KeepAlive)
			}
		}
		if overflow {
			e.metrics.overflows.Inc()
			_ = cw.write(appendRetry(nil, e.retryMs()))
			return
		}
		if closing != "" {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-keepAlive.C:
			if err := cw.write(keepAliveFrame); err != nil {
				return
			}
			keepAlive.Reset(e.cfg.KeepAlive)
		}
	}
}

// connWriter writes frames with a deadline per write: to a hijacked
// connection (one writev), or through a ResponseWriter, then flushed.
type connWriter struct {
	w           io.Writer
	flush       func() error // nil for a hijacked connection
	setDeadline func(time.Time) error
	timeout     time.Duration
	state       *stateWrites // during the state part: its deadlines instead of timeout
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
			return err
		}
		_ = cw.setDeadline(time.Now().Add(cw.timeout))
		_, err := cw.w.Write(b)
		return err
	}
	return cw.writeFrames([][]byte{b})
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
		return err
	}
	_ = cw.setDeadline(time.Now().Add(cw.timeout))
	return cw.writeAll(frames)
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
