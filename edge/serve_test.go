package edge_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
)

// serveWithMux serves s's edge behind a ServeMux with one other handler, as
// the ssekafka binary does, and returns the address.
func serveWithMux(t *testing.T, s *stack, headerTimeout time.Duration) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/_ssekafka/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", s.edge)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: headerTimeout}
	done := make(chan error, 1)
	go func() { done <- s.edge.Serve(ln, srv) }()
	t.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; err == nil || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want the listener's close", err)
		}
		_ = srv.Close()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// Requests the edge does not serve go to net/http as they arrived, keep-alive
// included; the edge's own answers come byte for byte without net/http.
func TestServeHandsOverAndAnswersRaw(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"))
	addr := serveWithMux(t, s, 200*time.Millisecond)

	t.Run("other handler, keep-alive", func(t *testing.T) {
		conn := dial(t, addr)
		br := bufio.NewReader(conn)
		for range 2 {
			fmt.Fprintf(conn, "GET /_ssekafka/health HTTP/1.1\r\nHost: edge\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "ok\n" {
				t.Fatalf("health: %d %q", resp.StatusCode, body)
			}
		}
	})

	t.Run("method not allowed", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "DELETE /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		want := "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nConnection: close\r\n" +
			"Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n\r\n" +
			"method DELETE not allowed: SSE streams are GET\n"
		if string(got) != want {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})

	t.Run("HEAD gets no body", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "HEAD /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(got), "HTTP/1.1 405 Method Not Allowed\r\n") || !strings.HasSuffix(string(got), "\r\n\r\n") {
			t.Fatalf("got %q", got)
		}
	})

	t.Run("request with a body goes to net/http", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "POST /tasks HTTP/1.1\r\nHost: edge\r\nContent-Length: 2\r\n\r\nhi")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})

	t.Run("header sent a byte at a time, HTTP/1.0", func(t *testing.T) {
		conn := dial(t, addr)
		for _, b := range []byte("GET /tasks HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n") {
			if _, err := conn.Write([]byte{b}); err != nil {
				t.Fatal(err)
			}
		}
		br := bufio.NewReader(conn)
		status, err := br.ReadString('\n')
		if err != nil || status != "HTTP/1.0 200 OK\r\n" {
			t.Fatalf("status line %q, %v", status, err)
		}
		var body strings.Builder
		for !strings.Contains(body.String(), "event:ready\n") {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before ready: %q: %v", body.String(), err)
			}
			body.WriteString(line)
		}
		if !strings.Contains(body.String(), "\ndata:1\n") {
			t.Fatalf("state part without the record: %q", body.String())
		}
	})

	t.Run("silent connection closed after the header timeout", func(t *testing.T) {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\n")
		n, err := conn.Read(make([]byte, 1))
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %d bytes, %v: want the edge to close the connection", n, err)
		}
	})
}

// After a burst of new streams the edge returns free memory to the OS once
// none is starting.
func TestServeReleasesMemoryAfterBurst(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ReleaseAfterBurst = 5 }})
	s.produce("tasks", rec(0, "a", "1"))
	for range 5 {
		s.connect("/tasks", nil).untilReady()
	}
	eventually(t, 10*time.Second, "a memory release", func() bool {
		return s.edgeCounter("ssekafka_edge_memory_releases_total") >= 1
	})
}
