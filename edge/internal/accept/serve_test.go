package accept

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// onWorker answers whether it was served on a setup worker (Park).
type onWorker struct{}

func (onWorker) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	_, worker := Park(w)
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "on a worker: %v", worker)
}

// The accept path serves what it reads itself through its Handler on a
// setup worker (a raw answer, delimited by the connection's close), and
// hands what it does not queue (a POST) to net/http, which calls the same
// Handler: the seam the edge is wired through, without the edge.
func TestServeQueuesStreamsForTheHandler(t *testing.T) {
	h := &onWorker{}
	s := testServer(Config{
		Handler: h, MaxConnections: 100, MaxConnectionsPerIP: 10,
		SetupConcurrency: 2, SetupQueue: 10, SetupPerAddress: 1, SetupQueuePerAddress: 10,
		WriteTimeout: time.Second, RetryMax: 2 * time.Second,
		Log: slog.New(slog.DiscardHandler), TLSLog: slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln, srv) }()
	t.Cleanup(func() {
		_ = ln.Close()
		<-served
		s.Close()
		s.CloseWatch()
		_ = srv.Close()
	})
	ask := func(method string) string {
		t.Helper()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s /x HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", method)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status + " " + string(body)
	}
	if got := ask(http.MethodGet); got != "200 OK on a worker: true" {
		t.Fatalf("GET: %q, want it served on a setup worker", got)
	}
	if got := ask(http.MethodPost); !strings.HasSuffix(got, "on a worker: false") {
		t.Fatalf("POST: %q, want it served by net/http", got)
	}
}
