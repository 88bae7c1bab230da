// Package edge is an edge node: the HTTP server that SSE clients connect to.
//
// It holds no durable state. For each topic with clients it keeps one feed (a
// NATS subscription to the topic's live changes); a new or returning client is
// sent the topic's state from its position, paged from the cache tier, then
// joins the feed's live changes without loss or duplicates (DESIGN rules 2
// and 5). Concurrency: each feed has one goroutine applying changes. A
// connection has no goroutine while it waits for a setup worker (Serve),
// which writes its state part. Live, a hijacked connection on a raw socket
// (HTTP/1.x on Linux) has none while idle: its feed writes its frames
// without blocking, and only a full socket gets a goroutine until it
// drains. Any other stream (HTTP/2, TLS, other systems) keeps a goroutine
// writing its frames. Lock order: Edge.mu, feed.mu, client.mu (LOCKS.md).
package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/proto"
)

// Off, in a Config field that says so, turns off what zero would give the
// default of.
const Off = -1

// Config configures an edge node. Zero means the documented default; a value
// out of range is an error naming the field (New returns it).
type Config struct {
	// NATS is the connection to the cache tier. Required; the edge does not close it.
	NATS *nats.Conn
	// SubjectPrefix prefixes every NATS subject. Default "ssekafka".
	SubjectPrefix string
	// Routes are matched in order; the first whose path matches serves the request.
	Routes []*Route
	// Retry is the reconnect delay sent in "retry:", in whole milliseconds.
	// Default 2s; Off writes "retry:0" (reconnect at once, no jitter).
	Retry time.Duration
	// RetryJitter adds up to this fraction of Retry at random, so that clients
	// of a failed edge do not come back at once. At most 1. Default 0.2; Off: none.
	RetryJitter float64
	// KeepAlive is the idle time after which a comment line is sent, at
	// least 1ms. Default 15s; Off: no comments (as Zilla by default).
	KeepAlive time.Duration
	// NoReady leaves out "event:ready" after the state part, for clients
	// that must see nothing but data frames (scripts written for Zilla that
	// grep "data:" lines would catch its "data:{}"). Default false: sent.
	NoReady bool
	// PageBytes is the size asked for per state page. Default 256 KiB.
	PageBytes int
	// PageTimeout bounds one state-page request: a cache node that dies while
	// answering costs this much before the edge asks again. Default 2s.
	PageTimeout time.Duration
	// RequestTimeout bounds one request to the cache tier. Default 15s (a
	// topic taken up on demand is answered once caught up).
	RequestTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 30s.
	WriteTimeout time.Duration
	// MaxQueue is how many frames may wait for a client before it is
	// disconnected with a retry hint. Default 16384.
	MaxQueue int
	// MaxQueueBytes bounds the bytes of the frames waiting for one client,
	// like MaxQueue (whichever is passed first conflates, then cuts off).
	// Default 8 MiB: 16 s of a 4 Mbit/s stream, while 16384 frames of up to
	// 32 KiB would let one stalled client hold 512 MiB.
	MaxQueueBytes int
	// FeedBuffer is how many live changes may wait per topic feed; past it
	// NATS drops them and the feed fills the gap from the cache. Default 65536.
	FeedBuffer int
	// ProbeInterval is how often a feed checks the cache's head for changes
	// lost in transit. Default 5s.
	ProbeInterval time.Duration
	// FeedLinger is how long a topic feed outlives its last client. Default 30s.
	FeedLinger time.Duration
	// SetupConcurrency is how many streams served by Serve may be in their
	// state part at once; more wait in a queue, costing no goroutine.
	// Default 64.
	SetupConcurrency int
	// SetupQueue is how many streams may wait to start; past it a new one
	// is answered 503 with Retry-After. Default 65536.
	SetupQueue int
	// ReleaseAfterBurst: once this many streams have started since the last
	// time, and none is starting, the edge returns free memory to the OS
	// (debug.FreeOSMemory, a few milliseconds): the runtime would otherwise
	// keep a reconnect storm's transient buffers resident for minutes.
	// Default 1000; negative: never.
	ReleaseAfterBurst int
	// NoHijack keeps every connection on net/http's ResponseWriter and a
	// goroutine per client, as on HTTP/2. Default false: HTTP/1.x streams
	// are hijacked and cost no goroutine while idle.
	NoHijack bool
	// Now is the clock for position times. Default time.Now.
	Now func() time.Time
	// Logger receives the edge's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the edge's metrics. Default: none registered.
	Registerer prometheus.Registerer
}

