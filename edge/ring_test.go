package edge_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// otherEdge is a second edge node on a stack's NATS server.
type otherEdge struct {
	url string
	reg *prometheus.Registry
}

func (s *stack) addTweakedEdge(tweak func(*edge.Config)) *otherEdge {
	s.t.Helper()
	routes := []edge.RouteConfig{
		{Paths: []string{"/tasks"}, Topic: "tasks"},
		{Paths: []string{"/keyed"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`},
		{Paths: []string{"/tasks/{id}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Key: ptr("${params.id}")}}},
	}
	o := &otherEdge{reg: prometheus.NewRegistry()}
	_, o.url = s.serveAnotherEdge(routes, edge.Config{Logger: testLogger(s.t), RetryJitter: -1, Now: func() time.Time { return fixedNow },
		Registerer: o.reg, ProbeInterval: 200 * time.Millisecond, PageTimeout: 500 * time.Millisecond}, tweak)
	return o
}

// connectTo is connect, to the edge at url.
func (s *stack) connectTo(url, path string, header http.Header) *sseClient {
	s.t.Helper()
	saved := s.url
	s.url = url
	defer func() { s.url = saved }()
	return s.connect(path, header)
}

// stateRequests is the state requests the stack's edge has sent (with
// ProbeInterval long, only its streams' and fills'), but the head requests
// that confirm the feed's position for ring resumes (see awaitWord).
func (s *stack) stateRequests() int64 {
	return int64(s.edgeCounter("ssekafka_edge_state_requests_total") - s.edgeCounter("ssekafka_edge_ring_head_requests_total"))
}

// readAll returns the raw bytes of a stream up to and including ready.
func readAll(c *sseClient) string {
	var b strings.Builder
	for _, ev := range c.untilReady() {
		b.WriteString(ev.Raw)
	}
	return b.String()
}

// withoutRetry drops a stream's first block, its retry: it grows with the
// setup backlog, which a storm builds.
func withoutRetry(stream string) string {
	_, rest, _ := strings.Cut(stream, "\n\n")
	return rest
}

// caughtUp waits until a client of the edge at url has seen an event whose
// id is at next: the edge's feed has applied every record produced.
func caughtUp(t *testing.T, c *sseClient, next []int64) {
	t.Helper()
	for {
		ev := c.mustNext()
		if !ev.HasID {
			continue
		}
		_, p, _ := keyedEvent(t, ev)
		if fmt.Sprint(p.Offsets) == fmt.Sprint(next) {
			return
		}
	}
}

// randomStream produces a random stream of values, tombstones, records with
// an etag header or a tenant header and null-key records, ending with a
// value in every partition; the model gets the keyed records.
func randomStream(s *stack, m *model, rng *rand.Rand, n int) {
	var batch []*kgo.Record
	for i := range n {
		k := rng.IntN(12)
		p := int32(k % 3)
		key := fmt.Sprintf("k%d", k)
		var r *kgo.Record
		switch x := rng.IntN(10); {
		case x < 2:
			r = tombstone(p, key)
		case x < 3:
			r = &kgo.Record{Partition: p, Value: []byte(fmt.Sprintf("nokey-%d", i))}
		default:
			r = rec(p, key, fmt.Sprintf("v%d", i))
			if x == 9 {
				r.Headers = []kgo.RecordHeader{{Key: "etag", Value: []byte(fmt.Sprintf("e%d", i))}}
			}
		}
		batch = append(batch, r)
		if len(batch) == 8 || i == n-1 {
			s.produce("tasks", batch...)
			for _, r := range batch {
				if r.Key != nil {
					m.add(r)
				}
			}
			batch = batch[:0]
		}
	}
	for p := range int32(3) {
		m.add(s.produce("tasks", rec(p, fmt.Sprintf("k%d", p), fmt.Sprintf("last-%d", p)))...)
	}
}

// A resume from the ring is byte for byte the resume from state pages: for
// random positions inside a random stream (values, deletes, etag headers,
// null keys), on three views (two id formats, a key filter), the edge that
// resumes from its ring writes exactly what an edge without a ring writes
// from the cache tier, with no state request, and every id it writes is a
// true position.
func TestRingResumeIsTheStatePath(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ProbeInterval = time.Hour }})
	stateEdge := s.addTweakedEdge(func(c *edge.Config) { c.ResumeRingBytes = edge.Off })
	ep := s.epoch("tasks")
	// The feeds start before the stream: their rings hold all of it.
	ringKeeper := s.connect("/keyed", nil)
	ringKeeper.untilReady()
	stateKeeper := s.connectTo(stateEdge.url, "/keyed", nil)
	stateKeeper.untilReady()

	seed := propertySeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	var m model
	randomStream(s, &m, rng, 150)
	next := m.next(3)
	caughtUp(t, ringKeeper, next)
	caughtUp(t, stateKeeper, next)
	final := m.asOf(proto.Progress{Offsets: next})

	ringResumes := func() float64 { return labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "ring") }
	for i := range 40 {
		offsets := make([]int64, 3)
		for p := range offsets {
			offsets[p] = 1 + rng.Int64N(next[p]) // in 1..next: inside the ring
		}
		id := handID(ep, offsets...)
		for _, path := range []string{"/keyed", "/tasks", "/tasks/k4"} {
			before, resumes := s.stateRequests(), ringResumes()
			h := http.Header{"Last-Event-Id": {id}}
			got := readAll(s.connect(path, h))
			if n := s.stateRequests() - before; n != 0 {
				t.Fatalf("position %v %s: %d state requests for a resume inside the ring", offsets, path, n)
			}
			if ringResumes() != resumes+1 {
				t.Fatalf("position %v %s: resumes_total did not count the resume", offsets, path)
			}
			want := readAll(s.connectTo(stateEdge.url, path, h))
			if got != want {
				t.Fatalf("position %v %s (seed %d):\nring  %q\nstate %q", offsets, path, seed, got, want)
			}
			if path != "/keyed" || i%4 != 0 {
				continue
			}
			// Every id is true: what the client holds there plus rule 2
			// from it is the state.
			view := m.asOf(proto.Progress{Offsets: offsets})
			c := s.connect(path, h)
			for _, ev := range c.untilReady()[1:] {
				_, p, change := keyedEvent(t, ev)
				apply(view, change)
				delete(view, "")
				trueAt(t, &m, view, p, 3, final)
			}
			sameView(t, "resumed view", view, final)
		}
	}
	if all, ring := s.counter(s.edgeReg, "ssekafka_edge_resumes_total"), ringResumes(); all != ring {
		t.Fatalf("resumes: %v, of which %v from the ring", all, ring)
	}
}

// labeled is the value of the counter name's series with label=value.
func labeled(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A storm of clients resuming at the same position costs at most one state
// request per partition, and each gets the same stream; a storm of new
// clients shares its state pages.
func TestStormSharesResumesAndPages(t *testing.T) {
	const n = 200
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.PageBytes = 512; c.ProbeInterval = time.Hour }})
	var m model
	rng := rand.New(rand.NewPCG(1, 2))
	var big []*kgo.Record
	for k := range 90 { // several pages per partition
		big = append(big, rec(int32(k%3), fmt.Sprintf("big-%02d", k), strings.Repeat("x", 30+k)))
	}
	m.add(s.produce("tasks", big...)...)
	// The feed starts here: its ring holds what follows, not the pages.
	keeper := s.connect("/keyed", nil)
	keeper.untilReady()
	randomStream(s, &m, rng, 60)
	next := m.next(3)
	caughtUp(t, keeper, next)
	ep := s.epoch("tasks")

	storm := func(h http.Header) []string {
		out := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c, status := s.open("/keyed", h)
				if status != http.StatusOK {
					t.Errorf("client %d: status %d", i, status)
					return
				}
				out[i] = withoutRetry(readAll(c))
				c.close()
			})
		}
		wg.Wait()
		return out
	}
	sameStreams := func(what string, got []string) {
		t.Helper()
		for i, g := range got {
			if g != got[0] {
				t.Fatalf("%s: client %d got\n%q\nclient 0 got\n%q", what, i, g, got[0])
			}
		}
	}

	// Resumes at one position (what clients of a killed edge hold).
	at := []int64{next[0] - 3, next[1] - 2, max(next[2]-5, 1)}
	before, encoded := s.stateRequests(), s.edgeCounter("ssekafka_edge_state_frames_shared_total")
	got := storm(http.Header{"Last-Event-Id": {handID(ep, at...)}})
	sameStreams("resume storm", got)
	if s.edgeCounter("ssekafka_edge_state_frames_shared_total") == encoded {
		t.Fatal("resume storm: every client's frames encoded on their own")
	}
	if requests := s.stateRequests() - before; requests > 3 {
		t.Fatalf("resume storm of %d clients: %d state requests, want at most one per partition", n, requests)
	}

	// New clients: pages shared, within twice what one client needs.
	before = s.stateRequests()
	one := withoutRetry(readAll(s.connect("/keyed", nil)))
	perClient := s.stateRequests() - before
	before = s.stateRequests()
	got = storm(nil)
	sameStreams("new-client storm", got)
	if got[0] != one {
		t.Fatalf("new-client storm:\n%q\nalone:\n%q", got[0], one)
	}
	requests := s.stateRequests() - before
	if requests > 2*perClient {
		t.Fatalf("new-client storm of %d clients: %d state requests, one client needs %d", n, requests, perClient)
	}
	t.Logf("one client: %d state requests; storm of %d: %d; shared pages %v, shared encodings %v", perClient, n, requests,
		s.counter(s.edgeReg, "ssekafka_edge_state_pages_shared_total"), s.counter(s.edgeReg, "ssekafka_edge_state_frames_shared_total"))
}

// In a storm, a state page answered a moment ago is given again; by then
// the feed has applied more changes. The stream built from it (the page
// without what those changes superseded, then the ring) is byte for byte
// what the state path gives now, for new clients and for resumes before
// the ring's start.
func TestReusedPageIsTheStatePathNow(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.PageBytes = 300; c.ProbeInterval = time.Hour; edge.ShareAlways(c) }})
	stateEdge := s.addTweakedEdge(func(c *edge.Config) { c.ResumeRingBytes = edge.Off; c.PageBytes = 300 })
	var m model
	var recs []*kgo.Record
	for k := range 45 {
		recs = append(recs, rec(int32(k%3), fmt.Sprintf("k%02d", k), fmt.Sprintf("v0-%02d", k)))
	}
	m.add(s.produce("tasks", recs...)...)
	ep := s.epoch("tasks")
	keeper := s.connect("/keyed", nil) // the feed and its ring start here
	keeper.untilReady()
	stateKeeper := s.connectTo(stateEdge.url, "/keyed", nil)
	stateKeeper.untilReady()
	positions := [][]int64{{0, 0, 0}, {3, 5, 0}, {7, 2, 11}}
	for _, path := range []string{"/keyed", "/tasks"} { // the pages are answered and kept
		for _, at := range positions {
			readAll(s.connect(path, http.Header{"Last-Event-Id": {handID(ep, at...)}}))
		}
	}
	// Updates and deletes after those pages, some of keys they hold.
	rng := rand.New(rand.NewPCG(propertySeed(t), 3))
	for i := range 30 {
		k := rng.IntN(60)
		if rng.IntN(4) == 0 {
			m.add(s.produce("tasks", tombstone(int32(k%3), fmt.Sprintf("k%02d", k)))...)
		} else {
			m.add(s.produce("tasks", rec(int32(k%3), fmt.Sprintf("k%02d", k), fmt.Sprintf("v1-%02d", i)))...)
		}
	}
	for p := range int32(3) {
		m.add(s.produce("tasks", rec(p, fmt.Sprintf("last-%d", p), "x"))...)
	}
	next := m.next(3)
	caughtUp(t, keeper, next)
	caughtUp(t, stateKeeper, next)

	shared := s.edgeCounter("ssekafka_edge_state_pages_shared_total")
	for _, path := range []string{"/keyed", "/tasks"} {
		for _, at := range positions {
			h := http.Header{"Last-Event-Id": {handID(ep, at...)}}
			got := readAll(s.connect(path, h))
			want := readAll(s.connectTo(stateEdge.url, path, h))
			if got != want {
				t.Fatalf("%s from %v:\nreused %q\nstate  %q", path, at, got, want)
			}
		}
	}
	if s.edgeCounter("ssekafka_edge_state_pages_shared_total") == shared {
		t.Fatal("no page was reused: the test tests nothing")
	}
	if labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "coalesced") == 0 {
		t.Fatal("no resume counted as coalesced")
	}
}

// A position before the ring's start (the ring is small and has moved on)
// is resumed from the state path, exactly as an edge without a ring does.
func TestResumeBeforeRingStartUsesStatePages(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ResumeRingBytes = 1500; c.ProbeInterval = time.Hour }})
	stateEdge := s.addTweakedEdge(func(c *edge.Config) { c.ResumeRingBytes = edge.Off })
	ep := s.epoch("tasks")
	keeper := s.connect("/keyed", nil)
	keeper.untilReady()
	var m model
	randomStream(s, &m, rand.New(rand.NewPCG(5, 6)), 90)
	next := m.next(3)
	caughtUp(t, keeper, next)
	for _, at := range [][]int64{{1, 1, 1}, {2, 0, 3}} {
		h := http.Header{"Last-Event-Id": {handID(ep, at...)}}
		before := labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "state")
		got := readAll(s.connect("/keyed", h))
		if labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "state") != before+1 {
			t.Fatalf("from %v: not resumed from state pages", at)
		}
		if want := readAll(s.connectTo(stateEdge.url, "/keyed", h)); got != want {
			t.Fatalf("from %v:\ngot  %q\nwant %q", at, got, want)
		}
	}
	// Near the feed's position the small ring still serves.
	h := http.Header{"Last-Event-Id": {handID(ep, next[0]-1, next[1], next[2])}}
	ring := labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "ring")
	got := readAll(s.connect("/keyed", h))
	if labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "ring") != ring+1 {
		t.Fatal("a position inside the ring was not resumed from it")
	}
	if want := readAll(s.connectTo(stateEdge.url, "/keyed", h)); got != want {
		t.Fatalf("near the end:\ngot  %q\nwant %q", got, want)
	}
}

// A key a new client got in its first state page and that is deleted
// before its next page: the delete is in that page (past where the first
// one stood), and the client gets it; the live delete is covered by the
// state part, so it is its only chance. Left out, the client would keep the
// key for good.
func TestDeleteBetweenStatePagesReachesNewClient(t *testing.T) {
	var m model
	var armed atomic.Bool
	var once sync.Once
	var deleted atomic.Bool
	var s *stack
	s = newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.PageBytes = 200
		// A page of partition 0 past its start is asked after the
		// stream wrote the first: the delete comes between the two.
		edge.HoldStatePages(c, func(p int32, since int64) {
			if p == 0 && since > 0 && armed.Load() {
				once.Do(func() {
					m.add(s.produce("tasks", tombstone(0, "k00"))...) // k00 was in the first page
					deleted.Store(true)
				})
			}
		})
	}})
	var recs []*kgo.Record
	for k := range 12 {
		recs = append(recs, rec(0, fmt.Sprintf("k%02d", k), fmt.Sprintf("value-%02d", k)))
	}
	m.add(s.produce("tasks", recs...)...)
	s.connect("/keyed", nil).untilReady() // the feed runs
	armed.Store(true)
	view := map[string]string{}
	evs := s.connect("/keyed", nil).untilReady()
	for _, ev := range evs[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(view, change)
	}
	if !deleted.Load() {
		t.Fatal("the new client asked no second page of partition 0: nothing came between its pages")
	}
	delete(view, "")
	sameView(t, "view at ready", view, m.asOf(proto.Progress{Offsets: m.next(3)}))
}

// A partition empty when its feed started (the ring covers it from zero):
// a page of it answered then, empty, is reused by a new client after
// records arrived; the ring gives what followed, and the stream is the
// state path's.
func TestReusedEmptyPageThenRing(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ProbeInterval = time.Hour; edge.ShareAlways(c) }})
	stateEdge := s.addTweakedEdge(func(c *edge.Config) { c.ResumeRingBytes = edge.Off })
	s.epoch("tasks")
	keeper := s.connect("/keyed", nil) // empty topic: pages with Next 0, kept
	keeper.untilReady()
	stateKeeper := s.connectTo(stateEdge.url, "/keyed", nil)
	stateKeeper.untilReady()
	var m model
	randomStream(s, &m, rand.New(rand.NewPCG(7, 8)), 40)
	next := m.next(3)
	caughtUp(t, keeper, next)
	caughtUp(t, stateKeeper, next)
	shared := s.edgeCounter("ssekafka_edge_state_pages_shared_total")
	got := readAll(s.connect("/keyed", nil))
	if want := readAll(s.connectTo(stateEdge.url, "/keyed", nil)); got != want {
		t.Fatalf("new client:\nreused %q\nstate  %q", got, want)
	}
	// Each partition's empty page read once, not again and again until it
	// is too old to reuse.
	if n := s.edgeCounter("ssekafka_edge_state_pages_shared_total") - shared; n > 3 {
		t.Fatalf("%v shared pages read for one client's 3 partitions", n)
	}
}
