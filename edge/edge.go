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
// once (accept's hangup.go). Lock order: Edge.mu, feed.mu, client.mu (docs/LOCKS.md).
package edge

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/internal/ratelog"
	"github.com/ssekafka/ssekafka/proto"
)

// Edge is an edge node; it is an http.Handler.
type Edge struct {
	cfg      Config
	log      *slog.Logger
	tlsLog   *slog.Logger // log, rate-limited: failed handshakes may repeat without end
	subjects proto.Subjects
	metrics  *metrics

	mu    sync.Mutex
	feeds map[string]*feed

	cache cacheTier // what the edge asks of the cache tier (cachetier.go)

	streams streamer      // serves streams (stream.go)
	done    chan struct{} // closed by Close

	auth *authority // guarded streams; nil without guards (renew.go)

	acc      *accept.Server // the accept path: Serve, limits, setup queue, hang-up watch
	draining atomic.Bool    // set by Drain: streams are refused
	probes   *prober        // the cache-tier probe of Ready

	keys    *keyReads     // JSON reads (keyread.go)
	lookups *topicLookups // lookups of topics the edge does not know (lookup.go)
	feedMem feedMemory    // what feeds keep, against FeedMemoryBytes (budget.go)
	writers writers       // write feeds' live clients (writers.go)
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
	if err := cfg.checkGuards(); err != nil {
		return nil, err
	}
	if err := cfg.CORS.Validate(); err != nil {
		return nil, err
	}
	e := &Edge{
		cfg:      cfg,
		log:      ratelog.Wrap(cfg.Logger), // over-limit connections may repeat without end
		tlsLog:   ratelog.Wrap(cfg.Logger),
		subjects: proto.Subjects{Prefix: cfg.SubjectPrefix},
		metrics:  newMetrics(cfg.Registerer),
		feeds:    make(map[string]*feed),
		done:     make(chan struct{}),
	}
	e.writers.init(cfg.Writers, e.done)
	e.acc = accept.New(acceptConfig(e))
	e.streams = newStreamer(e)
	e.probes = newProber(e)
	clock := cfg.clock
	if clock == nil {
		clock = tier.SystemClock{}
	}
	e.lookups = newTopicLookups(e.metrics, e.log, clock)
	e.cache.setUp(&e.cfg, clock, e.metrics, e.lookups)
	e.keys = newKeyReads(e)
	e.feedMem.split(&e.cache.pages, cfg.FeedMemoryBytes)
	e.metrics.registerFuncs(cfg.Registerer, e)
	if err := e.startAuth(); err != nil {
		return nil, err
	}
	return e, nil
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
		e.auth.stop()
	}
	e.acc.Close() // the setup workers end; the streams still waiting are closed or refused
	for _, f := range e.feedList() {
		<-f.ready // an init under way ends with e.done
		if f.err == nil {
			f.fail(reason.Shutdown)
		}
	}
	e.acc.CloseWatch()
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
	e.acc.CORSHeaders(w.Header(), r)
	switch {
	case r.Method == http.MethodOptions && e.cfg.CORS != nil:
		e.acc.Preflight(w, r)
		return
	case r.Method == http.MethodPost && route.guard != "":
		e.auth.renewHTTP(w, r, route)
		return
	case r.Method != http.MethodGet && (r.Method != http.MethodHead || !wantsJSON(r)):
		w.Header().Set("Allow", allowed(route, e.cfg.CORS != nil))
		e.fail(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed: SSE streams are GET")
		return
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		// Zilla resets such a stream; a 400 says why.
		e.fail(w, http.StatusBadRequest, "an SSE request has no body")
		return
	}
	if route.guard != "" {
		sess, ok := e.auth.authorize(w, r, route, params)
		if !ok {
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess))
	}
	topic := route.topic.resolve(params)
	if err := proto.ValidTopic(topic); err != nil {
		e.fail(w, http.StatusBadRequest, "bad topic: "+err.Error())
		return
	}
	if !route.allowsTopic(topic) {
		e.fail(w, http.StatusNotFound, "no such topic")
		return
	}
	switch e.admitLookup(r, topic) {
	case lookupNotFound:
		e.fail(w, http.StatusNotFound, "topic "+topic+" not found")
		return
	case lookupRefused:
		if wantsJSON(r) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, reason.LookupRate.String(), http.StatusServiceUnavailable)
		} else {
			e.refuse(w, reason.LookupRate)
		}
		return
	}
	filters, filterKey := route.resolveFilters(params)
	if wantsJSON(r) {
		e.keys.read(w, r, topic, filters)
		return
	}
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
			go func() {
				select {
				case <-e.done: // Close waits for this init
					cancel()
				case <-ctx.Done():
				}
			}()
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
