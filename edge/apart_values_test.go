package edge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/proto"
)

// A JSON read answered to an allowed origin keeps the Vary: Origin that
// CORS added: a shared cache that keyed it on Accept alone would hand one
// origin's Access-Control-Allow-Origin to another's page, which the browser
// then refuses. The ETag stays readable by the page on 200 and 304.
func TestKeyReadKeepsVaryOrigin(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.CORS = &edge.CORS{Origins: []string{"https://app.example.com"}}
	}})
	s.produce("tasks", withEtag(rec(0, "a", `{"n":1}`), "rev-1"))
	origin := http.Header{"Origin": {"https://app.example.com"}}
	for _, inm := range []string{"", `"rev-1"`} {
		h := origin.Clone()
		if inm != "" {
			h.Set("If-None-Match", inm)
		}
		status, got, _ := s.getJSON(http.MethodGet, "/tasks/a", h)
		vary := strings.Join(got.Values("Vary"), ", ")
		if (status != 200 && status != 304) || !strings.Contains(vary, "Origin") || !strings.Contains(vary, "Accept") {
			t.Fatalf("If-None-Match %q: %d, Vary %q: want Origin and Accept", inm, status, vary)
		}
		if got.Get("Access-Control-Allow-Origin") != "https://app.example.com" || !strings.Contains(got.Get("Access-Control-Expose-Headers"), "ETag") {
			t.Fatalf("If-None-Match %q: CORS headers %v", inm, got)
		}
	}
}

// An etag header may hold a comma (an RFC 9110 etagc): If-None-Match
// naming that entity tag is a 304, as for any other.
func TestKeyReadIfNoneMatchEtagWithComma(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", withEtag(rec(0, "a", `{"n":1}`), "v1,2"))
	status, h, _ := s.getJSON(http.MethodGet, "/tasks/a", nil)
	if status != 200 || h.Get("ETag") != `"v1,2"` {
		t.Fatalf("read: %d, ETag %q", status, h.Get("ETag"))
	}
	for _, inm := range []string{`"v1,2"`, `"x", "v1,2"`, `W/"v1,2"`} {
		if status, _, _ := s.getJSON(http.MethodGet, "/tasks/a", http.Header{"If-None-Match": {inm}}); status != 304 {
			t.Fatalf("If-None-Match %s: %d, want 304", inm, status)
		}
	}
	// A list whose parts are other tags is not a match.
	if status, _, _ := s.getJSON(http.MethodGet, "/tasks/a", http.Header{"If-None-Match": {`"v1", "2"`}}); status != 200 {
		t.Fatalf(`If-None-Match "v1", "2": %d, want 200`, status)
	}
}