// setDefaults validates c and fills in the defaults of its zero fields.
func (c *Config) setDefaults() error {
	if c.NATS == nil {
		return errors.New("edge config: NATS is required")
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "ssekafka"
	}
	durations := []struct {
		name   string
		v      *time.Duration
		def    time.Duration
		canOff bool
	}{
		{"Retry", &c.Retry, 2 * time.Second, true},
		{"KeepAlive", &c.KeepAlive, 15 * time.Second, true},
		{"PageTimeout", &c.PageTimeout, 2 * time.Second, false},
		{"RequestTimeout", &c.RequestTimeout, 15 * time.Second, false},
		{"WriteTimeout", &c.WriteTimeout, 30 * time.Second, false},
		{"ProbeInterval", &c.ProbeInterval, 5 * time.Second, false},
		{"FeedLinger", &c.FeedLinger, 30 * time.Second, false},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v == Off && d.canOff:
		case *d.v < 0 && d.canOff:
			return fmt.Errorf("edge config: %s: %v is negative (Off turns it off)", d.name, *d.v)
		case *d.v < 0:
			return fmt.Errorf("edge config: %s: %v is negative", d.name, *d.v)
		}
	}
	if c.KeepAlive != Off && c.KeepAlive < time.Millisecond {
		return fmt.Errorf("edge config: KeepAlive: %v is below 1ms", c.KeepAlive)
	}
	if c.Retry != Off && c.Retry%time.Millisecond != 0 {
		return fmt.Errorf("edge config: Retry: %v is not whole milliseconds", c.Retry)
	}
	switch {
	case c.RetryJitter == 0:
		c.RetryJitter = 0.2
	case c.RetryJitter == Off:
	case c.RetryJitter < 0 || c.RetryJitter > 1 || c.RetryJitter != c.RetryJitter:
		return fmt.Errorf("edge config: RetryJitter: %v is not in (0, 1] (Off: none)", c.RetryJitter)
	}
	sizes := []struct {
		name string
		v    *int
		def  int
	}{
		{"PageBytes", &c.PageBytes, 256 << 10},
		{"MaxQueue", &c.MaxQueue, 16384},
		{"MaxQueueBytes", &c.MaxQueueBytes, 8 << 20},
		{"FeedBuffer", &c.FeedBuffer, 65536},
		{"SetupConcurrency", &c.SetupConcurrency, 64},
		{"SetupQueue", &c.SetupQueue, 65536},
	}
	for _, n := range sizes {
		switch {
		case *n.v == 0:
			*n.v = n.def
		case *n.v < 0:
			return fmt.Errorf("edge config: %s: %d is negative", n.name, *n.v)
		}
	}
	if c.ReleaseAfterBurst == 0 {
		c.ReleaseAfterBurst = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

const reasonShutdown = "shutdown"

// Edge is an edge node; it is an http.Handler.
type Edge struct {
	cfg      Config
	log      *slog.Logger
	subjects proto.Subjects
	metrics  *metrics

	mu    sync.Mutex
	feeds map[string]*feed

	keepAlive sync.Once     // starts the keep-alive loop of hijacked connections
	done      chan struct{} // closed by Close

	holdFeed func() // tests: each feed calls it before it applies anything
}

var _ http.Handler = (*Edge)(nil)

// New builds an edge node.
func New(cfg Config) (*Edge, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	for i, r := range cfg.Routes {
		r.index = i
	}
	return &Edge{
		cfg:      cfg,
		log:      cfg.Logger,
		subjects: proto.Subjects{Prefix: cfg.SubjectPrefix},
		metrics:  newMetrics(cfg.Registerer),
		feeds:    make(map[string]*feed),
		done:     make(chan struct{}),
	}, nil
}

// keepAliveLoop sends a comment to every hijacked connection idle for
// KeepAlive: it keeps proxies from closing the stream, and a write is how a
// connection with no reader finds out that its peer has gone.
func (e *Edge) keepAliveLoop() {
	tick := time.NewTicker(min(e.cfg.KeepAlive/2, time.Second))
	defer tick.Stop()
	var idle []*liveConn
	for {
		select {
		case <-e.done:
			return
		case now := <-tick.C:
			idle = e.idleLive(now, idle[:0])
			for _, lc := range idle {
				lc.c.mu.Lock()
				lc.c.appendLocked(marker(keepAliveFrame))
				lc.c.mu.Unlock()
				lc.flush()
			}
			clear(idle)
		}
	}
}

// idleLive appends the hijacked connections of every feed that have not
// been written to for KeepAlive.
func (e *Edge) idleLive(now time.Time, idle []*liveConn) []*liveConn {
	for _, f := range e.feedList() {
		f.mu.Lock()
		for _, v := range f.views {
			for c := range v.clients {
				c.mu.Lock()
				lc := c.lc
				c.mu.Unlock()
				if lc != nil && now.Sub(time.Unix(0, lc.lastWrite.Load())) >= e.cfg.KeepAlive {
					idle = append(idle, lc)
				}
			}
		}
		f.mu.Unlock()
	}
	return idle
}

// feedList returns the running feeds, to work on without e.mu.
func (e *Edge) feedList() []*feed {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Collect(maps.Values(e.feeds))
}

// Close stops every topic feed and disconnects their clients.
func (e *Edge) Close() {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
	for _, f := range e.feedList() {
		f.fail(reasonShutdown)
	}
}

func (e *Edge) fail(w http.ResponseWriter, status int, reason string) {
	if status < 500 {
		e.metrics.badRequests.Inc()
	}
	http.Error(w, reason, status)
}

// ServeHTTP serves one SSE stream.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var route *Route
	var params Context
	for _, rt := range e.cfg.Routes {
		if ctx, ok := rt.match(r.URL.Path); ok {
			route, params = rt, ctx
			break
		}
	}
	if route == nil {
		e.fail(w, http.StatusNotFound, "no route for "+r.URL.Path)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		e.fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: SSE streams are GET")
		return
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Zilla resets such a stream; a 400 says why.
		e.fail(w, http.StatusBadRequest, "an SSE request has no body")
		return
	}
	topic := route.topic.resolve(params)
	if err := proto.ValidTopic(topic); err != nil {
		e.fail(w, http.StatusBadRequest, "bad topic: "+err.Error())
		return
	}
	filters, filterKey := route.resolveFilters(params)
	e.stream(w, r, route, topic, filters, filterKey)
}

