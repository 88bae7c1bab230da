package edge_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/devstack"
)

// serveBothPaths serves s's edge behind the same mux twice: through
// Edge.Serve (the edge reads stream requests itself) and through net/http
// alone, and returns both addresses.
func serveBothPaths(t *testing.T, s *stack) (edgePath, netHTTP string) {
	t.Helper()
	edgePath = serveWithMux(t, s, 2*time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("/_ssekafka/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", s.edge)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 2 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return edgePath, ln.Addr().String()
}

// statusLine sends raw to addr and returns the answer's status line, or
// what happened instead ("closed", "timeout") within a second.
func statusLine(t *testing.T, addr, raw string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte(raw)); err != nil {
		return "closed"
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case err != nil:
		return "closed"
	}
	return strings.TrimSuffix(line, "\r\n")
}

// The edge's own request reading and net/http's give the same answer to the
// same bytes (on 5f6c6aa: a header ending in bare LF hung until the header
// timeout on both, /health included; a missing Host was a stream on one and
// 400 on the other; HTTP/1.2 was answered "HTTP/1.2 200 OK"; a space before
// a header's colon was a stream on one and 400 on the other), and a request
// past the bounds gets a clear status.
func TestRequestAnsweredAlikeOnBothPaths(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"))
	edgePath, netHTTP := serveBothPaths(t, s)
	manyHeaders := strings.Repeat("X-Filler: 1\r\n", 120)
	for _, tc := range []struct {
		name, raw, want string
		bound           bool // a bound of Edge.Serve's, which net/http alone lacks
	}{
		{"ordinary stream", "GET /tasks HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 200 OK", false},
		{"ordinary health", "GET /_ssekafka/health HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 200 OK", false},
		{"bare LF stream", "GET /tasks HTTP/1.1\nHost: e\n\n", "HTTP/1.1 200 OK", false},
		{"bare LF health", "GET /_ssekafka/health HTTP/1.1\nHost: e\n\n", "HTTP/1.1 200 OK", false},
		{"bare LF at the end only", "GET /tasks HTTP/1.1\r\nHost: e\r\n\n", "HTTP/1.1 200 OK", false},
		{"missing Host", "GET /tasks HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request: missing required Host header", false},
		{"two Hosts", "GET /tasks HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400 Bad Request", false},
		{"HTTP/1.0 without Host", "GET /tasks HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK", false},
		{"HTTP/1.2 is answered as 1.1", "GET /tasks HTTP/1.2\r\nHost: e\r\n\r\n", "HTTP/1.1 200 OK", false},
		{"space before a colon", "GET /tasks HTTP/1.1\r\nHost: e\r\nTransfer-Encoding : chunked\r\n\r\n", "HTTP/1.1 400 Bad Request: invalid header name", false},
		// Found by review of the first version: obs-fold after Host, a Host
		// ending in Unicode space, and Expect were streams on the edge's path.
		{"obs-fold after Host", "GET /tasks HTTP/1.1\r\nHost: e\r\n x\r\n\r\n", "HTTP/1.1 400 Bad Request: malformed Host header", false},
		{"Host ending in NBSP", "GET /tasks HTTP/1.1\r\nHost: e\xc2\xa0\r\n\r\n", "HTTP/1.1 400 Bad Request: malformed Host header", false},
		{"Expect other than 100-continue", "GET /tasks HTTP/1.1\r\nHost: e\r\nExpect: foo\r\n\r\n", "HTTP/1.1 417 Expectation Failed", false},
		{"URI too long", "GET /tasks/" + strings.Repeat("k", 9000) + " HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 414 Request URI Too Long", true},
		{"URI too long, health", "GET /_ssekafka/health/" + strings.Repeat("k", 9000) + " HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 414 Request URI Too Long", true},
		{"query too long", "GET /tasks?x=" + strings.Repeat("k", 9000) + " HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 414 Request URI Too Long", true},
		{"query too long besides a lastEventId", "GET /tasks?lastEventId=AA&x=" + strings.Repeat("k", 9000) + " HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 414 Request URI Too Long", true},
		{"long lastEventId query", "GET /tasks?lastEventId=" + strings.Repeat("A", 20000) + "&x=1 HTTP/1.1\r\nHost: e\r\n\r\n", "HTTP/1.1 200 OK", true},
		{"too many headers", "GET /tasks HTTP/1.1\r\nHost: e\r\n" + manyHeaders + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", true},
		{"too many headers, health", "GET /_ssekafka/health HTTP/1.1\r\nHost: e\r\n" + manyHeaders + "\r\n", "HTTP/1.1 431 Request Header Fields Too Large", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for path, addr := range map[string]string{"edge's path": edgePath, "net/http": netHTTP} {
				if tc.bound && addr == netHTTP {
					continue
				}
				if got := statusLine(t, addr, tc.raw); got != tc.want {
					t.Errorf("%s: %q, want %q", path, got, tc.want)
				}
			}
		})
	}
}

