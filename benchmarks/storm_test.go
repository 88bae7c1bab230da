//go:build linux

package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/benchmarks/sseload"
	"github.com/ssekafka/ssekafka/internal/poll"
)

var (
	stormClients  = flag.Int("storm-clients", 9_000, "clients of the edge killed in BenchmarkStorm")
	stormOwn      = flag.Int("storm-own", 1_000, "the surviving edge's own clients in BenchmarkStorm")
	stormRate     = flag.Int("storm-rate", 50, "records per second during BenchmarkStorm")
	stormNew      = flag.Int("storm-new-clients", 9_000, "clients connecting at once in BenchmarkNewClientStorm")
	stormKeys     = flag.Int("storm-keys", 10_000, "keys of the topic in BenchmarkNewClientStorm")
	stormBaseline = flag.String("storm-baseline", "", "git commit to measure first, in the same run (e.g. main)")
	// Compression (issue 24; benchmarks/compress.sh).
	stormJSON           = flag.Bool("storm-json", false, "BenchmarkNewClientStorm: JSON values of about 200 B (sseload.PayloadJSON) instead of short lines")
	stormAcceptEncoding = flag.String("storm-accept-encoding", "", "BenchmarkNewClientStorm: the clients' Accept-Encoding (they decode gzip and zstd); empty: none")
	stormCompression    = flag.String("storm-compression", "", "BenchmarkNewClientStorm: the edge's sse.compression (e.g. off, or [gzip]); empty: its default")
)

// stormConfig is the cluster's configuration: one topic of 3 partitions.
// Every load client dials from 127.0.0.1: no cap per address.
const stormConfig = `
sse:
  retry: 2000
  maxConnectionsPerIP: -1
routes:
  - when: [{path: /t}]
    with: {topic: storm}
kafka:
  bootstrap: [storm]
`

// newClientStormConfig is stormConfig for the new-client storm: 9,000
// clients that each read the whole state at once take longer than the
// state part's write timeout on a small machine, and would be cut off
// (sse.stateWriteTimeout, issue 20) with nobody coming back: the scenario
// measures the storm, not that bound.
const newClientStormConfig = `
sse:
  retry: 2000
  maxConnectionsPerIP: -1
  stateWriteTimeout: 3m
routes:
  - when: [{path: /t}]
    with: {topic: storm}
kafka:
  bootstrap: [storm]
`

// producer writes "p=<partition> seq=<n> ts=<nanos>" records at a steady
// rate, round robin over partitions, keyed key-<p>-<seq mod keys>.
type producer struct {
	cl   *kgo.Client
	mu   sync.Mutex
	seqs map[int]int64
	stop chan struct{}
	done chan struct{}
}

func startProducer(tb testing.TB, brokers string, partitions, rate, keys int) *producer {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic("storm"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		tb.Fatal(err)
	}
	p := &producer{cl: cl, seqs: map[int]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			part := n % partitions
			p.mu.Lock()
			p.seqs[part]++
			seq := p.seqs[part]
			p.mu.Unlock()
			r := &kgo.Record{Partition: int32(part), Key: []byte("key-" + strconv.Itoa(part) + "-" + strconv.FormatInt(seq%int64(keys), 10)),
				Value: sseload.Payload(part, seq, time.Now().UnixNano())}
			cl.Produce(context.Background(), r, nil)
		}
	}()
	return p
}

// finish stops producing, waits for every record to be acknowledged and
// returns the last sequence number of each partition.
func (p *producer) finish(tb testing.TB) map[int]int64 {
	tb.Helper()
	close(p.stop)
	<-p.done
	if err := p.cl.Flush(context.Background()); err != nil {
		tb.Fatal(err)
	}
	p.cl.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.seqs)
}

// loop reads a set of clients on a goroutine of its own.
type loop struct {
	*sseload.Clients
	stop, done chan struct{}
	closed     sync.Once
}

