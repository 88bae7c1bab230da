package edge_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/internal/ssetest"
	"github.com/ssekafka/ssekafka/internal/teststack"
	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// stack is a whole path in one process: kfake, nats-server, one cache node,
// one edge serving on a loopback port, and a producer.
type stack struct {
	t          *testing.T
	tiers      *teststack.Tiers // Kafka, NATS and the cache nodes' runs
	brokers    []string
	producer   *kgo.Client
	edge       *edge.Edge
	url        string
	edgeReg    *prometheus.Registry
	cacheReg   *prometheus.Registry
	natsURL    string
	nc         *nats.Conn
	stopCache  func()
	nats       *server.Server
	client     *http.Client // default: http.DefaultClient
	accepted   atomic.Int64 // TCP connections the edge accepted (Edge.Serve)
	badChanges bool         // the test sends forged live messages (expectBadChanges)
	standbyLag time.Duration
	topics     []string // created at start
	partitions int32    // of each of topics
	// produceHook, when set, sees each record before produce writes it
	// (a test adds headers, so that some travel apart).
	produceHook func(*kgo.Record)
	// standby is the lagging standby (standbyLag). produce waits until it
	// too has applied what it wrote, unless standbyBehind is set: then
	// clients may meet the standby behind in their state too.
	standby       *cache.Node
	standbyBehind bool
}

// expectBadChanges marks a test that forges live messages: without it, a
// stack fails its test when the edge counted any bad change.
func (s *stack) expectBadChanges() { s.badChanges = true }

type stackOptions struct {
	partitions int32
	topics     []string
	routes     []edge.RouteConfig
	edgeCfg    func(*edge.Config)
	cacheCfg   func(*cache.Config)
	noCache    bool                          // the test starts its own cache nodes
	viaNetHTTP bool                          // serve with net/http (hijacking its connections), not Edge.Serve
	tls        *tls.Config                   // Edge.Serve over TLS with this configuration
	handler    func(*edge.Edge) http.Handler // what Edge.Serve's server serves (a ServeMux that picks the edge); default the edge
	client     *http.Client
	maxPayload int32 // the NATS server's; 0: teststack's 8 MiB
	// standbyLag, when set, starts a standby cache node beside the primary
	// (the stack's own node, primary of every partition), whose Kafka
	// reads arrive standbyLag late: a holder that has not applied what the
	// primary published answers in the same queue group. Both nodes'
	// metrics are in cacheReg (labelled node=primary and node=standby).
	standbyLag time.Duration
}