// FuzzRequestPathsAgree: whatever bytes open a connection, the edge's own
// request reading and net/http alone answer with the same status line (or
// both close, or both wait). The edge has a stream route and no cache tier:
// a stream is refused browser-safely (200) after a short request timeout.
func FuzzRequestPathsAgree(f *testing.F) {
	for _, seed := range []string{
		"GET /tasks HTTP/1.1\r\nHost: e\r\n\r\n",
		"GET /_ssekafka/health HTTP/1.1\r\nHost: e\r\n\r\n",
		"GET /tasks HTTP/1.1\nHost: e\n\n",
		"GET /_ssekafka/health HTTP/1.1\nHost: e\n\n",
		"GET /tasks HTTP/1.1\r\n\r\n",
		"GET /tasks HTTP/1.0\r\n\r\n",
		"GET /tasks HTTP/1.2\r\nHost: e\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\nTransfer-Encoding : chunked\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\nContent-Length: 2\r\n\r\nhi",
		"POST /tasks HTTP/1.1\r\nHost: e\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"DELETE /nowhere HTTP/1.1\r\nHost: e\r\n\r\n",
		"GET http://other/tasks HTTP/1.1\r\nHost: e\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\nX: a\x00b\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\n x\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\xc2\x85\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\n\r\n",
		"GET /tasks HTTP/1.1\r\nHost: e\r\nExpect: foo\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(nc.Close)
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/tasks"}, Topic: "tasks"})
	if err != nil {
		f.Fatal(err)
	}
	e, err := edge.New(edge.Config{NATS: nc, Routes: []*edge.Route{route}, RetryJitter: -1,
		RequestTimeout: 100 * time.Millisecond, PageTimeout: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(e.Close)
	serve := func(viaEdge bool) string {
		mux := http.NewServeMux()
		mux.HandleFunc("/_ssekafka/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.Handle("/", e)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 300 * time.Millisecond, ErrorLog: slogLogger()}
		if viaEdge {
			go func() { _ = e.Serve(ln, srv) }()
		} else {
			go func() { _ = srv.Serve(ln) }()
		}
		f.Cleanup(func() { _ = ln.Close(); _ = srv.Close() })
		return ln.Addr().String()
	}
	edgePath, netHTTP := serve(true), serve(false)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 4096 || bytes.Count(raw, []byte("\n")) > edge.MaxHeaderLines {
			t.Skip("past the edge's bounds, which net/http alone lacks")
		}
		a, b := statusLine(t, edgePath, string(raw)), statusLine(t, netHTTP, string(raw))
		if a != b {
			t.Fatalf("edge's path %q, net/http %q for %q", a, b, raw)
		}
	})
}

// slogLogger is a log.Logger that discards (net/http logs bad requests).
func slogLogger() *log.Logger { return log.New(io.Discard, "", 0) }