func runClients(tb testing.TB, o sseload.DialOptions) *loop {
	tb.Helper()
	cl, err := sseload.DialWith(o)
	if err != nil {
		tb.Fatal(err)
	}
	l := &loop{Clients: cl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() { defer close(l.done); cl.Run(l.stop) }()
	tb.Cleanup(l.close)
	return l
}

// close stops reading and closes the connections, once.
func (l *loop) close() { l.closed.Do(func() { l.finish(); l.Clients.Close() }) }

// finish stops reading; the counters are final after it.
func (l *loop) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

func waitUntil(tb testing.TB, limit time.Duration, what string, cond func() bool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := poll.Wait(ctx, 10*time.Millisecond, cond); err != nil {
		tb.Fatalf("not within %v: %s", limit, what)
	}
}

// stormResult is what one edge's death costs its clients and the cluster.
type stormResult struct {
	Clients, Own    int
	Resumed         int        // clients of the killed edge ready again on the other
	CurrentMs       [4]float64 // p50, p90, p99, max of kill → ready again, ms
	StateRequests   float64    // served by the cache tier from the kill until every client was current
	Missed, Dupes   int64      // over every client, the whole run
	Behind          int        // clients missing the last records at the end
	OwnP99, OwnP999 float64    // ms, the surviving edge's own clients from the kill until the last resume
}

func (r stormResult) String() string {
	return fmt.Sprintf("%d clients resumed of %d: kill → current p50 %.0f ms, p90 %.0f, p99 %.0f, max %.0f; "+
		"%.0f state requests (%.3f per resumed client); missed %d, duplicates %d, behind %d; "+
		"the other edge's %d own clients: p99 %.1f ms, p99.9 %.1f ms during the storm",
		r.Resumed, r.Clients, r.CurrentMs[0], r.CurrentMs[1], r.CurrentMs[2], r.CurrentMs[3],
		r.StateRequests, r.StateRequests/float64(max(r.Resumed, 1)), r.Missed, r.Dupes, r.Behind,
		r.Own, r.OwnP99, r.OwnP999)
}

// storm starts a cache and two edges from bin, clients on each (those of
// the first fail over to the second), produces at rate, kills the first
// edge with SIGKILL and measures how its clients come back.
func storm(tb testing.TB, bin string, clients, own, rate int) stormResult {
	tb.Helper()
	c := startProcCluster(tb, bin, stormConfig, 2)
	a := runClients(tb, sseload.DialOptions{URLs: []string{c.EdgeURLs[0] + "/t", c.EdgeURLs[1] + "/t"},
		Clients: clients, Reconnect: true})
	b := runClients(tb, sseload.DialOptions{URLs: []string{c.EdgeURLs[1] + "/t"}, Clients: own, Reconnect: true})
	waitUntil(tb, time.Minute, "every client ready", func() bool {
		return a.Ready() == int64(clients) && b.Ready() == int64(own)
	})
	prod := startProducer(tb, c.Kafka, 3, rate, 1_000)
	waitUntil(tb, time.Minute, "live records flowing", func() bool {
		return a.Delivered() >= int64(clients*rate) && b.Delivered() >= int64(own*rate)
	})
	requestsBefore := c.cacheCounter(tb, "ssekafka_cache_state_requests_total")
	b.ResetLatency()
	killed := time.Now()
	c.Edges[0].Kill()
	lastReport := time.Now()
	waitUntil(tb, 2*time.Minute, "every client of the killed edge current again", func() bool {
		if time.Since(lastReport) >= 2*time.Second {
			lastReport = time.Now()
			tb.Logf("%v after the kill: %d of %d current again, %d reconnects, %d closed by the server, %d refused by every edge",
				time.Since(killed).Round(time.Second), len(a.ResumedAt()), clients, a.Redials(), a.Closed(), a.DialFails())
		}
		return len(a.ResumedAt()) >= clients
	})
	ownLatency := b.Latency()
	requests := c.cacheCounter(tb, "ssekafka_cache_state_requests_total") - requestsBefore
	// A second of live records after the storm, then every client must
	// hold the last record of each partition.
	time.Sleep(time.Second) // a steady-state interval to measure, not a wait for a state
	final := prod.finish(tb)
	waitUntil(tb, 30*time.Second, "the last records delivered", func() bool {
		return a.Delivered()+b.Delivered() > 0 && settled(a, b)
	})
	a.finish()
	b.finish()
	res := stormResult{Clients: clients, Own: own, StateRequests: requests,
		Missed: a.Missed() + b.Missed(), Dupes: a.Duplicates() + b.Duplicates(),
		Behind: a.Behind(final) + b.Behind(final),
		OwnP99: float64(ownLatency.ValueAtQuantile(99)) / 1000, OwnP999: float64(ownLatency.ValueAtQuantile(99.9)) / 1000}
	at := a.ResumedAt()
	res.Resumed = len(at)
	ms := make([]float64, len(at))
	for i, t := range at {
		ms[i] = float64(t-killed.UnixNano()) / 1e6
	}
	slices.Sort(ms)
	if len(ms) > 0 {
		q := func(f float64) float64 { return ms[min(int(f*float64(len(ms))), len(ms)-1)] }
		res.CurrentMs = [4]float64{q(0.5), q(0.9), q(0.99), ms[len(ms)-1]}
	}
	return res
}

// settled says whether deliveries stopped changing over a short interval.
func settled(ls ...*loop) bool {
	before := int64(0)
	for _, l := range ls {
		before += l.Delivered()
	}
	time.Sleep(200 * time.Millisecond) // sampling interval of the settle check
	after := int64(0)
	for _, l := range ls {
		after += l.Delivered()
	}
	return after == before
}

// Every client of a killed edge comes back on the other, from its
// Last-Event-ID, with nothing lost and nothing twice (the scenario of
// BenchmarkStorm at a small scale, the edges as their own processes).
func TestStormSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cluster as processes")
	}
	bin := buildSSEKafka(t, t.TempDir(), "")
	res := storm(t, bin, 200, 50, 50)
	t.Log(res)
	if res.Resumed != 200 || res.Missed != 0 || res.Dupes != 0 || res.Behind != 0 {
		t.Fatalf("storm: %v", res)
	}
}

