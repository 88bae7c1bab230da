package edge_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// Records apart are whole (634b3d9): filters, deletes and event ids
// of records read in parts must be those of the whole record, never of
// its stub, on every path (live fill, state, resume from the ring or
// from the cache).

// apartRoutes are the default routes and a header-filtered one.
func apartRoutes() []edge.RouteConfig {
	return []edge.RouteConfig{
		{Paths: []string{"/tasks"}, Topic: "tasks"},
		{Paths: []string{"/keyed"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`},
		{Paths: []string{"/tasks/{id}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Key: ptr("${params.id}")}}},
		{Paths: []string{"/tenant/{t}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Headers: map[string]string{"tenant": "${params.t}"}}}},
	}
}

// nextEvent returns c's next message or delete event, skipping retry and ready.
func nextEvent(c *sseClient) event {
	c.t.Helper()
	for {
		if ev := c.mustNext(); ev.HasData && ev.Event != "ready" {
			return ev
		}
	}
}

// fatRecord is key=value with a tenant header and 100 KiB of other
// headers: over a 64 KiB max payload, so it travels apart.
func fatRecord(key, value, tenant string) *kgo.Record {
	r := rec(0, key, value)
	r.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}, {Key: "trace", Value: []byte(bigValue("h", 100<<10))}}
	return r
}

func isDeleteOf(ev event, key string) bool {
	return ev.Event == "delete" && ev.Data == proto.KeyEncoding.EncodeToString([]byte(key))
}

// The delete of a key whose headers were large carries those headers as
// the tombstone's superseded headers, so the tombstone travels apart too:
// a client whose header filter matched the deleted record gets the
// delete, live and on a resume (from the ring and, with the ring off,
// from the cache's pages), and a client whose filter did not match does
// not; a key filter matches the whole record, not the keyless stub.
func TestApartTombstoneReachesHeaderFilteredClients(t *testing.T) {
	withStandbys(t, testApartTombstoneReachesHeaderFilteredClients)
}

func testApartTombstoneReachesHeaderFilteredClients(t *testing.T, lag time.Duration) {
	// How a resume is served: from the ring (in a storm), or by state
	// requests (a lone stream; in a storm with the ring off).
	for _, mode := range []struct {
		kind  string
		ring  int
		storm bool
	}{{"ring", 0, true}, {"state", 0, false}, {"state", edge.Off, true}} {
		t.Run(fmt.Sprintf("%s,ring=%d,storm=%v", mode.kind, mode.ring, mode.storm), func(t *testing.T) {
			s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes(),
				edgeCfg: func(c *edge.Config) {
					c.ResumeRingBytes = mode.ring
					if mode.storm {
						edge.ShareAlways(c)
					} else {
						edge.ShareNever(c) // streams closer than a second apart are a storm
					}
				}})
			s.produce("tasks", rec(0, "first", "v0"))
			start := idOf(s.connect("/tasks", nil), "v0")
			tenantA, tenantB, byKey := s.connect("/tenant/a", nil), s.connect("/tenant/b", nil), s.connect("/tasks/fat", nil)
			for _, c := range []*sseClient{tenantA, tenantB, byKey} {
				c.untilReady()
			}
			// A lone stream is one that began its state part a second
			// (the edge's storm window) after any other: waited for.
			lastOpen := time.Now()
			open := func(path string) *sseClient {
				if !mode.storm {
					eventually(t, 5*time.Second, "a second without another stream", func() bool {
						return time.Since(lastOpen) > 1100*time.Millisecond
					})
				}
				defer func() { lastOpen = time.Now() }()
				return s.connect(path, http.Header{"Last-Event-ID": {start}})
			}
			apart := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total")
			s.produce("tasks", fatRecord("fat", "fat value", "a"))
			for name, c := range map[string]*sseClient{"tenant a": tenantA, "key fat": byKey} {
				if ev := nextEvent(c); ev.Data != "fat value" {
					t.Fatalf("%s: %+v, want the record apart", name, ev)
				}
			}
			s.produce("tasks", tombstone(0, "fat"))
			// The cache counts a record apart after it applied it: the
			// count may trail what produce waited for.
			eventually(t, 10*time.Second, "the record and its tombstone sent apart (else the test does not reach the path)", func() bool {
				return s.counter(s.cacheReg, "ssekafka_cache_records_apart_total") >= apart+2
			})
			for name, c := range map[string]*sseClient{"tenant a": tenantA, "key fat": byKey} {
				if ev := nextEvent(c); !isDeleteOf(ev, "fat") {
					t.Fatalf("%s: %+v, want the delete of fat", name, ev)
				}
			}
			s.produce("tasks", fatRecord("mark", "b's marker", "b"))
			if ev := nextEvent(tenantB); ev.Data != "b's marker" {
				t.Fatalf("tenant b: %+v, want its marker and no delete of a's record before it", ev)
			}
			// A client that resumes from before the record gets the delete
			// (the key's latest record), and its marker after it. The ring
			// serves a resume only while the feed is known current (heads
			// heard, no fill under way): asked until it does.
			resume := func() {
				resumed := open("/tenant/a")
				defer resumed.close()
				if ev := nextEvent(resumed); !isDeleteOf(ev, "fat") {
					t.Fatalf("resume of tenant a: %+v, want the delete of fat", ev)
				}
				resumed.untilReady() // its resume is counted once its state part ends
				resumedB := open("/tenant/b")
				defer resumedB.close()
				if ev := nextEvent(resumedB); ev.Data != "b's marker" {
					t.Fatalf("resume of tenant b: %+v, want only its marker", ev)
				}
				resumedB.untilReady()
			}
			resumes := func(kind string) float64 { return labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", kind) }
			resume()
			if mode.kind == "ring" {
				eventually(t, 10*time.Second, "resumes from the ring", func() bool {
					resume()
					return resumes("ring") >= 2
				})
			} else if n := resumes("state") + resumes("coalesced"); n < 2 || resumes("ring") > 0 {
				t.Fatalf("%v resumes by state requests, %v from the ring: the test does not reach the path", n, resumes("ring"))
			}
		})
	}
}

// A tombstone whose key alone is over the max payload travels apart:
// clients get the delete with the whole key, and a key read of it is 404.
func TestApartTombstoneWithLargeKey(t *testing.T) { withStandbys(t, testApartTombstoneWithLargeKey) }

func testApartTombstoneWithLargeKey(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes()})
	key := bigValue("key", 70<<10)
	live := s.connect("/keyed", nil)
	live.untilReady()
	s.produce("tasks", rec(0, key, "small value"))
	ev := nextEvent(live)
	keyB64 := proto.KeyEncoding.EncodeToString([]byte(key))
	if ev.Data != "small value" || !strings.HasPrefix(ev.ID, `["`+keyB64+`"`) {
		t.Fatalf("record with a 70 KiB key: data %q, id of %d bytes (with the key: %v)", ev.Data, len(ev.ID), strings.HasPrefix(ev.ID, `["`+keyB64))
	}
	s.produce("tasks", tombstone(0, key))
	if ev := nextEvent(live); !isDeleteOf(ev, key) {
		t.Fatalf("delete of a 70 KiB key: event %q, %d bytes of data", ev.Event, len(ev.Data))
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n < 2 {
		t.Fatalf("%v records apart: the test does not reach the path", n)
	}
}

// idEtag is what an event id says of the record's etag header: the part
// after the progress's "/", in either id form.
func idEtag(id string) string {
	id = strings.TrimSuffix(id, `"]`)
	if i := strings.LastIndex(id, `","`); i >= 0 {
		id = id[i+3:]
	}
	_, etag, _ := strings.Cut(id, "/")
	return etag
}

// An event id of a record read in parts carries its etag header (the stub
// has none) as an inline record's does: live, in a new client's state, on
// a resume, in both id forms; and a JSON read's ETag is the same.
func TestApartEventIDsCarryEtag(t *testing.T) { withStandbys(t, testApartEventIDsCarryEtag) }

func testApartEventIDsCarryEtag(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes()})
	s.produce("tasks", rec(0, "first", "v0"))
	start := messages(s.connect("/tasks", nil).untilReady())[0].ID
	live, liveKeyed := s.connect("/tasks", nil), s.connect("/keyed", nil)
	live.untilReady()
	liveKeyed.untilReady()
	s.produce("tasks", withEtag(rec(0, "thin", "thin value"), "e-thin"), withEtag(fatRecord("fat", "fat value", "a"), "e-fat"))
	want := map[string]string{"thin value": "e-thin", "fat value": "e-fat"}
	check := func(what string, evs []event) {
		t.Helper()
		seen := 0
		for _, ev := range evs {
			if etag, ok := want[ev.Data]; ok {
				seen++
				if idEtag(ev.ID) != etag {
					t.Errorf("%s: %q has id %q, want its etag %q", what, ev.Data, ev.ID, etag)
				}
			}
		}
		if seen != len(want) {
			t.Errorf("%s: %d of the %d records", what, seen, len(want))
		}
	}
	check("live", []event{nextEvent(live), nextEvent(live)})
	check("live keyed", []event{nextEvent(liveKeyed), nextEvent(liveKeyed)})
	check("state", messages(s.connect("/tasks", nil).untilReady()))
	check("state keyed", messages(s.connect("/keyed", nil).untilReady()))
	resumed := s.connect("/tasks", http.Header{"Last-Event-ID": {start}})
	check("resume", []event{nextEvent(resumed), nextEvent(resumed)})
	if status, h, body := s.getJSON(http.MethodGet, "/tasks/fat", nil); status != 200 || body != "fat value" || h.Get("ETag") != `"e-fat"` {
		t.Errorf("JSON read: %d %q, ETag %q", status, body, h.Get("ETag"))
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n == 0 {
		t.Fatal("no record apart: the test does not reach the path")
	}
}

// readApart reads the encoding of the record at offset of tasks/0 in
// parts, as an edge does, from whichever node answers.
func (s *stack) readApart(offset int64, partBytes int) []byte {
	s.t.Helper()
	subject := proto.Subjects{Prefix: "ssekafka"}.State("tasks", 0)
	var enc []byte
	deadline := time.Now().Add(10 * time.Second)
	for total := -1; total < 0 || len(enc) < total; {
		req := proto.AppendValueRequest(nil, &proto.ValueRequest{Offset: offset, From: len(enc), MaxBytes: partBytes})
		msg, err := s.nc.Request(subject, req, 5*time.Second)
		if err != nil {
			s.t.Fatal(err)
		}
		part, err := proto.DecodeValuePart(msg.Data)
		if err == nil && part.Status == proto.StatusNotYet && time.Now().Before(deadline) {
			continue // a standby behind: ask again, maybe another holder
		}
		if err != nil || part.Status != proto.StatusOK || len(part.Data) == 0 {
			s.t.Fatalf("part at %d of %d@%d: %+v, %v", len(enc), total, offset, part.Status, err)
		}
		total = part.Total
		enc = append(enc, part.Data...)
	}
	return enc
}

// The parts of a record apart may come from another node than its stub
// (the state subject is a queue group; a node restarts between the two):
// each holder must make the same encoding, byte for byte, or parts of two
// encodings of one length pass for one record. Here, a record with large
// headers and the tombstone that deletes it (which carries them as its
// superseded headers), read from the node that published them (the
// encodings it kept at hand) and again from a node started anew (made
// from its state and the value read back from Kafka).
func TestApartEncodingSameAfterCacheRestart(t *testing.T) {
	withStandbys(t, testApartEncodingSameAfterCacheRestart)
}

func testApartEncodingSameAfterCacheRestart(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes()})
	recs := s.produce("tasks", fatRecord("kept", bigValue("value", 200<<10), "a"), fatRecord("gone", "v", "a"))
	tomb := s.produce("tasks", tombstone(0, "gone"))[0]
	offsets := []int64{recs[0].Offset, tomb.Offset}
	before := map[int64][]byte{}
	for _, o := range offsets {
		before[o] = s.readApart(o, 16<<10)
	}
	s.stopCache()
	s.startCache(nil)
	s.waitApplied("tasks", 0, tomb.Offset)
	for _, o := range offsets {
		after := s.readApart(o, 16<<10)
		if !bytes.Equal(after, before[o]) {
			t.Errorf("record at %d: %d bytes from the node started anew, %d from the first", o, len(after), len(before[o]))
		}
		r, err := proto.DecodeRecord(after)
		if err != nil || r.Offset != o {
			t.Fatalf("record at %d: %+v, %v", o, r.Offset, err)
		}
		if o == tomb.Offset && (!r.Tombstone || !r.SupersededKnown || len(r.SupersededHeaders) != 2) {
			t.Errorf("tombstone: %v, superseded known %v, %d headers", r.Tombstone, r.SupersededKnown, len(r.SupersededHeaders))
		}
	}
	// And clients of the node started anew get the record and the delete
	// (in the state, or live after it if a standby behind answered).
	if ev := nextMessage(s.connect("/tenant/a", nil)); len(ev.Data) != 200<<10 {
		t.Fatalf("new client of tenant a: a record of %d bytes first", len(ev.Data))
	}
}

// A null-key record is not kept in the state, but live clients get it
// (keyless frames, docs/architecture.md rule 6). Over the max payload it travels apart,
// and a live change apart is read through the state pages, which never
// hold it: the live client gets the record after it, never this one.
func TestApartNullKeyRecordReachesLiveClients(t *testing.T) {
	withStandbys(t, testApartNullKeyRecordReachesLiveClients)
}

func testApartNullKeyRecordReachesLiveClients(t *testing.T, lag time.Duration) {
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes()})
	live := s.connect("/tasks", nil)
	live.untilReady()
	keyless := &kgo.Record{Partition: 0, Value: []byte(bigValue("keyless", 100<<10))}
	s.produce("tasks", keyless, rec(0, "after", "after value"))
	if ev := nextEvent(live); ev.Data != string(keyless.Value) {
		t.Fatalf("live: %d bytes (%.20q), want the 100 KiB null-key record first", len(ev.Data), ev.Data)
	}
	if ev := nextEvent(live); ev.Data != "after value" {
		t.Fatalf("live: %.20q, want the record after", ev.Data)
	}
}

