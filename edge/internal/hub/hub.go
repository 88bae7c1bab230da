// Package hub is the edge's core: each topic's feed (the ordered applier of
// its changes, with its gap fills, resume ring and encoded frames), the
// streams that join it (their setup, state part and sink), and the
// continuous authorization of guarded streams; per-key JSON reads
// (edge/internal/keyread) ask the cache tier through it. Package edge
// wires it to the accept path and the cache tier; docs/architecture.md
// follows a record and a stream through its files.
package hub

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/keyread"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// Config is what the hub reads of the edge's configuration, its defaults
// applied and checked by package edge (edge.Config documents each field).
type Config struct {
	Tier  tier.Tier  // the cache tier asked
	Clock tier.Clock // times requests to the tier and the answers kept
	// NATS carries renewals between edges (Guards); nil without guards.
	NATS          *nats.Conn
	NATSName      string
	SubjectPrefix string

	Retry, RetryMax             time.Duration
	RetryJitter                 float64
	KeepAlive                   time.Duration
	NoReady                     bool
	PageBytes                   int
	PageTimeout, RequestTimeout time.Duration
	WriteTimeout                time.Duration
	MaxQueue, MaxQueueBytes     int
	Writers                     int // goroutines writing a feed's hijacked clients, the feed's own included
	FeedBuffer                  int
	ProbeInterval, FeedLinger   time.Duration
	ResumeRingBytes             int
	FeedMemoryBytes             int
	ResumeRingAge               time.Duration
	StateWriteTimeout           time.Duration
	StateMinRate                int
	NoHijack                    bool
	KeyReads                    keyread.Limits
	Guards                      map[string]Authorization
	// Sharing decides when a stream is served from what others share (the
	// resume ring, pages answered lately); zero: resume.ShareWhenCrowded.
	Sharing resume.Sharing
	// Compression is the content codings streams and JSON reads offer, in
	// order of preference (a route's own, if any, for its streams).
	Compression []compress.Encoding

	Now        func() time.Time
	Log        *slog.Logger // rate-limited
	Registerer prometheus.Registerer
}

// Hub holds an edge's topic feeds and serves its streams and key reads.
type Hub struct {
	cfg      Config
	log      *slog.Logger
	subjects proto.Subjects
	metrics  *metrics.Edge
	acc      *accept.Server // admission, the setup queue, refusals, hang-up watch
	done     chan struct{}  // closed by Stop
	draining atomic.Bool    // set by Drain: streams are refused

	mu    sync.Mutex
	feeds map[string]*feed

	cache   cacheTier      // what the hub asks of the cache tier (cachetier.go)
	streams streamer       // serves streams (stream.go)
	auth    *authority     // guarded streams; nil without guards (renew.go)
	keys    *keyread.Reads // JSON reads (edge/internal/keyread)
	lookups *topicLookups  // lookups of topics the edge does not know (lookup.go)
	feedMem feedMemory     // what feeds keep, against FeedMemoryBytes (budget.go)
	writers writers        // write feeds' live clients (writers.go)
	codings *codingMetrics // compressed bytes and streams by coding (coding.go); nil: none
}

// New builds a hub; acc is the edge's accept path, m its metrics.
func New(cfg Config, acc *accept.Server, m *metrics.Edge) (*Hub, error) {
	if cfg.Clock == nil {
		cfg.Clock = tier.SystemClock{}
	}
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Log,
		subjects: proto.Subjects{Prefix: cfg.SubjectPrefix},
		metrics:  m,
		acc:      acc,
		feeds:    make(map[string]*feed),
		done:     make(chan struct{}),
	}
	h.writers.init(cfg.Writers, h.done)
	h.codings = newCodingMetrics(m)
	h.streams = newStreamer(h)
	h.lookups = newTopicLookups(m, h.log, cfg.Clock)
	h.cache.setUp(&h.cfg, cfg.Clock, m, h.lookups)
	h.keys = keyread.New(keyread.Config{
		Tier: keyTier{&h.cache}, Limits: cfg.KeyReads, RequestTimeout: cfg.RequestTimeout, WriteTimeout: cfg.WriteTimeout,
		Metrics: m, Log: h.log, Clock: cfg.Clock, ClientKey: acc.ClientKey, PositionOf: h.feedPosition, Fail: h.fail,
		Compression: cfg.Compression,
	})
	h.feedMem.split(&h.cache.pages, cfg.FeedMemoryBytes)
	if err := h.startAuth(); err != nil {
		return nil, err
	}
	return h, nil
}

// Stop ends the hub's background work (feed inits under way, the
// authorization loop); CloseFeeds then ends the feeds.
func (h *Hub) Stop() {
	select {
	case <-h.done:
	default:
		close(h.done)
		h.auth.stop()
	}
}

// CloseFeeds ends every topic feed for why: their clients are disconnected
// (Close: reason.Shutdown; a topic change ends one feed the same way).
func (h *Hub) CloseFeeds(why reason.Reason) {
	for _, f := range h.feedList() {
		<-f.ready // an init under way ends with Stop
		if f.err == nil {
			f.fail(why)
		}
	}
}

// feedList returns the running feeds, to work on without h.mu.
func (h *Hub) feedList() []*feed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Values(h.feeds))
}

