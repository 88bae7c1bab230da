package edge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// codingsPage opens one EventSource to each of /plain, /gzip and /zstd
// (the same topic, each route with its own codings) and keeps every event
// it dispatches as [type, lastEventId, data].
const codingsPage = `<!doctype html><script>
window.streams = {};
for (const name of ['plain', 'gzip', 'zstd']) {
  const s = {events: [], readys: 0, opens: 0};
  s.es = new EventSource('/' + name);
  s.es.onopen = () => s.opens++;
  const keep = (type) => (ev) => {
    s.events.push([type, ev.lastEventId, ev.data]);
    if (type === 'ready') s.readys++;
  };
  s.es.onmessage = keep('message');
  for (const type of ['ready', 'delete', 'reset']) s.es.addEventListener(type, keep(type));
  window.streams[name] = s;
}
window.counts = () => Object.fromEntries(Object.entries(window.streams).map(
  ([k, s]) => [k, {n: s.events.length, readys: s.readys, opens: s.opens, state: s.es.readyState}]));
window.events = (name, from) => window.streams[name].events.slice(from);
</script>`

var codingNames = []string{"plain", "gzip", "zstd"}

// withCompression is rc with the route's codings (edge.RouteConfig.Compression).
func withCompression(rc edge.RouteConfig, codings ...string) edge.RouteConfig {
	rc.Compression = codings
	return rc
}

// codingRoutes serve the topic tasks three times: uncompressed (the
// reference), offering gzip only, and offering zstd only (identity where
// the client does not accept it).
func codingRoutes() []edge.RouteConfig {
	return []edge.RouteConfig{
		withCompression(edge.RouteConfig{Paths: []string{"/plain"}, Topic: "tasks"}, "identity"),
		withCompression(edge.RouteConfig{Paths: []string{"/gzip"}, Topic: "tasks"}, "gzip"),
		withCompression(edge.RouteConfig{Paths: []string{"/zstd"}, Topic: "tasks"}, "zstd"),
	}
}

// codingsMux serves codingsPage at / and the coding routes from e.
func codingsMux(e *edge.Edge) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, codingsPage) })
	for _, name := range codingNames {
		mux.Handle("/"+name, e)
	}
	return mux
}

// taskJSON is a task as an application would keep it, about 200 bytes of
// JSON; every 400th carries notes of about 3 KiB (a value over 1 KiB).
func taskJSON(i, rev int) string {
	words := []string{"invoice", "deploy", "review", "backup", "audit", "migrate", "restock", "refund"}
	notes := ""
	if i%400 == 0 {
		notes = `,"notes":"` + strings.Repeat(fmt.Sprintf("step %d of task %d: %s then %s. ", rev, i, words[i%8], words[(i+rev)%8]), 100)[:3000] + `"`
	}
	return fmt.Sprintf(`{"id":"task-%05d","name":"%s the %s for customer %d","price":%d.%02d,"status":"%s","updatedAt":"2026-12-07T%02d:%02d:%02d.%03dZ","tags":["%s","%s","team-%d"],"rev":%d%s}`,
		i, words[i%8], words[(i/8)%8], 1000+i*7%9000, 10+i%990, i%100, []string{"todo", "doing", "done"}[(i+rev)%3],
		rev%24, i%60, (i*7)%60, i%1000, words[(i+1)%8], words[(i+3)%8], i%17, rev, notes)
}

// produceTasks writes keys tasks (task-00000 ...) at revision rev to
// partitions round robin, waits until the cache holds them, and notes them
// in want (when not nil).
func (s *stack) produceTasks(want map[string]string, keys, rev int) {
	s.t.Helper()
	recs := make([]*kgo.Record, 0, keys)
	for i := range keys {
		k, v := fmt.Sprintf("task-%05d", i), taskJSON(i, rev)
		recs = append(recs, rec(int32(i%int(s.partitions)), k, v))
		if want != nil {
			want[k] = v
		}
	}
	s.produce("tasks", recs...)
}

