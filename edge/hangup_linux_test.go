//go:build linux

package edge_test

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/proto"
)

// Keep-alives are off in these tests: a write never finds out that a client
// has gone, so only the hang-up watch can release it.
func noKeepAlive(c *edge.Config) { c.KeepAlive = edge.Off }

// A client that leaves, however it leaves, is released: its server-side
// socket is closed, the clients gauge drops and the hang-up is counted.
func TestHangupReleasesLiveClient(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: noKeepAlive})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	hangups := 0.0

	released := func(t *testing.T, sockets map[string]bool) {
		t.Helper()
		hangups++
		eventually(t, 5*time.Second, "the edge to release the client", func() bool {
			return openSockets(t, sockets) == 0 && gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0 &&
				s.edgeCounter("ssekafka_edge_hangups_total") == hangups
		})
	}

	t.Run("TCP client closes", func(t *testing.T) {
		conn, _ := rawStream(t, addr, "/tasks", "")
		sockets := edgeSockets(t, addr, 1)
		_ = conn.Close()
		released(t, sockets)
	})

	t.Run("SSE client closes", func(t *testing.T) {
		c := s.connect("/tasks", nil)
		c.untilReady()
		sockets := edgeSockets(t, addr, 1)
		c.close()
		released(t, sockets)
	})

	t.Run("half-close", func(t *testing.T) {
		conn, br := rawStream(t, addr, "/tasks", "")
		sockets := edgeSockets(t, addr, 1)
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		released(t, sockets)
		if rest, err := br.ReadString('\n'); err == nil || rest != "" {
			t.Fatalf("read %q after the edge released the stream", rest)
		}
	})

	// Bytes after the request are left unread: the stream goes on and
	// nothing wakes for them; the client's close is still seen.
	t.Run("client sends bytes after its request", func(t *testing.T) {
		conn, br := rawStream(t, addr, "/tasks", "junk right after the header\n")
		sockets := edgeSockets(t, addr, 1)
		wakeups := edge.HangupWakeups(s.edge)
		for i := range 100 {
			if _, err := fmt.Fprintf(conn, "more junk %d\r\n\r\n", i); err != nil {
				t.Fatal(err)
			}
		}
		s.produce("tasks", rec(1, "b", "live-after-junk"))
		readUntil(t, br, "data:live-after-junk\n")
		if got := edge.HangupWakeups(s.edge); got != wakeups {
			t.Fatalf("the hang-up watcher woke %d times for bytes a client sent", got-wakeups)
		}
		if g := gauge(t, s.edgeReg, "ssekafka_edge_clients"); g != 1 {
			t.Fatalf("clients gauge %v, want 1", g)
		}
		_ = conn.Close()
		released(t, sockets)
	})
}

// A client that stops reading and then half-closes, while a drain goroutine
// is blocked writing to its full socket, is released too: the hang-up closes
// the connection under the writer, whose failed write ends the stream.
func TestHangupWhileSocketFull(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: noKeepAlive})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
	br := bufio.NewReader(conn)
	readUntil(t, br, "event:ready\n")
	sockets := edgeSockets(t, addr, 1)
	big := strings.Repeat("v", 100_000)
	for i := range 70 { // more than both socket buffers (the send buffer grows to 4 MiB): a drain goroutine writes
		s.produceToKafka("tasks", rec(int32(i%3), fmt.Sprintf("big-%d", i), big))
	}
	// Every frame queued, more than the socket holds: the rest waits for a
	// drain goroutine's blocking write.
	eventually(t, 10*time.Second, "the edge's socket to the client full", func() bool {
		return s.edgeCounter("ssekafka_edge_frames_queued_total") >= 70 && sendQueue(t, addr) > 0
	})
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the edge to release the client", func() bool {
		return openSockets(t, sockets) == 0 && gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0 &&
			s.edgeCounter("ssekafka_edge_hangups_total") == 1
	})
}

// A stream net/http hijacked for the edge is watched from its live phase.
func TestHangupReleasesNetHTTPClient(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: noKeepAlive, viaNetHTTP: true})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	sockets := edgeSockets(t, strings.TrimPrefix(s.url, "http://"), 1)
	c.close()
	eventually(t, 5*time.Second, "the edge to release the client", func() bool {
		return openSockets(t, sockets) == 0 && gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0 &&
			s.edgeCounter("ssekafka_edge_hangups_total") == 1
	})
}

// A thousand clients leaving at once are all released.
func TestHangupReleasesManyAtOnce(t *testing.T) {
	const n = 1000
	// All from 127.0.0.1: no per-address cap (its default is n).
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { noKeepAlive(c); c.MaxConnectionsPerIP = edge.Off }})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"), rec(2, "c", "3"))
	addr := strings.TrimPrefix(s.url, "http://")
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range conns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = conn
			_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
			if _, err := readUntilErr(bufio.NewReader(conn), "event:ready\n"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sockets := edgeSockets(t, addr, n)
	for _, c := range conns {
		_ = c.Close()
	}
	eventually(t, 10*time.Second, "every client released", func() bool {
		return openSockets(t, sockets) == 0 && gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0
	})
	if got := s.edgeCounter("ssekafka_edge_hangups_total"); got != n {
		t.Fatalf("%v hang-ups counted, want %d", got, n)
	}
}