// q=0 in any of its spellings (RFC 9110: up to three decimals) says
// "not acceptable": such an Accept is not a JSON read.
func TestKeyReadAcceptQZeroSpellings(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", rec(0, "a", `{"n":1}`))
	for _, accept := range []string{"application/json;q=0", "application/json;q=0.00", "application/json; q=0.000", "application/json;Q=0"} {
		req, err := http.NewRequest(http.MethodGet, s.url+"/tasks/a", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		ct := resp.Header.Get("Content-Type")
		_ = resp.Body.Close()
		cancel()
		if strings.HasPrefix(ct, "application/json") {
			t.Fatalf("Accept %q: a JSON read (%d %s), want the stream", accept, resp.StatusCode, ct)
		}
	}
}

// A state page's budget (the bytes asked for) bounds what an edge holds
// for it, values sent apart included: the edge reads every apart value of
// a page into memory before it delivers the page, so a page of many small
// apart records (each only its length on the wire) must not stand for many
// times the budget. Here 20 values of 100 KiB at a 64 KiB max payload and
// 256 KiB pages.
func TestStatePageBoundsApartValues(t *testing.T) { withStandbys(t, testStatePageBoundsApartValues) }

func testStatePageBoundsApartValues(t *testing.T, lag time.Duration) {
	const pageBytes, valueSize, count = 256 << 10, 100 << 10, 20
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10})
	var recs []*kgo.Record
	for i := range count {
		recs = append(recs, rec(0, "k"+string(rune('a'+i)), bigValue("v", valueSize)))
	}
	s.produce("tasks", recs...)

	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: 0, MaxBytes: pageBytes})
	msg, err := s.nc.Request(proto.Subjects{Prefix: "ssekafka"}.State("tasks", 0), req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	page, err := proto.DecodeStatePage(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, r := range page.Records {
		held += len(r.Value) + r.ValueLen
	}
	if len(page.Records) > 1 && held > pageBytes {
		t.Fatalf("a page of %d records (%d apart) stands for %d bytes of values, over its %d byte budget",
			len(page.Records), countApart(page.Records), held, pageBytes)
	}
	// And every value still reaches a new client (in its state, or live
	// after its ready if a standby behind answered).
	c := s.connect("/tasks", nil)
	for range count {
		if ev := nextMessage(c); len(ev.Data) != valueSize {
			t.Fatalf("a value of %d bytes, want %d", len(ev.Data), valueSize)
		}
	}
}

func countApart(recs []proto.Record) int {
	n := 0
	for _, r := range recs {
		if r.Apart {
			n++
		}
	}
	return n
}

// A record whose headers (not its value) are over the max payload travels
// apart too (the whole record is read in parts): before, it stopped its
// partition for every client (the state page that holds it could not be
// sent, so a new client never got ready, and no record after it arrived
// live). Live and new clients get it, and what follows.
func TestOversizedHeadersDoNotStopPartition(t *testing.T) {
	withStandbys(t, testOversizedHeadersDoNotStopPartition)
}

func testOversizedHeadersDoNotStopPartition(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10})
	s.produce("tasks", rec(0, "before", "v0"))
	live := s.connect("/tasks", nil)
	if evs := messages(live.untilReady()); len(evs) != 1 {
		t.Fatalf("state: %+v", evs)
	}
	fat := rec(0, "fat", "small value")
	fat.Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte(bigValue("h", 100<<10))}}
	s.produce("tasks", fat, rec(0, "after", "v2"))

	for _, want := range []string{"small value", "v2"} {
		if ev := nextMessage(live); ev.Data != want {
			t.Fatalf("live: %q, want %q after the record with 100 KiB of headers", ev.Data, want)
		}
	}
	evs := messages(s.connect("/tasks", nil).untilReady())
	if len(evs) != 3 || evs[1].Data != "small value" || evs[2].Data != "v2" {
		t.Fatalf("new client's state: %+v", evs)
	}
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/fat", nil); status != 200 || body != "small value" {
		t.Fatalf("JSON read: %d %q", status, body)
	}
}

// A JSON read of a value sent apart goes on when the node answering its
// parts is killed halfway (two nodes hold each partition): the parts come
// from the other holder, and the reader gets the whole value, not a 503.
func TestKeyReadSurvivesHolderKilledMidRead(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, maxPayload: 64 << 10})
	a := s.addCacheMember("a")
	settled(t, 1, a)
	b := s.addCacheMember("b", a.members.Addr())
	settled(t, 2, a, b)
	value := bigValue("big", 4<<20) // some 70 parts of 60 KiB
	s.produceWith(s.bigProducer(), "tasks", rec(0, "big", value))
	eventually(t, 10*time.Second, "both nodes hold the value", func() bool {
		status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil)
		return status == 200 && body == value
	})
	start := time.Now()
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil); status != 200 || body != value {
		t.Fatalf("read: %d, %d bytes", status, len(body))
	}
	t.Logf("one read of 4 MiB in 64 KiB parts: %v", time.Since(start))

	type result struct {
		status int
		n      int
		ok     bool
	}
	results := make(chan result, 1)
	go func() {
		status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil)
		results <- result{status, len(body), body == value}
	}()
	// Kill the primary once the read has some 20 of its parts.
	parts := s.counter(s.edgeReg, "ssekafka_edge_value_requests_total")
	eventually(t, 10*time.Second, "the read halfway through its parts", func() bool {
		return s.counter(s.edgeReg, "ssekafka_edge_value_requests_total") >= parts+20
	})
	primary, _ := a.members.Owners("tasks", 0)
	for _, m := range []*cacheMember{a, b} {
		if m.name == primary {
			m.stop()
		}
	}
	r := <-results
	if r.status != 200 || !r.ok {
		t.Fatalf("read with %s killed halfway: %d, %d bytes (whole: %v)", primary, r.status, r.n, r.ok)
	}
}