// streamCount is what window.counts() says of one stream.
type streamCount struct {
	N      int `json:"n"`
	Readys int `json:"readys"`
	Opens  int `json:"opens"`
	State  int `json:"state"`
}

// netLog is what Chromium's network stack sent and got for a tab's
// requests (the DevTools protocol's Network domain): for each response,
// its URL, status and Content-Encoding, and the Accept-Encoding the
// request carried on the wire.
type netLog struct {
	mu        sync.Mutex
	urls      map[network.RequestID]string
	sent      map[network.RequestID]string // Accept-Encoding as sent
	responses []netResponse
}

type netResponse struct {
	id              network.RequestID
	URL             string
	Status          int64
	ContentEncoding string
	Vary            string
	CacheControl    string
}

// headerValue is the value of a header named name in h (any case).
func headerValue(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// openLogged opens a tab with its network log (chromedp enables the
// Network domain on every tab), then navigates it to url.
func openLogged(t *testing.T, open func(string) context.Context, url string) (context.Context, *netLog) {
	t.Helper()
	tab := open("about:blank")
	l := &netLog{urls: map[network.RequestID]string{}, sent: map[network.RequestID]string{}}
	err := chromedp.Listen(tab, func(ev any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			l.urls[ev.RequestID] = ev.Request.URL
		case *network.EventRequestWillBeSentExtraInfo:
			l.sent[ev.RequestID] = headerValue(ev.Headers, "Accept-Encoding")
		case *network.EventResponseReceived:
			l.responses = append(l.responses, netResponse{id: ev.RequestID, URL: ev.Response.URL,
				Status: ev.Response.Status, ContentEncoding: headerValue(ev.Response.Headers, "Content-Encoding"),
				Vary: headerValue(ev.Response.Headers, "Vary"), CacheControl: headerValue(ev.Response.Headers, "Cache-Control")})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	return tab, l
}

// of returns the responses to URLs ending in suffix, in the order they
// came, and the Accept-Encoding each request carried.
func (l *netLog) of(suffix string) (got []netResponse, sent []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.responses {
		if strings.HasSuffix(r.URL, suffix) {
			got = append(got, r)
			sent = append(sent, l.sent[r.id])
		}
	}
	return got, sent
}

// acceptsCoding says whether an Accept-Encoding value lists coding.
func acceptsCoding(acceptEncoding, coding string) bool {
	for _, e := range strings.Split(acceptEncoding, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(e), ";")
		if strings.EqualFold(strings.TrimSpace(name), coding) && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

// waitCounts polls the page until cond holds for its streams' counts.
func waitCounts(t *testing.T, tab context.Context, what string, cond func(map[string]streamCount) bool) map[string]streamCount {
	t.Helper()
	var counts map[string]streamCount
	eventually(t, 30*time.Second, what, func() bool {
		counts = eval[map[string]streamCount](t, tab, "window.counts()")
		return cond(counts)
	})
	return counts
}

// sameCodingEvents fails the test unless every stream of the page dispatched
// exactly the events of /plain from index from on.
func sameCodingEvents(t *testing.T, tab context.Context, from int) [][]string {
	t.Helper()
	want := eval[[][]string](t, tab, fmt.Sprintf("window.events('plain', %d)", from))
	for _, name := range codingNames[1:] {
		got := eval[[][]string](t, tab, fmt.Sprintf("window.events(%q, %d)", name, from))
		if len(got) != len(want) {
			t.Fatalf("/%s dispatched %d events from %d, /plain %d", name, len(got), from, len(want))
		}
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Fatalf("/%s event %d: %.120q, /plain: %.120q", name, from+i, got[i], want[i])
			}
		}
	}
	return want
}

// In Chromium, over HTTP/1.1 and over HTTP/2 with TLS, an EventSource on
// a gzip stream and one on a zstd stream (where Chromium accepts zstd)
// dispatch exactly the events of an uncompressed stream of the same topic,
// ids and data byte for byte: the state part (2,000 JSON values, some
// over 1 KiB), event:ready, and live changes, a large value and a delete
// among them; a compressing route's responses carry Vary: Accept-Encoding
// and no-transform. The log says which codings Chromium asks for on each.
func TestBrowserReadsCompressedStreamsExactly(t *testing.T) {
	bin := chromium(t)
	s, _, _ := tlsStackWith(t, true, stackOptions{partitions: 1, routes: codingRoutes(), handler: codingsMux})
	s.produceTasks(nil, 2000, 1)

	// The same edge over plain HTTP/1.1: a second listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Server{Handler: codingsMux(s.edge)}
	go func() { _ = s.edge.Serve(ln, plain) }()
	t.Cleanup(func() { _ = ln.Close(); _ = plain.Close() })

	open := startChromium(t, bin, chromedp.Flag("ignore-certificate-errors", true)) // the test's self-signed certificate
	rev := 1
	for round, tc := range []struct{ name, url, proto string }{
		{"HTTP/1.1", "http://" + ln.Addr().String() + "/", "http/1.1"},
		{"HTTP/2 over TLS", s.url + "/", "h2"},
	} {
		tab, nl := openLogged(t, open, tc.url)
		if proto := eval[string](t, tab, "performance.getEntriesByType('navigation')[0].nextHopProtocol"); proto != tc.proto {
			t.Fatalf("%s: page served over %q, want %q", tc.name, proto, tc.proto)
		}
		counts := waitCounts(t, tab, tc.name+": every stream ready", func(c map[string]streamCount) bool {
			return c["plain"].Readys == 1 && c["gzip"].Readys == 1 && c["zstd"].Readys == 1
		})
		state := sameCodingEvents(t, tab, 0)
		if n := len(state); n != 2000-round+1 || state[n-1][0] != "ready" { // each round deletes a key
			t.Fatalf("%s: a state part of %d events ending in %q, want %d values and ready", tc.name, n, state[n-1][0], 2000-round)
		}

		// Live: small changes, a value over 1 KiB, a delete.
		rev++
		var live []*kgo.Record
		for i := range 20 {
			live = append(live, rec(0, fmt.Sprintf("task-%05d", i*97+1), taskJSON(i*97+1, rev)))
		}
		live = append(live, rec(0, "task-00400", taskJSON(400, rev)), tombstone(0, fmt.Sprintf("task-%05d", 1999-round)))
		s.produce("tasks", live...)
		waitCounts(t, tab, tc.name+": the live changes on every stream", func(c map[string]streamCount) bool {
			for _, name := range codingNames {
				if c[name].N < counts[name].N+len(live) {
					return false
				}
			}
			return true
		})
		got := sameCodingEvents(t, tab, counts["plain"].N)
		if len(got) != len(live) || got[len(got)-1][0] != "delete" || got[len(got)-2][2] != taskJSON(400, rev) {
			t.Fatalf("%s: %d live events, want %d ending with the large value and a delete", tc.name, len(got), len(live))
		}
		for _, name := range codingNames {
			if c := eval[map[string]streamCount](t, tab, "window.counts()")[name]; c.Opens != 1 || c.State != 1 {
				t.Fatalf("%s: /%s opened %d times, readyState %d: want one open stream", tc.name, name, c.Opens, c.State)
			}
		}

		// What went over the wire: gzip where asked for, zstd where Chromium accepts it.
		for _, name := range codingNames {
			rs, sent := nl.of("/" + name)
			if len(rs) != 1 || rs[0].Status != 200 {
				t.Fatalf("%s: /%s responses %+v, want one 200", tc.name, name, rs)
			}
			want := map[string]string{"plain": "", "gzip": "gzip", "zstd": ""}[name]
			if name == "zstd" && acceptsCoding(sent[0], "zstd") {
				want = "zstd"
			}
			if name == "zstd" {
				t.Logf("%s: Chromium sends Accept-Encoding %q on an EventSource; /zstd came as %q", tc.name, sent[0], rs[0].ContentEncoding)
			}
			if rs[0].ContentEncoding != want { // the other transport is still checked
				t.Errorf("%s: /%s came with Content-Encoding %q, want %q (Chromium sent Accept-Encoding %q)", tc.name, name, rs[0].ContentEncoding, want, sent[0])
			}
			// A route that compresses says so to caches and proxies.
			if name != "plain" && (!acceptsCoding(rs[0].Vary, "Accept-Encoding") || !strings.Contains(rs[0].CacheControl, "no-transform")) {
				t.Errorf("%s: /%s came with Vary %q, Cache-Control %q: want Accept-Encoding and no-transform", tc.name, name, rs[0].Vary, rs[0].CacheControl)
			}
		}
	}
}

// In Chromium, a gzip (and zstd, where accepted) EventSource whose edge
// drains: the stream ends cleanly, the draining edge refuses the
// reconnect (200 with a retry, uncompressed), and once the load balancer
// moves on the browser resumes on the other edge with its Last-Event-ID
// and gets exactly the changes it missed, compressed again: the same
// events as an uncompressed stream, no value twice, no state replayed.
func TestBrowserResumesCompressedStreamAfterDrain(t *testing.T) {
	bin := chromium(t)
	s := newStack(t, stackOptions{partitions: 1, routes: codingRoutes(), handler: codingsMux, edgeCfg: func(c *edge.Config) {
		c.Retry, c.ReadyProbe = 100*time.Millisecond, 50*time.Millisecond
	}})
	_, otherURL := s.serveAnotherEdge(codingRoutes(), edge.Config{Logger: testLogger(t), Retry: 100 * time.Millisecond,
		Now: func() time.Time { return fixedNow }, Registerer: prometheus.NewRegistry(), ProbeInterval: 200 * time.Millisecond, PageTimeout: 500 * time.Millisecond}, nil)
	lb := newBalancer(t, s.url, otherURL)
	s.produceTasks(nil, 2000, 1)

	open := startChromium(t, bin)
	tab, nl := openLogged(t, open, lb.url+"/")
	before := waitCounts(t, tab, "every stream ready", func(c map[string]streamCount) bool {
		return c["plain"].Readys == 1 && c["gzip"].Readys == 1 && c["zstd"].Readys == 1
	})
	sameCodingEvents(t, tab, 0)

	drained := make(chan error, 1)
	go func() { drained <- s.edge.Drain(t.Context(), 300*time.Millisecond) }()
	var missed []string
	for i := range 10 { // while it drains, or after
		v := taskJSON(i*131, 2)
		s.produce("tasks", rec(0, fmt.Sprintf("task-%05d", i*131), v))
		missed = append(missed, v)
	}
	// The drain's own close counts as a refusal too: wait until every
	// stream came back and got the draining edge's answer.
	eventually(t, 20*time.Second, "the streams refused by the draining edge", func() bool {
		for _, name := range codingNames {
			if rs, _ := nl.of("/" + name); len(rs) < 2 {
				return false
			}
		}
		return s.refusals(s.edgeReg, "draining") >= 3
	})
	lb.moveOn() // a load balancer sees /_ssekafka/ready fail and moves on
	waitCounts(t, tab, "every stream resumed on the other edge", func(c map[string]streamCount) bool {
		for _, name := range codingNames {
			if c[name].Readys < 2 || c[name].N < before[name].N+len(missed)+1 {
				return false
			}
		}
		return true
	})
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	// After the first ready: exactly the changes made since, each once,
	// and a ready for each stream that resumed; the same on every stream.
	for _, name := range codingNames {
		var got []string
		for _, ev := range eval[[][]string](t, tab, fmt.Sprintf("window.events(%q, %d)", name, before[name].N)) {
			if ev[0] != "ready" {
				got = append(got, ev[2])
			}
		}
		if !slices.Equal(got, missed) {
			t.Fatalf("/%s after the drain: %d values, want exactly the %d missed", name, len(got), len(missed))
		}
	}

	// Over the wire: the gzip stream, the draining edge's refusals
	// (uncompressed), the gzip stream again from the other edge.
	for _, name := range []string{"plain", "gzip", "zstd"} {
		rs, sent := nl.of("/" + name)
		want := map[string]string{"plain": "", "gzip": "gzip", "zstd": ""}[name]
		if name == "zstd" && acceptsCoding(sent[0], "zstd") {
			want = "zstd"
		}
		if len(rs) < 3 || rs[0].ContentEncoding != want || rs[len(rs)-1].ContentEncoding != want {
			t.Fatalf("/%s responses %+v, want %q, refusals, %q", name, rs, want, want)
		}
		for _, r := range rs[1 : len(rs)-1] {
			if r.Status != 200 || r.ContentEncoding != "" {
				t.Fatalf("/%s: a refusal with status %d and Content-Encoding %q, want 200 uncompressed", name, r.Status, r.ContentEncoding)
			}
		}
	}
}

// cutter is a TCP proxy to one address whose connections can all be cut
// at once, as when the edge behind it is killed: no clean end, no gzip
// trailer, whatever was in flight lost.
type cutter struct {
	url   string
	mu    sync.Mutex
	conns []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	c := &cutter{url: "http://" + ln.Addr().String()}
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", strings.TrimPrefix(target, "http://"))
			if err != nil {
				_ = down.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, down, up)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(up, down); _ = up.Close() }()
			go func() { _, _ = io.Copy(down, up); _ = down.Close() }()
		}
	}()
	t.Cleanup(c.cut)
	return c
}