var fixedNow = time.UnixMilli(1_800_000_000_000)

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 3
	}
	if len(o.topics) == 0 {
		o.topics = []string{"tasks"}
	}
	if o.routes == nil {
		o.routes = []edge.RouteConfig{
			{Paths: []string{"/tasks"}, Topic: "tasks"},
			{Paths: []string{"/keyed"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`},
			{Paths: []string{"/tasks/{id}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Key: ptr("${params.id}")}}},
			{Paths: []string{"/t/{topic}"}, Topic: "${params.topic}", TopicPattern: ".+"},
			{Paths: []string{"/public/{topic}"}, Topic: "${params.topic}", TopicPattern: `public\..+`},
		}
	}
	tiers := teststack.StartWith(t, teststack.Options{Topics: o.topics, Partitions: o.partitions, MaxPayload: o.maxPayload, NoCache: true})
	s := &stack{t: t, tiers: tiers, brokers: []string{tiers.Kafka}, client: o.client, standbyLag: o.standbyLag, topics: o.topics, partitions: o.partitions,
		nats: tiers.NATS, natsURL: tiers.NATSURL}
	s.producer = tiers.Producer(kgo.RecordPartitioner(kgo.ManualPartitioner()))

	if !o.noCache {
		s.startCache(o.cacheCfg)
		if o.standbyLag > 0 {
			s.startLaggingStandby(o.cacheCfg)
		}
	}

	enc := s.connectNATS()
	routes := compileRoutes(t, o.routes)
	s.edgeReg = prometheus.NewRegistry()
	ecfg := edge.Config{NATS: enc, Logger: testLogger(t), Routes: routes, RetryJitter: -1, Now: func() time.Time { return fixedNow },
		Registerer: s.edgeReg, ProbeInterval: 200 * time.Millisecond, PageTimeout: 500 * time.Millisecond}
	if o.edgeCfg != nil {
		o.edgeCfg(&ecfg)
	}
	var err error
	s.edge, err = edge.New(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.viaNetHTTP {
		srv := httptest.NewServer(s.edge)
		t.Cleanup(srv.Close)
		s.url = srv.URL
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: s.edge}
		if o.handler != nil {
			srv.Handler = o.handler(s.edge)
		}
		s.url = "http://" + ln.Addr().String()
		var serveLn net.Listener = countingListener{ln, &s.accepted}
		if o.tls != nil {
			srv.TLSConfig = o.tls // Serve counts, then serves over TLS
			s.url = "https://" + ln.Addr().String()
		}
		go func() { _ = s.edge.Serve(serveLn, srv) }()
		t.Cleanup(func() { _ = ln.Close(); _ = srv.Close() })
	}
	t.Cleanup(s.edge.Close)
	t.Cleanup(func() {
		// What a cache node publishes is never a bad change: operators alert on any.
		if n := s.edgeCounter("ssekafka_edge_bad_changes_total"); n != 0 && !s.badChanges && !t.Failed() {
			t.Errorf("the edge counted %v bad changes, and the test forged none", n)
		}
	})
	return s
}

// compileRoutes compiles rcs, failing t on an error.
func compileRoutes(t testing.TB, rcs []edge.RouteConfig) []*edge.Route {
	t.Helper()
	var routes []*edge.Route
	for _, rc := range rcs {
		r, err := edge.CompileRoute(rc)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, r)
	}
	return routes
}

// serveAnotherEdge starts another edge on the stack's NATS: cfg with the
// compiled routes and a NATS connection of its own, then tweak (nil for
// none); it serves (Edge.Serve) on a loopback port until the test ends.
// It returns the edge and its URL.
func (s *stack) serveAnotherEdge(routes []edge.RouteConfig, cfg edge.Config, tweak func(*edge.Config)) (*edge.Edge, string) {
	s.t.Helper()
	cfg.Routes = compileRoutes(s.t, routes)
	cfg.NATS = s.connectNATS()
	if tweak != nil {
		tweak(&cfg)
	}
	e, err := edge.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = e.Serve(ln, srv) }()
	s.t.Cleanup(func() { _ = ln.Close(); _ = srv.Close() })
	s.t.Cleanup(e.Close)
	return e, "http://" + ln.Addr().String()
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// restartNATS stops the NATS server and starts a new one on the same
// address; every connection reconnects, and what was published meanwhile is lost.
func (s *stack) restartNATS() {
	s.t.Helper()
	s.tiers.RestartNATS()
	s.nats = s.tiers.NATS
}

func (s *stack) connectNATS() *nats.Conn {
	nc, err := nats.Connect(s.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond), nats.ReconnectJitter(0, 0))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// startCache starts a cache node; the returned function stops it.
func (s *stack) startCache(tweak func(*cache.Config)) func() {
	s.cacheReg = prometheus.NewRegistry()
	cfg := cache.Config{Brokers: s.brokers, NATS: s.connectNATS(), TombstoneHorizon: time.Hour, Registerer: s.cacheReg}
	if s.standbyLag > 0 {
		cfg.Ownership = fixedRole(membership.RolePrimary)
		cfg.Bootstrap = s.topics // both nodes hold them from the start
		cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"node": "primary"}, s.cacheReg)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	node, stop := s.runCache(cfg)
	eventually(s.t, 10*time.Second, "cache node ready", node.Ready)
	s.stopCache = stop
	return stop
}

// startLaggingStandby starts the standby of every partition beside the
// stack's cache node: its Kafka reads arrive s.standbyLag late.
func (s *stack) startLaggingStandby(tweak func(*cache.Config)) {
	s.t.Helper()
	lag := s.standbyLag
	cfg := cache.Config{Brokers: s.brokers, NATS: s.connectNATS(), TombstoneHorizon: time.Hour,
		Ownership: fixedRole(membership.RoleStandby), Bootstrap: s.topics,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"node": "standby"}, s.cacheReg)}
	if tweak != nil {
		tweak(&cfg)
	}
	cfg.KafkaOptions = append(cfg.KafkaOptions, kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		return newLaggingConn(c, lag), nil
	}))
	node, _ := s.runCache(cfg)
	s.standby = node
	// Ready holds before a bootstrap topic's partitions are acquired: wait
	// until the standby holds them all (then caught up, as they are empty).
	want := float64(int(s.partitions) * len(s.topics))
	eventually(s.t, 20*time.Second, "standby cache node ready", func() bool {
		return node.Ready() && s.heldBy("standby") == want
	})
}

// heldBy is how many partitions the cache node labelled node holds.
func (s *stack) heldBy(node string) float64 {
	mfs, err := s.cacheReg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "ssekafka_cache_partitions_held" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "node" && l.GetValue() == node {
					n += m.GetGauge().GetValue()
				}
			}
		}
	}
	return n
}

// fixedRole is an Ownership with one role in every partition: a primary
// and a standby beside it, without gossip.
type fixedRole membership.Role

var _ membership.Ownership = fixedRole(0)

func (r fixedRole) Role(string, int32) membership.Role { return membership.Role(r) }
func (fixedRole) Changed() <-chan struct{}             { return nil }
func (fixedRole) SetCaughtUp(bool)                     {}

// laggingConn hands out what its connection reads lag after it arrived:
// the Kafka client above it sees every response late, at full throughput.
// A reader goroutine reads ahead; Read honours read deadlines and Close.
type laggingConn struct {
	net.Conn
	lag    time.Duration
	chunks chan lagChunk
	closed chan struct{}
	once   sync.Once

	next *lagChunk // Read's (one reader at a time): taken from chunks, not yet due or not yet read

	mu       sync.Mutex
	deadline time.Time
}

type lagChunk struct {
	b   []byte
	at  time.Time
	err error
}

func newLaggingConn(c net.Conn, lag time.Duration) *laggingConn {
	lc := &laggingConn{Conn: c, lag: lag, chunks: make(chan lagChunk, 64), closed: make(chan struct{})}
	go func() {
		for {
			buf := make([]byte, 64<<10)
			n, err := c.Read(buf)
			select {
			case lc.chunks <- lagChunk{buf[:n], time.Now(), err}:
			case <-lc.closed:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return lc
}

func (c *laggingConn) Read(b []byte) (int, error) {
	for c.next == nil || len(c.next.b) == 0 {
		if c.next != nil && c.next.err != nil {
			return 0, c.next.err
		}
		c.next = nil
		c.mu.Lock()
		deadline := c.deadline
		c.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			expired = t.C
		}
		select {
		case ch := <-c.chunks:
			c.next = &ch
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-c.closed:
			return 0, net.ErrClosed
		}
		// The network's delay, not a wait for a state.
		due := time.NewTimer(time.Until(c.next.at.Add(c.lag)))
		select {
		case <-due.C:
		case <-c.closed:
			due.Stop()
			return 0, net.ErrClosed
		}
	}
	n := copy(b, c.next.b)
	c.next.b = c.next.b[n:]
	if len(c.next.b) == 0 && c.next.err == nil {
		c.next = nil
	}
	return n, nil
}

func (c *laggingConn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline bounds Read, not the reader goroutine's reads.
func (c *laggingConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *laggingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// runCache runs a cache node until stop is called or the test ends.
func (s *stack) runCache(cfg cache.Config) (node *cache.Node, stop func()) {
	s.t.Helper()
	return s.tiers.RunCache(cfg)
}

// newClientView is the view of a client that connects to path (a keyed
// route) and reads until ready.
func (s *stack) newClientView(path string) map[string]string {
	s.t.Helper()
	view := map[string]string{}
	for _, ev := range s.connect(path, nil).untilReady()[1:] {
		_, _, change := keyedEvent(s.t, ev)
		apply(view, change)
	}
	delete(view, "") // the ready marker's null key
	return view
}

// sameView fails the test unless got holds exactly want's keys and values.
func sameView(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s: %s=%.20q, want %.20q", what, k, got[k], v)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// recreateTopic deletes topic, waits until Kafka no longer lists it and
// creates it again (compacted, partitions), and returns a new producer: the
// stack's one remembers the old topic's id.
func (s *stack) recreateTopic(ctx context.Context, topic string, partitions int32) *kgo.Client {
	s.t.Helper()
	if _, err := s.adm().DeleteTopics(ctx, topic); err != nil {
		s.t.Fatal(err)
	}
	eventually(s.t, 10*time.Second, "topic deleted", func() bool {
		td, err := s.adm().ListTopics(ctx, topic)
		return err == nil && !td.Has(topic)
	})
	if err := devstack.CreateCompactedTopics(ctx, s.brokers, partitions, topic); err != nil {
		s.t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(prod.Close)
	return prod
}

// produce writes records synchronously (a nil value is a tombstone) and
// waits until the cache has applied them.
func (s *stack) produce(topic string, recs ...*kgo.Record) []*kgo.Record {
	s.t.Helper()
	s.produceToKafka(topic, recs...)
	for _, r := range recs {
		s.waitApplied(topic, r.Partition, r.Offset)
	}
	return recs
}

// produceToKafka writes records synchronously, without waiting for the cache.
func (s *stack) produceToKafka(topic string, recs ...*kgo.Record) []*kgo.Record {
	s.t.Helper()
	for _, r := range recs {
		r.Topic = topic
		if s.produceHook != nil {
			s.produceHook(r)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	return recs
}

// waitApplied polls the cache until it has applied the partition up to offset,
// so that a test knows whether a record reaches a client as state or live
// (with a standby, both nodes; the primary only with standbyBehind).
func (s *stack) waitApplied(topic string, partition int32, offset int64) {
	s.t.Helper()
	if s.nc == nil {
		s.nc = s.connectNATS()
	}
	s.epoch(topic) // a metadata request takes the topic up
	subject := proto.Subjects{Prefix: "ssekafka"}.State(topic, partition)
	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: math.MaxInt64})
	eventually(s.t, 10*time.Second, "cache to apply "+topic, func() bool {
		msg, err := s.nc.Request(subject, req, time.Second)
		if err != nil {
			return false
		}
		page, err := proto.DecodeStatePage(msg.Data)
		return err == nil && page.Next > offset
	})
	if s.standby == nil || s.standbyBehind {
		return
	}
	eventually(s.t, 10*time.Second, "standby to apply "+topic, func() bool {
		for _, ts := range s.standby.Status().Topics {
			for _, ps := range ts.Held {
				if ts.Name == topic && ps.Partition == partition && ps.Next > offset {
					return true
				}
			}
		}
		return false
	})
}

func rec(p int32, key, value string) *kgo.Record {
	r := &kgo.Record{Partition: p, Key: []byte(key)}
	if value != "\x00" {
		r.Value = []byte(value)
	}
	return r
}

func tombstone(p int32, key string) *kgo.Record { return rec(p, key, "\x00") }

// epoch reads the topic's epoch as the cache derives it, through the cache's
// own metadata answer.
func (s *stack) epoch(topic string) uint32 {
	s.t.Helper()
	if s.nc == nil {
		s.nc = s.connectNATS()
	}
	var m proto.Meta
	// Polled: after a NATS restart the cache may not have resubscribed yet.
	eventually(s.t, 15*time.Second, "the cache's metadata for "+topic, func() bool {
		msg, err := s.nc.Request(proto.Subjects{Prefix: "ssekafka"}.Meta(topic), proto.AppendMetaRequest(nil), 5*time.Second)
		if err != nil {
			return false
		}
		m, err = proto.DecodeMeta(msg.Data)
		return err == nil && m.Status == proto.StatusOK
	})
	return m.Epoch
}

func (s *stack) adm() *kadm.Client { return kadm.NewClient(s.producer) }

// event is one SSE block as a client parses it, with its raw bytes.
type event = ssetest.Event

// sseClient reads one SSE stream in the background (ssetest.Stream), with
// the response it came in and the test it fails.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	st     *ssetest.Stream
	events <-chan event    // every block, keep-alives included; closed after the last
	done   <-chan struct{} // closed when the read ended
}

// newSSEClient reads resp's stream in the background; cancel ends it.
func newSSEClient(t *testing.T, resp *http.Response, cancel func()) *sseClient {
	st := ssetest.Start(resp.Body, cancel)
	return &sseClient{t: t, resp: resp, st: st, events: st.Events(), done: st.Done()}
}

func (s *stack) connect(path string, header http.Header) *sseClient {
	s.t.Helper()
	c, status := s.open(path, header)
	if status != http.StatusOK {
		s.t.Fatalf("GET %s: status %d", path, status)
	}
	return c
}

func (s *stack) open(path string, header http.Header) (*sseClient, int) {
	c, status, err := s.request(context.Background(), path, header)
	if err != nil {
		s.t.Fatal(err)
	}
	return c, status
}

// request opens a stream under ctx; cancelling ctx ends it, before its
// response header too.
func (s *stack) request(parent context.Context, path string, header http.Header) (*sseClient, int, error) {
	ctx, cancel := context.WithCancel(parent)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range header {
		req.Header[k] = v
	}
	client := s.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, nil
	}
	c := newSSEClient(s.t, resp, cancel)
	s.t.Cleanup(c.close)
	return c, resp.StatusCode, nil
}

func (c *sseClient) close() { c.st.Close() }

// abandon stops handing out events; the read goes on until the stream ends.
func (c *sseClient) abandon() { c.st.Abandon() }

// rawStream is every byte the client read so far.
func (c *sseClient) rawStream() string { return c.st.Raw() }

var errStreamEnded = ssetest.ErrEnded

// next returns the next block that an EventSource would dispatch (it has
// data), or the retry/reset blocks, skipping keep-alive comments.
func (c *sseClient) next(timeout time.Duration) (event, error) {
	return c.st.Next(timeout)
}

// errStopped is returned by nextOrStop when stop closes first.
var errStopped = ssetest.ErrStopped

func (c *sseClient) nextOrStop(timeout time.Duration, stop <-chan struct{}) (event, error) {
	return c.st.NextOrStop(timeout, stop)
}

func (c *sseClient) mustNext() event {
	c.t.Helper()
	ev, err := c.next(10 * time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return ev
}

// untilReady returns the events up to and including event:ready.
func (c *sseClient) untilReady() []event {
	c.t.Helper()
	var evs []event
	for {
		ev := c.mustNext()
		evs = append(evs, ev)
		if ev.Event == "ready" {
			return evs
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, timeout, what, cond)
}

// testLogger sends logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// The test client allocates little per connection: the property tests open
// thousands, and a buffer of 1<<16 events each (~6 MiB) grew a -count=100
// run's heap by gigabytes until it stalled.
func TestTestClientAllocatesLittlePerConnection(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "k", "v"))
	s.connect("/tasks", nil).untilReady() // warm up
	const conns = 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range conns {
		c := s.connect("/tasks", nil)
		c.untilReady()
		c.close()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / conns; per > 1<<20 {
		t.Fatalf("%d KiB allocated per connection (client and edge), want under 1 MiB", per>>10)
	} else {
		t.Logf("%d KiB allocated per connection (client and edge)", per>>10)
	}
}