// Fail answers a request that cannot be served with status and reason (a
// 4xx counts as a bad request).
func (h *Hub) Fail(w http.ResponseWriter, status int, reason string) {
	if status < 500 {
		h.metrics.BadRequests.Inc()
	}
	http.Error(w, reason, status)
}

func (h *Hub) fail(w http.ResponseWriter, status int, reason string) { h.Fail(w, status, reason) }

// refuse answers a stream as a browser survives it: 200, a comment, a retry.
func (h *Hub) refuse(w http.ResponseWriter, why reason.Reason) { h.acc.Refuse(w, why) }

// Stream serves a stream of topic on the route at index in the edge's
// routes, through its resolved filters (filterKey names them: streams of
// a route with equal keys share frames).
func (h *Hub) Stream(w http.ResponseWriter, r *http.Request, rt *route.Route, index int, topic string, filters []route.Filter, filterKey string) {
	h.streams.serve(w, r, rt, index, topic, filters, filterKey)
}

// ReadKey answers a JSON read of the one key the route's filters name, in
// a coding the route offers.
func (h *Hub) ReadKey(w http.ResponseWriter, r *http.Request, rt *route.Route, topic string, filters []route.Filter) {
	h.keys.Read(w, r, topic, filters, rt.Compression())
}

// Authorize verifies a request to a guarded route, puts the token's
// identity and attributes into params, and returns the request carrying
// its session; it answers a refused request itself (false).
func (h *Hub) Authorize(w http.ResponseWriter, r *http.Request, rt *route.Route, params route.Context) (*http.Request, bool) {
	sess, ok := h.auth.authorize(w, r, rt, params)
	if !ok {
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)), true
}

// Renew serves a renewal POST on a guarded route.
func (h *Hub) Renew(w http.ResponseWriter, r *http.Request, rt *route.Route) {
	h.auth.renewHTTP(w, r, rt)
}

// Draining reports whether Drain was called.
func (h *Hub) Draining() bool { return h.draining.Load() }

// FeedMemoryBytes is what the feeds keep against FeedMemoryBytes.
func (h *Hub) FeedMemoryBytes() int64 { return h.feedMemoryBytes() }

// KeyReadBytesHeld is the bytes of values held for JSON reads in flight.
func (h *Hub) KeyReadBytesHeld() int64 { return int64(h.keys.HeldBytes()) }

// RetryMs is the retry a refused or closed stream is told now.
func (h *Hub) RetryMs() int64 { return h.retryMs() }

// feedFor returns the topic's running feed, starting it on first use.
func (h *Hub) feedFor(ctx context.Context, topic string) (*feed, error) {
	h.mu.Lock()
	f := h.feeds[topic]
	if f == nil {
		f = &feed{e: h, topic: topic, ready: make(chan struct{}), done: make(chan struct{}), views: map[string]*view{}}
		h.feeds[topic] = f
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*h.cfg.RequestTimeout)
			defer cancel()
			go func() {
				select {
				case <-h.done: // Close waits for this init
					cancel()
				case <-ctx.Done():
				}
			}()
			if err := f.init(ctx); err != nil {
				f.err = err
				h.mu.Lock()
				if h.feeds[topic] == f {
					delete(h.feeds, topic)
				}
				h.mu.Unlock()
			}
			close(f.ready)
		}()
	}
	h.mu.Unlock()
	select {
	case <-f.ready:
		return f, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// KeyReads is the hub's JSON reads.
func (h *Hub) KeyReads() *keyread.Reads { return h.keys }

// keyTier is the cache tier as key reads ask it.
type keyTier struct{ ct *cacheTier }

func (t keyTier) Meta(ctx context.Context, topic string) (proto.Meta, error) {
	return t.ct.requestMeta(ctx, topic)
}

func (t keyTier) Key(ctx context.Context, topic string, epoch uint32, p int32, key []byte, floor int64) (proto.KeyReply, error) {
	return t.ct.client.Key(ctx, topic, epoch, p, key, floor)
}

func (t keyTier) Apart(ctx context.Context, topic string, epoch uint32, p int32, stub *proto.Record) (proto.Record, error) {
	return t.ct.requestApart(ctx, topic, epoch, p, stub)
}

// feedPosition is the position of the topic's running feed: what this
// edge may have delivered to a reader's own stream already (none without
// a feed, or while it starts).
func (h *Hub) feedPosition(topic string) keyread.Position {
	h.mu.Lock()
	f := h.feeds[topic]
	h.mu.Unlock()
	if f == nil {
		return keyread.Position{}
	}
	select {
	case <-f.ready:
	default:
		return keyread.Position{} // starting: it has delivered nothing yet
	}
	if f.err != nil {
		return keyread.Position{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return keyread.Position{Epoch: f.progress.Epoch, Offsets: slices.Clone(f.progress.Offsets)}
}

// WriterJobs is how many shares of a batch the writer goroutines have
// flushed (the feeds' own shares aside); for the edge's tests.
func (h *Hub) WriterJobs() uint64 {
	h.writers.start.Do(h.writers.startShards) // or waits for the feed that started them
	var n uint64
	for _, s := range h.writers.shards {
		if s != nil {
			n += s.flushed.Load()
		}
	}
	return n
}

// WriterShares is, per writer, how many of topic's clients it writes (nil
// with one writer or no feed); for the edge's tests.
func (h *Hub) WriterShares(topic string) []int {
	h.mu.Lock()
	f := h.feeds[topic]
	h.mu.Unlock()
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.shards.count...)
}