// cut closes every connection at once.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// In Chromium, a gzip (and zstd) EventSource cut mid-stream, without the
// gzip trailer (the edge killed, as far as the browser can tell), keeps
// every event up to the cut, reconnects by itself with its Last-Event-ID,
// and ends up with every change exactly once: the same events as an
// uncompressed stream cut alike.
func TestBrowserResumesCompressedStreamCutWithoutTrailer(t *testing.T) {
	bin := chromium(t)
	s := newStack(t, stackOptions{partitions: 1, routes: codingRoutes(), handler: codingsMux, edgeCfg: func(c *edge.Config) {
		c.Retry = 100 * time.Millisecond
	}})
	proxy := newCutter(t, s.url)
	s.produceTasks(nil, 2000, 1)

	open := startChromium(t, bin)
	tab, nl := openLogged(t, open, proxy.url+"/")
	before := waitCounts(t, tab, "every stream ready", func(c map[string]streamCount) bool {
		return c["plain"].Readys == 1 && c["gzip"].Readys == 1 && c["zstd"].Readys == 1
	})
	var want []string
	change := func(i int) {
		v := taskJSON(i*37, 2+i)
		s.produce("tasks", rec(0, fmt.Sprintf("task-%05d", i*37), v))
		want = append(want, v)
	}
	for i := range 5 {
		change(i)
	}
	waitCounts(t, tab, "the first changes", func(c map[string]streamCount) bool {
		for _, name := range codingNames {
			if c[name].N < before[name].N+5 {
				return false
			}
		}
		return true
	})
	proxy.cut()
	for i := 5; i < 10; i++ {
		change(i)
	}
	waitCounts(t, tab, "every stream reopened and current", func(c map[string]streamCount) bool {
		for _, name := range codingNames {
			if c[name].Opens < 2 || c[name].Readys < 2 || c[name].N < before[name].N+len(want)+1 {
				return false
			}
		}
		return true
	})
	for _, name := range codingNames {
		var got []string
		for _, ev := range eval[[][]string](t, tab, fmt.Sprintf("window.events(%q, %d)", name, before[name].N)) {
			if ev[0] != "ready" {
				got = append(got, ev[2])
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("/%s across the cut: %d values, want exactly the %d changes once each", name, len(got), len(want))
		}
		// Both streams, before and after the cut, in the route's coding.
		rs, sent := nl.of("/" + name)
		for i, r := range rs {
			want := map[string]string{"plain": "", "gzip": "gzip", "zstd": ""}[name]
			if name == "zstd" && acceptsCoding(sent[i], "zstd") {
				want = "zstd"
			}
			if r.ContentEncoding != want {
				t.Fatalf("/%s response %d came with Content-Encoding %q, want %q", name, i, r.ContentEncoding, want)
			}
		}
	}
}