// idParts is what an event id says besides the epoch: the key part, the
// offsets and the etag.
func idParts(t *testing.T, id string) string {
	t.Helper()
	p, err := proto.ParseEventID(id)
	if err != nil {
		t.Fatalf("id %q: %v", id, err)
	}
	key := ""
	if strings.HasPrefix(id, `["`) {
		key, _, _ = strings.Cut(id, `","`)
	}
	return fmt.Sprintf("%s %v %d /%s", key, p.Offsets, p.TimeMs, idEtag(id))
}

// The same records give the same event ids (but for the topic's epoch)
// whether they travel inline (an 8 MiB max payload) or apart (64 KiB),
// live and in a new client's state, in both id forms.
func TestApartEventIDsSameAsInline(t *testing.T) { withStandbys(t, testApartEventIDsSameAsInline) }

func testApartEventIDsSameAsInline(t *testing.T, lag time.Duration) {
	ids := map[int32][]string{}
	for _, maxPayload := range []int32{8 << 20, 64 << 10} {
		s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: maxPayload, routes: apartRoutes()})
		live, liveKeyed := s.connect("/tasks", nil), s.connect("/keyed", nil)
		live.untilReady()
		liveKeyed.untilReady()
		s.produce("tasks", withEtag(rec(0, "thin", "thin value"), "e-thin"), withEtag(fatRecord("fat", "fat value", "a"), "e-fat"),
			fatRecord("plain", "no etag", "b"))
		var got []string
		read := func(n int) {
			for _, c := range []*sseClient{live, liveKeyed} {
				for range n {
					ev := nextEvent(c)
					got = append(got, ev.Event+" "+ev.Data+" "+idParts(t, ev.ID))
				}
			}
		}
		read(3)
		s.produce("tasks", tombstone(0, "fat")) // apart: fat's headers are its superseded ones
		read(1)
		for _, path := range []string{"/tasks", "/keyed"} {
			for _, ev := range messages(s.connect(path, nil).untilReady()) {
				got = append(got, ev.Data+" "+idParts(t, ev.ID))
			}
		}
		apart := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total")
		if (maxPayload < 1<<20) != (apart > 0) {
			t.Fatalf("max payload %d: %v records apart", maxPayload, apart)
		}
		ids[maxPayload] = got
	}
	inline, apart := ids[8<<20], ids[64<<10]
	if len(inline) != len(apart) {
		t.Fatalf("%d events inline, %d apart", len(inline), len(apart))
	}
	for i := range inline {
		if inline[i] != apart[i] {
			t.Errorf("event %d: inline %q, apart %q", i, inline[i], apart[i])
		}
	}
}