// A key whose large value is overwritten while edges read its parts: a
// JSON read answers with one whole value (never parts of two), and after
// the writes stop the newest one.
func TestKeyReadWhileValueOverwritten(t *testing.T) {
	withStandbys(t, testKeyReadWhileValueOverwritten)
}

func testKeyReadWhileValueOverwritten(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10})
	big := s.bigProducer()
	values := map[string]bool{}
	for i := range 3 {
		v := bigValue(fmt.Sprintf("gen%d", i), 2<<20)
		values[v] = true
		s.produceWith(big, "tasks", rec(0, "k", v))
	}
	stop := make(chan struct{})
	wrote := make(chan string, 1)
	go func() {
		var last string
		defer func() { wrote <- last }()
		// 20 writes a second: a value overwritten about once per two reads.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 3; i < 100; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			v := bigValue(fmt.Sprintf("gen%d", i), 2<<20)
			r := rec(0, "k", v)
			r.Topic = "tasks"
			if err := big.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Error(err)
				return
			}
			last = v
		}
	}()
	statuses := map[int]int{}
	for range 10 {
		status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil)
		statuses[status]++
		if status == 200 && (len(body) != 2<<20 || !strings.HasPrefix(body, "gen") || strings.Count(body[:20], "gen") != 1) {
			t.Fatalf("a read of %d bytes that is no one value (%.30q)", len(body), body)
		}
	}
	close(stop)
	last := <-wrote
	t.Logf("reads while overwritten: %v", statuses)
	if statuses[200] == 0 {
		t.Errorf("no read got a value while the key was overwritten: %v", statuses)
	}
	eventually(t, 10*time.Second, "the newest value", func() bool {
		status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil)
		return status == 200 && (last == "" || body == last)
	})
}

// What one JSON read costs on a topic of many partitions: every partition
// is asked (the producer's partitioner is not known).
func TestKeyReadFanOutCost(t *testing.T) {
	const partitions = 256
	s := newStack(t, stackOptions{partitions: partitions, edgeCfg: func(c *edge.Config) { c.KeyReads.CacheRequestsPerIP = edge.Off }})
	s.produce("tasks", rec(7, "a", `{"n":1}`))
	before := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total")
	start := time.Now()
	const reads = 20
	for range reads {
		if status, _, _ := s.getJSON(http.MethodGet, "/tasks/a", nil); status != 200 {
			t.Fatalf("read: %d", status)
		}
	}
	asked := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total") - before
	t.Logf("%d partitions: %v a read, %.0f key requests a read", partitions, time.Since(start)/reads, asked/reads)
	if asked/reads > partitions {
		t.Fatalf("%.0f key requests a read", asked/reads)
	}
}

// getJSONWith is getJSON through client (the stack's, for TLS and h2).
func (s *stack) getJSONWith(client *http.Client, method, path string, h http.Header) (int, http.Header, string, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range h {
		req.Header[k] = v
	}
	if client == nil {
		client = &http.Client{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body), resp.Proto
}

// A JSON read answers the same on the edge's own HTTP/1 path, under
// net/http, and over HTTP/2 (TLS): keys with odd bytes, long keys, HEAD,
// If-None-Match.
func TestKeyReadSameOnEveryPath(t *testing.T) {
	long := strings.Repeat("k", 16<<10)
	keys := []string{"é ü", "a b", "x%y", long}
	paths := map[string]string{"é ü": "/tasks/%C3%A9%20%C3%BC", "a b": "/tasks/a%20b", "x%y": "/tasks/x%25y", long: "/tasks/" + long}
	type answer struct {
		status int
		etag   string
		length string
		body   string
	}
	answers := map[string][]answer{}
	run := func(name string, s *stack, client *http.Client) {
		for _, k := range keys {
			s.produce("tasks", withEtag(rec(0, k, `"`+k[:min(len(k), 8)]+`"`), "e1"))
		}
		var got []answer
		for _, k := range keys {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				for _, inm := range []string{"", `"e1"`} {
					var h http.Header
					if inm != "" {
						h = http.Header{"If-None-Match": {inm}}
					}
					status, hdr, body, proto := s.getJSONWith(client, method, paths[k], h)
					if name == "h2" && proto != "HTTP/2.0" {
						t.Fatalf("h2: spoke %s", proto)
					}
					got = append(got, answer{status, hdr.Get("ETag"), hdr.Get("Content-Length"), body})
				}
			}
		}
		answers[name] = got
	}
	run("Edge.Serve", newStack(t, stackOptions{partitions: 1}), nil)
	run("net/http", newStack(t, stackOptions{partitions: 1, viaNetHTTP: true}), nil)
	h2, _, _ := tlsStack(t, true)
	run("h2", h2, h2.client)
	want := answers["net/http"]
	for i, a := range want {
		if a.status != 200 && a.status != 304 {
			t.Errorf("net/http answer %d: %d %q", i, a.status, a.body)
		}
	}
	for _, name := range []string{"Edge.Serve", "h2"} {
		for i, a := range answers[name] {
			if a != want[i] {
				t.Errorf("%s answer %d: %+v, net/http: %+v", name, i, a, want[i])
			}
		}
	}
}