// BenchmarkStorm: -storm-clients clients of edge A and -storm-own of edge
// B stream a 3-partition topic at -storm-rate records/s; A is killed with
// SIGKILL and its clients reconnect to B with their Last-Event-ID after
// the server's retry (2 s plus jitter). With -storm-baseline REF the same
// scenario runs first on that commit's binaries.
//
//	go test -run '^$' -bench Storm -benchtime 1x -storm-baseline main ./benchmarks/
func BenchmarkStorm(b *testing.B) {
	eachBuild(b, func(b *testing.B, name, bin string) {
		res := storm(b, bin, *stormClients, *stormOwn, *stormRate)
		fmt.Printf("storm, %s: %v\n", name, res)
	})
}

// eachBuild runs f as a sub-benchmark on the baseline's binaries (with
// -storm-baseline) and then on this tree's, so that each cluster is gone
// before the next starts.
func eachBuild(b *testing.B, f func(b *testing.B, name, bin string)) {
	dir := b.TempDir()
	type build struct{ name, bin string }
	var builds []build
	if *stormBaseline != "" {
		builds = append(builds, build{"baseline " + *stormBaseline, buildSSEKafka(b, dir, *stormBaseline)})
	}
	builds = append(builds, build{"this tree", buildSSEKafka(b, dir, "")})
	for _, bl := range builds {
		b.Run(strings.ReplaceAll(bl.name, " ", "_"), func(b *testing.B) { f(b, bl.name, bl.bin) })
	}
}