// A client that hangs up while it waits for a setup worker, or while its
// setup waits on the cache tier, does not keep the worker: the next client
// is served at once.
func TestHangupFreesSetupWorker(t *testing.T) {
	var cacheNC *nats.Conn
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		noKeepAlive(c)
		c.SetupConcurrency = 1
		c.RequestTimeout = time.Minute // a state part asks an absent cache tier again for this long
	}, cacheCfg: func(c *cache.Config) { cacheNC = c.NATS }})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	first := s.connect("/tasks", nil) // keeps the feed up
	first.untilReady()

	// With no cache node, a new stream's state part asks again and again.
	// (An id past the cache's end no longer waits: it is reset at once.)
	s.stopCacheTier(cacheNC, "tasks")
	stuck := dial(t, addr)
	fmt.Fprintf(stuck, "GET /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
	eventually(t, 5*time.Second, "the stuck stream to join its feed", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == 2
	})

	// A queued client that hangs up is released while the worker is busy.
	queued := dial(t, addr)
	fmt.Fprintf(queued, "GET /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
	sockets := edgeSockets(t, addr, 3)
	_ = queued.Close()
	eventually(t, 5*time.Second, "the queued client's socket closed", func() bool {
		return openSockets(t, sockets) == 2 // first and stuck remain
	})

	_ = stuck.Close()
	eventually(t, 5*time.Second, "the stuck stream to leave", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == 1
	})
	s.startCache(nil)
	next := s.connect("/tasks", nil)
	if evs := next.untilReady(); evs[len(evs)-2].Data != "1" {
		t.Fatalf("next client got %v", evs)
	}
	if got := s.edgeCounter("ssekafka_edge_hangups_total"); got != 2 {
		t.Fatalf("%v hang-ups counted, want 2", got)
	}
	first.close()
	next.close()
	eventually(t, 5*time.Second, "clients gauge back to 0", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0
	})
}

// rawStream sends a GET for path (then extra, raw) and reads until event:ready.
func rawStream(t *testing.T, addr, path, extra string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn := dial(t, addr)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\n\r\n%s", path, extra)
	br := bufio.NewReader(conn)
	readUntil(t, br, "event:ready\n")
	readUntil(t, br, "\n") // the end of the ready block
	return conn, br
}

func readUntil(t *testing.T, br *bufio.Reader, line string) string {
	t.Helper()
	got, err := readUntilErr(br, line)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func readUntilErr(br *bufio.Reader, line string) (string, error) {
	var b strings.Builder
	for {
		l, err := br.ReadString('\n')
		b.WriteString(l)
		if l == line {
			return b.String(), nil
		}
		if err != nil {
			return b.String(), fmt.Errorf("stream ended before %q: %q: %w", line, b.String(), err)
		}
	}
}

// edgeSockets returns the socket inodes of the edge's established
// connections (local port that of addr), which must number want.
func edgeSockets(t testing.TB, addr string, want int) map[string]bool {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("0100007F:%04X", p)
	var inodes map[string]bool
	poll.Until(t, 5*time.Second, fmt.Sprintf("%d connections in /proc/net/tcp", want), func() bool {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		inodes = map[string]bool{}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[1] == local && f[3] == "01" { // ESTABLISHED
				inodes[f[9]] = true
			}
		}
		return len(inodes) == want
	})
	return inodes
}

// sendQueue is the bytes waiting in the send queue of the edge's
// established connections (local port that of addr).
func sendQueue(t testing.TB, addr string) int64 {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("0100007F:%04X", p)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "01" {
			tx, _, _ := strings.Cut(f[4], ":")
			n, _ := strconv.ParseInt(tx, 16, 64)
			total += n
		}
	}
	return total
}

// openSockets counts the sockets of inodes that this process still has open.
func openSockets(t testing.TB, inodes map[string]bool) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") && inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			n++
		}
	}
	return n
}

// gauge reads a gauge of reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// stopCacheTier stops the stack's cache node and closes its NATS
// connection, cacheNC (a stopped node's subscriptions would otherwise still
// answer, with an error), then waits until no node answers for topic.
func (s *stack) stopCacheTier(cacheNC *nats.Conn, topic string) {
	s.t.Helper()
	s.stopCache()
	cacheNC.Close()
	nc := s.connectNATS()
	subject := proto.Subjects{Prefix: "ssekafka"}.State(topic, 0)
	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: math.MaxInt64})
	eventually(s.t, 5*time.Second, "no cache node answering", func() bool {
		_, err := nc.Request(subject, req, time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	})
}