// A record with more headers than the protocol took (proto's maxHeaders
// was 4096) stopped its partition as an oversized record did (issue 11):
// the cache published and paged it, every edge refused the page ("header
// count: field too large") and filled again every second for ever, so no
// live client got the records after it and no new client got ready. Kafka
// has no such limit; the count is now bounded by the message's bytes.
// Here 5000 headers of 2 bytes: a 40 KiB record, not even apart.
func TestRecordWithManyHeadersDoesNotStopPartition(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1, maxPayload: 64 << 10, routes: apartRoutes()})
	live := s.connect("/tasks", nil)
	live.untilReady()
	many := rec(0, "many", "many headers")
	for i := range 5000 {
		many.Headers = append(many.Headers, kgo.RecordHeader{Key: fmt.Sprint("h", i), Value: []byte("v")})
	}
	s.produce("tasks", many, rec(0, "after", "after value"))
	for _, want := range []string{"many headers", "after value"} {
		if ev := nextEvent(live); ev.Data != want {
			t.Fatalf("live: %q, want %q", ev.Data, want)
		}
	}
	if evs := messages(s.connect("/tasks", nil).untilReady()); len(evs) != 2 {
		t.Fatalf("new client: %d records, want 2", len(evs))
	}
}

// The cache node that published a record's stub (a live change apart)
// restarts before the edge reads its parts: the node started anew reads
// the record from Kafka and makes the same record, so the live client
// gets it whole, and the record after it.
func TestApartRecordPartsFromRestartedNode(t *testing.T) {
	withStandbys(t, testApartRecordPartsFromRestartedNode)
}

