// A stream's setup: where a client starts, its response header, its state
// part, and the live phase of a connection that keeps a goroutine.

package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

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
// a node that seems behind is asked again for up to PageTimeout, since the
// node that answers may lag the one whose changes the client saw.
func (e *Edge) aheadOfCache(ctx context.Context, f *feed, start, live proto.Progress) (bool, error) {
	// A holder in ordinary consumer lag catches up well within PageTimeout;
	// an id of another incarnation never does.
	deadline := time.Now().Add(e.cfg.PageTimeout)
	for p, o := range start.Offsets {
		if o <= live.Offset(int32(p)) {
			continue
		}
		for {
			page, err := e.requestPageRetrying(ctx, f.topic, f.meta.Epoch, int32(p), o)
			if err != nil {
				return false, err
			}
			if page.Next >= o {
				break
			}
			if time.Now().After(deadline) {
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
	// In a storm, streams started together would come back together: they
	// are spread over the time the setup queue now takes to drain.
	if b := min(e.setupBacklog(), e.cfg.RetryMax/2).Milliseconds(); b > 0 {
		ms = min(ms+rand.Int64N(b+1), e.cfg.RetryMax.Milliseconds())
	}
	return ms
}

func (e *Edge) stream(w http.ResponseWriter, r *http.Request, route *Route, topic string, filters []filter, filterKey string) {
	if e.draining.Load() {
		e.refuse(w, refuseDraining)
		return
	}
	ctx := r.Context()
	c := newClient(e.cfg.MaxQueue, e.cfg.MaxQueueBytes)
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
		case err != nil && ctx.Err() != nil:
			return // the client hung up while it waited
		case err != nil:
			e.log.Warn("topic feed", "topic", topic, "err", err)
			e.refuse(w, refuseCacheUnavailable)
			return
		}
		var ok bool
		if live, ok = f.join(viewKey, filters, route.idFormat, c); ok {
			break
		}
		// The feed stopped between lookup and join (a topic change, or
		// its linger ended): the next lookup starts a new one.
		if attempt == 2 {
			e.refuse(w, refuseFeedRestarting)
			return
		}
	}
	e.metrics.clients.Inc() // joined: every way out below leaves and decrements
	e.auth.track(ctx, c)    // a guarded stream ends at its token's expiry
	handedOver := false     // a hijacked connection lives on after this handler
	defer func() {
		if !handedOver {
			f.leave(viewKey, c)
			e.metrics.clients.Dec()
		}
	}()
	start, reset := e.startProgress(r, f, live)
	if reset == "" {
		ahead, err := e.aheadOfCache(ctx, f, start, live)
		if err != nil && ctx.Err() != nil {
			return // the client hung up while it waited
		}
		if err != nil {
			e.log.Warn("check position", "topic", topic, "err", err)
			e.refuse(w, refuseCacheUnavailable)
			return
		}
		if ahead {
			start, reset = proto.Progress{Epoch: f.meta.Epoch, Offsets: make([]int64, len(start.Offsets))}, resetOffsets
		}
	}

	e.metrics.connections.Inc()
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
			e.watchLive(ctx, lc)
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
				"X-Accel-Buffering: no\r\n" + corsLines(h) + "Connection: close\r\n\r\n"
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
				if page.Cursor <= since { // a page that does not move on would never end
					e.metrics.badPages.Inc()
					return at, fmt.Errorf("state %s/%d: page cursor %d does not advance past %d", f.topic, p, page.Cursor, since)
				}
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