// With the edge's default MaxQueueBytes (8 MiB), a value over it (which
// values sent apart now let through) followed by any other change reaches
// a live client, a resuming one and a new one: "one frame always fits"
// (docs/architecture.md rule 10) must hold beside a small frame too, or each reconnect
// gets the same two frames and is cut off again, for ever.
func TestValueOverMaxQueueBytesReachesClients(t *testing.T) {
	withStandbys(t, testValueOverMaxQueueBytesReachesClients)
}

func testValueOverMaxQueueBytesReachesClients(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 1 << 20})
	s.produce("tasks", rec(0, "small", "v0"))
	live := s.connect("/tasks", nil)
	before := idOf(live, "v0") // in the state, or live after it if a standby behind answered
	value := bigValue("big", 9<<20)
	s.produceWith(s.bigProducer(), "tasks", rec(0, "big", value))
	s.produce("tasks", rec(0, "small", "v1"))
	resumed := s.connect("/tasks", http.Header{"Last-Event-ID": {before}})
	fresh := s.connect("/tasks", nil)
	for name, c := range map[string]*sseClient{"live": live, "resumed": resumed, "new": fresh} {
		gotBig, gotSmall := false, false
		deadline := time.Now().Add(15 * time.Second)
		for !gotBig || !gotSmall {
			ev, err := c.next(time.Until(deadline))
			if err != nil {
				t.Fatalf("%s client: %v (the 9 MiB value: %v, v1: %v)", name, err, gotBig, gotSmall)
			}
			gotBig = gotBig || ev.Data == value
			gotSmall = gotSmall || ev.Data == "v1"
		}
	}
}

// A value sent apart that the cache no longer holds at hand is read back
// from Kafka for every part; the edge's feed reads the parts on its one
// goroutine, so a small change of another partition waits behind them.
func TestApartReadBackDelaysOtherPartitions(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2, maxPayload: 256 << 10,
		cacheCfg: func(c *cache.Config) { c.MaxBytes, c.ApartBytes = 1<<20, 1 }}) // nothing kept at hand
	s.produce("tasks", rec(1, "small", "v0"))
	live := s.connect("/tasks", nil)
	live.untilReady()
	big := s.bigProducer()
	value := bigValue("big", 8<<20) // 32 parts, each a read back of 8 MiB
	r := rec(0, "big", value)
	r.Topic = "tasks"
	if err := big.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.produce("tasks", rec(1, "small", "v1"))
	produced := time.Since(start)
	for {
		ev := nextMessage(live)
		if ev.Data == "v1" {
			break
		}
	}
	waited := time.Since(start) - produced
	// A measurement (190 ms here, 1.5 s under -race): the wait grows
	// with the parts and each read back from Kafka.
	t.Logf("a small change of partition 1 waited %v behind an 8 MiB value read back part by part", waited)
	if waited > 10*time.Second {
		t.Fatalf("a small change of another partition waited %v", waited)
	}
}

// Values around the room of one message (the max payload less the
// cache's slack), live and in a new client's state, and read as JSON,
// each reach clients whole, inline or apart.
func TestValuesAtTheRoomBoundary(t *testing.T) { withStandbys(t, testValuesAtTheRoomBoundary) }

