// Package edge is an edge node: the HTTP server that SSE clients connect to.
//
// It holds no durable state. For each topic with clients it keeps one feed (a
// NATS subscription to the topic's live changes); a new or returning client is
// sent the topic's state from its position, paged from the cache tier (or,
// for a position inside the feed's ring of recent changes, from memory),
// then joins the feed's live changes without loss or duplicates (docs/architecture.md
// rules 2, 5 and 8). Concurrency: each feed has one goroutine applying changes. A
// connection has no goroutine while it waits for a setup worker (Serve),
// which writes its state part; a stream on net/http's goroutine (HTTP/2,
// or the edge under net/http) waits in the same queue for a worker to
// grant it a slot for its state part (edge/internal/accept: the accept
// path, its limits and its setup queue). Live, a hijacked connection on a raw socket
// (HTTP/1.x on Linux) has none while idle: its feed writes its frames
// without blocking, and only a full socket gets a goroutine until it
// drains. Any other stream (HTTP/2, TLS, other systems) keeps a goroutine
// writing its frames. On Linux one epoll watcher per edge notices a client
// that hangs up, queued, in its state part or live, and releases it at
// once (accept's hangup.go). Lock order: Hub.mu, feed.mu, client.mu (docs/LOCKS.md).
//
// This package is the public API and its wiring: Config and its checks,
// routes (edge/internal/route), the accept path (edge/internal/accept), the
// cache tier (edge/internal/tier), and the hub that holds the feeds and
// serves streams and key reads (edge/internal/hub).
package edge

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/hub"
	"github.com/ssekafka/ssekafka/edge/internal/keyread"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/internal/ratelog"
	"github.com/ssekafka/ssekafka/proto"
)

// Edge is an edge node; it is an http.Handler.
type Edge struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Edge
	acc     *accept.Server // the accept path: Serve, limits, setup queue, hang-up watch
	hub     *hub.Hub       // the feeds, streams and key reads
	probes  *prober        // the cache-tier probe of Ready
	done    chan struct{}  // closed by Close
}

var _ http.Handler = (*Edge)(nil)

// New builds an edge node.
func New(cfg Config) (*Edge, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.checkGuards(); err != nil {
		return nil, err
	}
	if err := cfg.CORS.Validate(); err != nil {
		return nil, err
	}
	log := ratelog.Wrap(cfg.Logger) // over-limit connections may repeat without end
	e := &Edge{
		cfg:     cfg,
		log:     log,
		metrics: metrics.New(cfg.Registerer),
		done:    make(chan struct{}),
	}
	e.acc = accept.New(acceptConfig(e, ratelog.Wrap(cfg.Logger)))
	h, err := hub.New(hubConfig(&e.cfg, log), e.acc, e.metrics)
	if err != nil {
		return nil, err
	}
	e.hub = h
	e.probes = newProber(e)
	registerGauges(cfg.Registerer, e)
	return e, nil
}

// hubConfig is the hub's part of c, with the cache tier it asks: NATS's,
// or the one a test gives.
func hubConfig(c *Config, log *slog.Logger) hub.Config {
	var t tier.Tier
	if c.NATS != nil {
		t = tier.NewNATS(c.NATS, c.SubjectPrefix)
	}
	if c.tier != nil {
		t = c.tier(t)
	}
	return hub.Config{
		Tier: t, Clock: c.clock, NATS: c.NATS, NATSName: c.NATSName, SubjectPrefix: c.SubjectPrefix,
		Retry: c.Retry, RetryMax: c.RetryMax, RetryJitter: c.RetryJitter, KeepAlive: c.KeepAlive, NoReady: c.NoReady,
		PageBytes: c.PageBytes, PageTimeout: c.PageTimeout, RequestTimeout: c.RequestTimeout, WriteTimeout: c.WriteTimeout,
		MaxQueue: c.MaxQueue, MaxQueueBytes: c.MaxQueueBytes, Writers: c.Writers, FeedBuffer: c.FeedBuffer,
		ProbeInterval: c.ProbeInterval, FeedLinger: c.FeedLinger, ResumeRingBytes: c.ResumeRingBytes,
		FeedMemoryBytes: c.FeedMemoryBytes, ResumeRingAge: c.ResumeRingAge,
		StateWriteTimeout: c.StateWriteTimeout, StateMinRate: c.StateMinRate, NoHijack: c.NoHijack,
		KeyReads: keyread.Limits(c.KeyReads), Guards: hubGuards(c.Guards), Sharing: c.sharing, Compression: c.hubCompression(),
		Now: c.Now, Log: log, Registerer: c.Registerer,
	}
}

