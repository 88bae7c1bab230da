package edge_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
)

// plainListener hands out connections that are not syscall.Conn, as a TLS
// listener does: the edge cannot write to their raw socket.
type plainListener struct{ net.Listener }

type plainConn struct{ net.Conn } // hides SyscallConn

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return plainConn{c}, nil
}

// A stream over a connection that is not a syscall.Conn (TLS, non-Linux)
// lets its setup worker go once its state part is written: with two setup
// workers, a third stream still gets its state, ready and live changes.
func TestServeNonSyscallConnReleasesSetupWorker(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.SetupConcurrency = 2 }})
	s.produce("tasks", rec(0, "a", "1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s.edge}
	done := make(chan error, 1)
	go func() { done <- s.edge.Serve(plainListener{ln}, srv) }()
	t.Cleanup(func() {
		_ = ln.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want the listener's close", err)
		}
		_ = srv.Close()
	})
	var clients []*sseClient
	for i := range 4 {
		c := openRaw(t, ln.Addr().String(), "/tasks")
		evs := c.untilReady()
		if len(evs) != 3 || evs[1].Data != "1" { // retry, the state, ready
			t.Fatalf("stream %d: state part %+v", i, evs)
		}
		clients = append(clients, c)
	}
	for round := range 2 {
		value := fmt.Sprintf("live-%d", round)
		s.produce("tasks", rec(1, "b", value))
		for i, c := range clients {
			ev, err := c.next(10 * time.Second)
			if err != nil || ev.Data != value {
				t.Fatalf("stream %d, round %d: got %+v, %v; want data %q", i, round, ev, err, value)
			}
		}
	}
}

// openRaw opens an SSE stream over a plain connection, failing the test if
// the response header does not come within 10 seconds.
func openRaw(t *testing.T, addr, path string) *sseClient {
	t.Helper()
	conn := dial(t, addr)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	_ = conn.SetDeadline(time.Time{})
	c := newSSEClient(t, resp, func() { _ = conn.Close() })
	t.Cleanup(c.close)
	return c
}