// feedFor returns the topic's running feed, starting it on first use.
func (e *Edge) feedFor(ctx context.Context, topic string) (*feed, error) {
	e.mu.Lock()
	f := e.feeds[topic]
	if f == nil {
		f = &feed{e: e, topic: topic, ready: make(chan struct{}), done: make(chan struct{}), views: map[string]*view{}}
		e.feeds[topic] = f
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*e.cfg.RequestTimeout)
			defer cancel()
			if err := f.init(ctx); err != nil {
				f.err = err
				e.mu.Lock()
				if e.feeds[topic] == f {
					delete(e.feeds, topic)
				}
				e.mu.Unlock()
			}
			close(f.ready)
		}()
	}
	e.mu.Unlock()
	select {
	case <-f.ready:
		return f, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// startProgress decides where a client starts: its Last-Event-ID (header,
// else the lastEventId query parameter), or live with ?from=live. A header
// that is present but empty wins over the parameter and means zero, as in
// Zilla. A non-empty reset reason means its position cannot resume: it starts from
// zero after "event:reset".
func (e *Edge) startProgress(r *http.Request, f *feed, live proto.Progress) (p proto.Progress, reset string) {
	n := int(f.meta.Partitions)
	zero := proto.Progress{Epoch: f.meta.Epoch, Offsets: make([]int64, n)}
	id, inHeader := "", false
	if v := r.Header.Values("Last-Event-ID"); len(v) > 0 {
		id, inHeader = v[0], true
	} else {
		id = r.URL.Query().Get("lastEventId")
	}
	if inHeader && id == "" {
		return zero, ""
	}
	if id == "" {
		if r.URL.Query().Get("from") == "live" {
			return live, ""
		}
		return zero, ""
	}
	p, err := proto.ParseEventID(id)
	if err != nil {
		e.metrics.badLastEventID.Inc()
		e.log.Debug("bad Last-Event-ID", "err", err)
		return zero, ""
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
		return zero, reset
	}
	for len(p.Offsets) < n {
		p.Offsets = append(p.Offsets, 0)
	}
	p.Epoch = f.meta.Epoch
	return p, ""
}

// aheadOfCache reports whether start names, for some partition, an offset
// past that partition's end as the cache tier knows it: an id from another
// incarnation of the topic (a Zilla id carries no epoch), which cannot
// resume. Only offsets past the feed's position (live) are asked about, and
// a node that seems behind is asked again a few times, since the node that
// answers may lag the one whose changes the client saw.
func (e *Edge) aheadOfCache(ctx context.Context, f *feed, start, live proto.Progress) (bool, error) {
	for p, o := range start.Offsets {
		if o <= live.Offset(int32(p)) {
			continue
		}
		for try := 0; ; try++ {
			page, err := e.requestPageRetrying(ctx, f.topic, f.meta.Epoch, int32(p), o)
			if err != nil {
				return false, err
			}
			if page.Next >= o {
				break
			}
			if try == 4 {
				return true, nil
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return false, nil
}

func (e *Edge) retryMs() int64 {
	if e.cfg.Retry == Off {
		return 0
	}
	ms := e.cfg.Retry.Milliseconds()
	if e.cfg.RetryJitter > 0 {
		ms += rand.Int64N(int64(float64(ms)*e.cfg.RetryJitter) + 1)
	}
	return ms
}

func (e *Edge) stream(w http.ResponseWriter, r *http.Request, route *Route, topic string, filters []filter, filterKey string) {
	ctx := r.Context()
	f, err := e.feedFor(ctx, topic)
	switch {
	case errors.Is(err, errTopicNotFound):
		e.fail(w, http.StatusNotFound, "topic "+topic+" not found")
		return
	case err != nil:
		e.log.Warn("topic feed", "topic", topic, "err", err)
		w.Header().Set("Retry-After", "2")
		e.fail(w, http.StatusServiceUnavailable, "cache tier unavailable")
		return
	}
	c := newClient(e.cfg.MaxQueue, e.cfg.MaxQueueBytes)
	viewKey := fmt.Sprintf("%d%s", route.index, filterKey)
	live, ok := f.join(viewKey, filters, route.idFormat, c)
	if !ok { // the feed stopped between lookup and join
		w.Header().Set("Retry-After", "1")
		e.fail(w, http.StatusServiceUnavailable, "topic feed restarting")
		return
	}
	handedOver := false // a hijacked connection lives on after this handler
	defer func() {
		if !handedOver {
			f.leave(viewKey, c)
			e.metrics.clients.Dec()
		}
	}()
	start, reset := e.startProgress(r, f, live)
	if reset == "" {
		ahead, err := e.aheadOfCache(ctx, f, start, live)
		if err != nil {
			e.log.Warn("check position", "topic", topic, "err", err)
			w.Header().Set("Retry-After", "2")
			e.fail(w, http.StatusServiceUnavailable, "cache tier unavailable")
			return
		}
		if ahead {
			start, reset = proto.Progress{Epoch: f.meta.Epoch, Offsets: make([]int64, len(start.Offsets))}, resetOffsets
		}
	}

	e.metrics.connections.Inc()
	e.metrics.clients.Inc()
	cw, conn := e.startResponse(w, r)
	if conn != nil {
		defer func() {
			if !handedOver {
				_ = conn.Close()
			}
		}()
	}

	buf := appendRetry(nil, e.retryMs())
	if reset != "" {
		e.metrics.resets.WithLabelValues(reset).Inc()
		buf = appendReset(buf, reset)
	}
	if err := cw.write(buf); err != nil {
		return
	}
	at, err := e.writeState(ctx, cw, f, route.idFormat, filters, start, live)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("state part", "topic", topic, "err", err)
		}
		return
	}
	if conn != nil {
		if lc, ok := newLiveConn(f, viewKey, c, conn); ok {
			c.mu.Lock()
			c.lc = lc
			c.mu.Unlock()
			f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
			handedOver = true
			if e.cfg.KeepAlive != Off {
				e.keepAlive.Do(func() { go e.keepAliveLoop() })
			}
			lc.flush()
			return
		}
		// No raw socket (TLS, not Linux): the live phase gets a goroutine
		// of its own, so that a setup worker serves only state parts.
		f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
		handedOver = true
		go func() {
			defer func() {
				_ = conn.Close()
				f.leave(viewKey, c)
				e.metrics.clients.Dec()
			}()
			// The request's context ends with its handler; a hijacked
			// stream ends on a failed write or when its feed ends.
			e.writeLive(context.WithoutCancel(ctx), cw, c)
		}()
		return
	}
	f.goLive(ctx, c, route.idFormat, at, e.cfg.RequestTimeout)
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
			head := r.Proto + " 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n" +
				"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n"
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

// writeState writes every current entry at or after start, partition by
// partition in offset order, each with its true progress (DESIGN rule 2),
// and returns the progress reached. It pages each partition at least up to
// joined, the feed's position when the client joined it: what came before
// that is not among the client's pending live frames, so a page from a cache
// node that lags the feed is followed by another until it is covered.
func (e *Edge) writeState(ctx context.Context, cw *connWriter, f *feed, format proto.IDFormat, filters []filter, start, joined proto.Progress) (proto.Progress, error) {
	at := start.Clone()
	at.TimeMs = e.cfg.Now().UnixMilli()
	if start.TimeMs != 0 {
		at.TimeMs = min(at.TimeMs, start.TimeMs)
	}
	var buf []byte
	for p := range at.Offsets {
		since := start.Offsets[p]
		behind := time.Duration(0)
		for {
			page, err := e.requestPageRetrying(ctx, f.topic, f.meta.Epoch, int32(p), since)
			if err != nil {
				return at, err
			}
			buf = buf[:0]
			for i := range page.Records {
				rec := &page.Records[i]
				at.Offsets[p] = rec.Offset + 1
				if rec.Tombstone && (start.Offsets[p] == 0 || rec.KeyNull) {
					continue // the client cannot hold this key
				}
				if !matches(filters, rec) {
					continue
				}
				buf = appendRecordFrame(buf, format, rec, &at)
				e.metrics.stateEventsWritten.Inc()
			}
			if !page.More {
				at.Offsets[p] = max(at.Offsets[p], page.Next)
			}
			if err := cw.write(buf); err != nil {
				return at, err
			}
			if page.More {
				since = page.Cursor
				continue
			}
			if at.Offsets[p] >= joined.Offset(int32(p)) {
				break
			}
			// The node that answered lags the live feed: ask again.
			if behind += 10 * time.Millisecond; behind > e.cfg.RequestTimeout {
				return at, fmt.Errorf("state %s/%d: cache stays at %d, behind the live feed at %d", f.topic, p, at.Offsets[p], joined.Offset(int32(p)))
			}
			select {
			case <-ctx.Done():
				return at, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			since = at.Offsets[p]
		}
	}
	return at, nil
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
}

func (cw *connWriter) write(b []byte) error {
	if cw.flush == nil {
		_ = cw.setDeadline(time.Now().Add(cw.timeout))
		_, err := cw.w.Write(b)
		return err
	}
	return cw.writeFrames([][]byte{b})
}

func (cw *connWriter) writeFrames(frames [][]byte) error {
	_ = cw.setDeadline(time.Now().Add(cw.timeout))
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

func (e *Edge) requestMeta(ctx context.Context, topic string) (proto.Meta, error) {
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.Meta(topic), proto.AppendMetaRequest(nil))
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w: %w", topic, errUnavailable, err)
	}
	m, err := proto.DecodeMeta(msg.Data)
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w", topic, err)
	}
	switch m.Status {
	case proto.StatusOK:
		return m, nil
	case proto.StatusUnknownTopic:
		return m, fmt.Errorf("meta %s: %w", topic, errTopicNotFound)
	}
	return m, fmt.Errorf("meta %s: %s: %s", topic, m.Status, m.Error)
}

// requestPageRetrying asks for a page, again and again while the cache tier
// does not answer (a node died while answering, or none holds the partition
// for a moment) or answers NotOwner (the node released the partition, or is
// not caught up on it), for up to RequestTimeout.
func (e *Edge) requestPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	deadline := time.Now().Add(e.cfg.RequestTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.PageTimeout)
		page, err := e.requestPage(rctx, topic, epoch, p, since)
		cancel()
		if err == nil || !errors.Is(err, errUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return page, err
		}
		select {
		case <-ctx.Done():
			return page, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *Edge) requestPage(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: since, MaxBytes: e.cfg.PageBytes})
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.State(topic, p), req)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w: %w", topic, p, errUnavailable, err)
	}
	page, err := proto.DecodeStatePage(msg.Data)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w", topic, p, err)
	}
	if page.Status == proto.StatusNotOwner {
		// Released, or not caught up: another holder answers, or soon will.
		return page, fmt.Errorf("fetch state %s/%d: %w: %s", topic, p, errUnavailable, page.Error)
	}
	if page.Status != proto.StatusOK {
		return page, fmt.Errorf("fetch state %s/%d: %s: %s", topic, p, page.Status, page.Error)
	}
	if page.Epoch != epoch {
		return page, fmt.Errorf("fetch state %s/%d: epoch %d, want %d", topic, p, page.Epoch, epoch)
	}
	return page, nil
}
