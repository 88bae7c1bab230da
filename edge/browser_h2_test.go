package edge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ssekafka/ssekafka/edge"
)

// manyStreamsPage opens 8 EventSources to /tasks on its own origin and
// keeps, for each, the data it got and whether it reached event:ready.
const manyStreamsPage = `<!doctype html><script>
window.streams = [];
for (let i = 0; i < 8; i++) {
  const s = {data: [], ready: false};
  s.es = new EventSource('/tasks');
  s.es.onmessage = (ev) => s.data.push(ev.data);
  s.es.addEventListener('ready', () => { s.ready = true; });
  window.streams.push(s);
}
window.summary = () => window.streams.map(s => ({ready: s.ready, state: s.es.readyState, data: s.data.join(',')}));
</script>`

type streamSummary struct {
	Ready bool   `json:"ready"`
	State int    `json:"state"` // EventSource.readyState: 0 connecting, 1 open, 2 closed
	Data  string `json:"data"`
}

// In Chromium, a page the edge serves over TLS with HTTP/2 opens 8
// EventSources to its origin, on one connection: all 8 get the state and
// event:ready (their setups waiting their turn for the edge's 2 setup
// slots) and then a live change. Over HTTP/1.1 the same page gets six:
// Chromium holds at most six connections per origin, so the 7th and 8th
// EventSource wait, and the 7th starts only once one of the six closes.
func TestBrowserEventSourcesOverHTTP2(t *testing.T) {
	bin := chromium(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, manyStreamsPage) })
	s, _, _ := tlsStackWith(t, true, stackOptions{handler: func(e *edge.Edge) http.Handler {
		mux.Handle("/tasks", e)
		return mux
	}}, func(c *edge.Config) { c.SetupConcurrency = 2 })
	s.produce("tasks", rec(0, "a", "1"))

	open := startChromium(t, bin, chromedp.Flag("ignore-certificate-errors", true)) // the test's self-signed certificate
	readyCount := func(tab context.Context) int {
		n := 0
		for _, st := range eval[[]streamSummary](t, tab, "window.summary()") {
			if st.Ready {
				n++
			}
		}
		return n
	}

	tab := open(s.url + "/")
	if proto := eval[string](t, tab, "performance.getEntriesByType('navigation')[0].nextHopProtocol"); proto != "h2" {
		t.Fatalf("page served over %q, want h2", proto)
	}
	eventually(t, 10*time.Second, "8 EventSources ready over HTTP/2", func() bool { return readyCount(tab) == 8 })
	s.produce("tasks", rec(0, "a", "live"))
	eventually(t, 10*time.Second, "the live change on all 8", func() bool {
		for _, st := range eval[[]streamSummary](t, tab, "window.summary()") {
			if st.Data != "1,live" {
				return false
			}
		}
		return true
	})
	if n := s.accepted.Load(); n > 2 { // the page's connection, and perhaps one Chromium opens ahead
		t.Fatalf("%d TCP connections for a page and 8 streams over HTTP/2", n)
	}

	// The same page and edge over plain HTTP/1.1: a second listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	plain := &http.Server{Handler: mux}
	go func() { _ = s.edge.Serve(ln, plain) }()
	t.Cleanup(func() { _ = ln.Close(); _ = plain.Close() })
	tab1 := open("http://" + ln.Addr().String() + "/")
	if proto := eval[string](t, tab1, "performance.getEntriesByType('navigation')[0].nextHopProtocol"); proto != "http/1.1" {
		t.Fatalf("page served over %q, want http/1.1", proto)
	}
	eventually(t, 10*time.Second, "6 EventSources ready over HTTP/1.1", func() bool { return readyCount(tab1) == 6 })
	// Six streams on the edge for this page, not eight: the 7th and 8th
	// are held in the browser, not in the edge.
	eventually(t, 10*time.Second, "14 streams on the edge", func() bool { return s.gauge("ssekafka_edge_clients") == 14 })
	got := eval[[]streamSummary](t, tab1, "window.summary()")
	for i, st := range got[6:] {
		if st.Ready || st.State != 0 || st.Data != "" {
			t.Fatalf("EventSource %d over HTTP/1.1: %+v, want it still connecting", i+7, st)
		}
	}
	if waiting := s.gauge("ssekafka_edge_setup_waiting"); waiting != 0 {
		t.Fatalf("%v streams waiting in the edge", waiting)
	}
	// One of the six closes: the 7th gets its connection.
	eval[any](t, tab1, "window.streams[0].es.close(), null")
	eventually(t, 10*time.Second, "the 7th EventSource ready once one closed", func() bool {
		got := eval[[]streamSummary](t, tab1, "window.summary()")
		return got[6].Ready && !got[7].Ready
	})
}