// Close stops every topic feed and disconnects their clients.
func (e *Edge) Close() {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
	e.hub.Stop()
	e.acc.Close() // the setup workers end; the streams still waiting are closed or refused
	e.hub.CloseFeeds(reason.Shutdown)
	e.acc.CloseWatch()
}

// Drain stops admitting streams (each new one is refused as a browser
// survives it, "edge draining"), makes Ready report false, and closes the
// streams it has, spread evenly over window, each after a final "retry:"
// (Retry with its jitter). It returns nil once no stream is left, or ctx's
// error if ctx ends first; the streams not yet closed by then are left to
// Close. A window of 0 or less closes them all at once. Drain may be called
// again; the edge never admits streams again.
func (e *Edge) Drain(ctx context.Context, window time.Duration) error {
	return e.hub.Drain(ctx, window)
}

// Draining reports whether Drain was called.
func (e *Edge) Draining() bool { return e.hub.Draining() }

// ServeHTTP serves one SSE stream, a JSON read of a key, or a renewal.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rt *route.Route
	var params route.Context
	var index int // the route's in Config.Routes: its streams' views are its own
	for i, cand := range e.cfg.Routes {
		if ctx, ok := cand.r.Match(r.URL.Path); ok {
			rt, params, index = cand.r, ctx, i
			break
		}
	}
	if rt == nil {
		e.hub.Fail(w, http.StatusNotFound, "no route for "+r.URL.Path)
		return
	}
	e.acc.CORSHeaders(w.Header(), r)
	switch {
	case r.Method == http.MethodOptions && e.cfg.CORS != nil:
		e.acc.Preflight(w, r)
		return
	case r.Method == http.MethodPost && rt.Guard() != "":
		e.hub.Renew(w, r, rt)
		return
	case r.Method != http.MethodGet && (r.Method != http.MethodHead || !keyread.WantsJSON(r)):
		w.Header().Set("Allow", allowed(rt, e.cfg.CORS != nil))
		e.hub.Fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: SSE streams are GET")
		return
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Zilla resets such a stream; a 400 says why.
		e.hub.Fail(w, http.StatusBadRequest, "an SSE request has no body")
		return
	}
	if rt.Guard() != "" {
		var ok bool
		if r, ok = e.hub.Authorize(w, r, rt, params); !ok {
			return
		}
	}
	topic := rt.Topic(params)
	if err := proto.ValidTopic(topic); err != nil {
		e.hub.Fail(w, http.StatusBadRequest, "bad topic: "+err.Error())
		return
	}
	if !rt.AllowsTopic(topic) {
		e.hub.Fail(w, http.StatusNotFound, "no such topic")
		return
	}
	switch e.hub.AdmitLookup(r, topic) {
	case hub.LookupNotFound:
		e.hub.Fail(w, http.StatusNotFound, "topic "+topic+" not found")
		return
	case hub.LookupRefused:
		if keyread.WantsJSON(r) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, reason.LookupRate.String(), http.StatusServiceUnavailable)
		} else {
			e.acc.Refuse(w, reason.LookupRate)
		}
		return
	}
	filters, filterKey := rt.ResolveFilters(params)
	if keyread.WantsJSON(r) {
		e.hub.ReadKey(w, r, rt, topic, filters)
		return
	}
	e.hub.Stream(w, r, rt, index, topic, filters, filterKey)
}