// produceState writes one record to each of keys distinct keys, round
// robin over 3 partitions (JSON values with -storm-json), and returns what
// a new client's state part must hold: the record count and the sum of
// p<<40|seq.
func produceState(tb testing.TB, brokers string, keys int) (n, sum int64) {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic("storm"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	seqs := map[int]int64{}
	var recs []*kgo.Record
	for i := range keys {
		p := i % 3
		seqs[p]++
		value := sseload.Payload(p, seqs[p], time.Now().UnixNano())
		if *stormJSON {
			value = sseload.PayloadJSON(p, seqs[p], time.Now().UnixNano())
		}
		recs = append(recs, &kgo.Record{Partition: int32(p), Key: []byte(fmt.Sprintf("key-%d-%d", p, seqs[p])), Value: value})
		sum += int64(p)<<40 | seqs[p]
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		tb.Fatal(err)
	}
	return int64(keys), sum
}

// newClientStormResult is what thousands of new clients at once cost.
type newClientStormResult struct {
	Clients, Keys  int
	Exact          int64   // clients whose state part was exactly the topic's state
	AllReadyMs     float64 // from the first connect until the last ready
	OneClient      float64 // state requests one client alone needs
	StateRequests  float64 // state requests the storm cost the cache tier
	ConnectSeconds float64
	EdgeCPUSeconds float64 // the edge's user and system CPU from the first connect until the last ready
	BytesPerClient float64 // read off the socket by each client until its ready, on average
	DecodeErrors   int64
	Encoding       string // the clients' Accept-Encoding
}

func (r newClientStormResult) String() string {
	return fmt.Sprintf("%d new clients on %d keys: %d exact, all ready in %.0f ms (connects took %.2f s); "+
		"%.0f state requests, %.1f× what one client needs (%.0f); edge CPU %.2f s, %.0f B read per client (Accept-Encoding %q, %d decode errors)",
		r.Clients, r.Keys, r.Exact, r.AllReadyMs, r.ConnectSeconds, r.StateRequests, r.StateRequests/max(r.OneClient, 1), r.OneClient,
		r.EdgeCPUSeconds, r.BytesPerClient, r.Encoding, r.DecodeErrors)
}

// newClientStorm starts a cache and an edge from bin, writes a state of
// keys keys, and connects clients new clients at once.
func newClientStorm(tb testing.TB, bin string, clients, keys int) newClientStormResult {
	tb.Helper()
	config := newClientStormConfig
	if *stormCompression != "" {
		config = strings.Replace(config, "sse:\n", "sse:\n  compression: "+*stormCompression+"\n", 1)
	}
	c := startProcCluster(tb, bin, config, 1)
	stateN, stateSum := produceState(tb, c.Kafka, keys)
	ae := *stormAcceptEncoding
	url := c.EdgeURLs[0] + "/t"
	// One client, alone, once the cache holds the whole state: what it costs.
	var one float64
	waitUntil(tb, time.Minute, "one client with the exact state", func() bool {
		before := c.cacheCounter(tb, "ssekafka_cache_state_requests_total")
		l := runClients(tb, sseload.DialOptions{URLs: []string{url}, Clients: 1, StateN: stateN, StateSum: stateSum, AcceptEncoding: ae})
		defer l.close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if poll.Wait(ctx, 5*time.Millisecond, func() bool { return l.Ready() == 1 }) != nil || l.ExactStates() != 1 {
			return false
		}
		one = c.cacheCounter(tb, "ssekafka_cache_state_requests_total") - before
		return true
	})
	before := c.cacheCounter(tb, "ssekafka_cache_state_requests_total")
	cpuBefore := sseload.CPUSeconds(c.Edges[0].Pid())
	start := time.Now()
	l := runClients(tb, sseload.DialOptions{URLs: []string{url}, Clients: clients, StateN: stateN, StateSum: stateSum, AcceptEncoding: ae})
	connected := time.Since(start)
	// 5 minutes: 9,000 clients of a JSON state read about 22 GB, or decode it.
	waitUntil(tb, 5*time.Minute, "every new client ready", func() bool { return l.Ready() == int64(clients) })
	allReady := time.Since(start)
	cpu := sseload.CPUSeconds(c.Edges[0].Pid()) - cpuBefore
	l.finish()
	return newClientStormResult{Clients: clients, Keys: keys, Exact: l.ExactStates(),
		AllReadyMs: float64(allReady.Milliseconds()), ConnectSeconds: connected.Seconds(), OneClient: one,
		StateRequests:  c.cacheCounter(tb, "ssekafka_cache_state_requests_total") - before,
		EdgeCPUSeconds: cpu, BytesPerClient: float64(l.BytesRead()) / float64(clients), DecodeErrors: l.DecodeErrors(), Encoding: ae}
}

// Many new clients at once each get exactly the topic's state.
func TestNewClientStormSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cluster as processes")
	}
	bin := buildSSEKafka(t, t.TempDir(), "")
	res := newClientStorm(t, bin, 200, 2_000)
	t.Log(res)
	if res.Exact != 200 {
		t.Fatalf("new-client storm: %v", res)
	}
}

// BenchmarkNewClientStorm: -storm-new-clients clients connect at once to
// one edge on a topic of -storm-keys keys (3 partitions). With
// -storm-baseline REF the same scenario runs first on that commit.
//
//	go test -run '^$' -bench NewClientStorm -benchtime 1x -storm-baseline main ./benchmarks/
func BenchmarkNewClientStorm(b *testing.B) {
	eachBuild(b, func(b *testing.B, name, bin string) {
		res := newClientStorm(b, bin, *stormNew, *stormKeys)
		fmt.Printf("new-client storm, %s: %v\n", name, res)
	})
}