func testApartRecordPartsFromRestartedNode(t *testing.T, lag time.Duration) {
	var armed atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 64 << 10, routes: apartRoutes(),
		edgeCfg: func(c *edge.Config) {
			edge.HoldFeeds(c, func() {
				if armed.CompareAndSwap(true, false) {
					close(held)
					<-release
				}
			})
		}})
	live := s.connect("/tenant/a", nil)
	live.untilReady()
	armed.Store(true)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed never held")
	}
	value := bigValue("restart", 300<<10)
	s.produce("tasks", fatRecord("fat", value, "a"))
	s.stopCache()
	s.startCache(nil)
	s.waitApplied("tasks", 0, 0)
	close(release)
	if ev := nextEvent(live); ev.Data != value {
		t.Fatalf("live: %d bytes (%.20q), want the record apart whole", len(ev.Data), ev.Data)
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_value_parts_total"); lag == 0 && n < 5 { // a standby answers too
		t.Fatalf("the node started anew answered %v parts: the test does not reach the path", n)
	}
	s.produce("tasks", rec(0, "after", "b"))
	s.produce("tasks", fatRecord("after", "after value", "a"))
	if ev := nextEvent(live); ev.Data != "after value" {
		t.Fatalf("live: %.20q, want the record after", ev.Data)
	}
}