func testValuesAtTheRoomBoundary(t *testing.T, lag time.Duration) {
	const maxPayload, slack = 64 << 10, 4 << 10
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: maxPayload})
	live := s.connect("/tasks", nil)
	live.untilReady()
	want := map[string]string{}
	for d := -96; d <= 96; d += 8 {
		k := fmt.Sprintf("k%+d", d)
		want[k] = bigValue(k, maxPayload-slack+d)
		s.produce("tasks", rec(0, k, want[k]))
	}
	got := map[string]bool{}
	for len(got) < len(want) {
		ev := nextMessage(live)
		for k, v := range want {
			if ev.Data == v {
				got[k] = true
			}
		}
	}
	evs := messages(s.connect("/tasks", nil).untilReady())
	if len(evs) != len(want) {
		t.Fatalf("new client: %d records, want %d", len(evs), len(want))
	}
	for _, ev := range evs {
		if len(ev.Data) < maxPayload-slack-96 {
			t.Fatalf("new client: a value of %d bytes", len(ev.Data))
		}
	}
	for k, v := range want {
		if status, _, body := s.getJSON(http.MethodGet, "/tasks/"+k, nil); status != 200 || body != v {
			t.Fatalf("JSON read of %s: %d, %d bytes, want %d", k, status, len(body), len(v))
		}
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n == 0 {
		t.Fatal("no record went apart: the test is not at the boundary")
	}
}

// A topic deleted and created again starts its offsets at 0: a value sent
// apart by the old topic must not stand for the new topic's record at the
// same offset (the cache keeps values sent apart by topic, partition and
// offset, and one already kept was not replaced).
func TestRecreatedTopicServesItsOwnApartValue(t *testing.T) {
	withStandbys(t, testRecreatedTopicServesItsOwnApartValue)
}

func testRecreatedTopicServesItsOwnApartValue(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, cacheCfg: fastTopicChecks})
	oldValue, newValue := bigValue("old", 200<<10), bigValue("new", 200<<10)
	s.produce("tasks", rec(0, "k", oldValue))
	// Polled: a standby behind may not hold the key yet.
	eventually(t, 10*time.Second, "old topic's value", func() bool {
		status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil)
		if status == 200 && body != oldValue {
			t.Fatalf("old topic: %d bytes, not its value", len(body))
		}
		return status == 200
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	prod := s.recreateTopic(ctx, "tasks", 1)
	r := rec(0, "k", newValue)
	r.Topic = "tasks"
	if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if r.Offset != 0 {
		t.Fatalf("the new topic's record at %d, want 0", r.Offset)
	}
	var status int
	var body string
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	_ = poll.Wait(wctx, 100*time.Millisecond, func() bool {
		status, _, body = s.getJSON(http.MethodGet, "/tasks/k", nil)
		return status == 200 && body == newValue
	})
	if status != 200 || body != newValue {
		t.Fatalf("new topic: %d, %d bytes, the old value: %v", status, len(body), body == oldValue)
	}
	evs := messages(s.connect("/tasks", nil).untilReady())
	if len(evs) != 1 || evs[0].Data != newValue {
		t.Fatalf("new client of the new topic: %d records, the old value: %v", len(evs), len(evs) == 1 && evs[0].Data == oldValue)
	}
}

// What concurrent JSON reads of one large value cost the edge: each read
// assembles the whole value on its own (no sharing between reads), so a
// client that opens many costs as many copies. A measurement: 16 reads
// of 10 MiB rose the heap some 436 MiB (0.7 s); under -race they took over
// 10 s, past the reads' timeout.
func TestConcurrentKeyReadsOfALargeValueMemory(t *testing.T) {
	const readers, size = 8, 4 << 20
	s := newStack(t, stackOptions{partitions: 1, maxPayload: 1 << 20})
	value := bigValue("big", size)
	s.produceWith(s.bigProducer(), "tasks", rec(0, "big", value))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	var wg sync.WaitGroup
	partsBefore := s.counter(s.edgeReg, "ssekafka_edge_value_requests_total")
	for range readers {
		wg.Go(func() {
			status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil)
			if status != 200 || len(body) != size {
				t.Errorf("read: %d, %d bytes", status, len(body))
			}
		})
	}
	wg.Wait()
	close(stop)
	<-sampled
	parts := s.counter(s.edgeReg, "ssekafka_edge_value_requests_total") - partsBefore
	t.Logf("%d concurrent reads of a %d MiB value: heap in use rose by %d MiB at its peak (test process: edge, cache, clients), %.0f value parts asked",
		readers, size>>20, (int64(peak.Load())-int64(base.HeapInuse))>>20, parts)
}
