package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// refusedStream reads a stream to its end and reports whether it was a
// refusal for reason (200, the reason as a comment, a retry) rather than
// a stream that reached event:ready.
func refusedStream(t *testing.T, c *sseClient, reason string) bool {
	t.Helper()
	for {
		ev, err := c.next(10 * time.Second)
		if err != nil {
			break
		}
		if ev.Event == "ready" {
			return false
		}
	}
	return strings.HasPrefix(c.rawStream(), ": "+reason+"\n")
}

// HTTP/2 streams count against the caps as connections do: from one
// address at most MaxConnectionsPerIP streams and connections together
// (one connection, two streams for a cap of 3), in all at most
// MaxConnections; the rest get the browser-safe refusal, counted. (On
// 63c3e19 every stream was served: 20 connections x 250 streams from one
// address were 5,000 live streams.)
func TestHTTP2StreamsCountAgainstConnectionCaps(t *testing.T) {
	for _, tc := range []struct {
		name, reason, label string
		tweak               func(*edge.Config)
	}{
		{"per address", "too many connections from this address", "max_connections_per_ip",
			func(c *edge.Config) { c.MaxConnectionsPerIP = 3 }},
		{"total", "edge at its connection limit", "max_connections",
			func(c *edge.Config) { c.MaxConnections, c.MaxConnectionsPerIP = 3, edge.Off }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := tlsStack(t, true, tc.tweak)
			s.produce("tasks", rec(0, "a", "1"))
			var live []*sseClient
			for range 2 {
				c := s.connect("/tasks", nil)
				c.untilReady()
				live = append(live, c)
			}
			for i := range 3 {
				c := s.connect("/tasks", nil)
				if c.resp.ProtoMajor != 2 {
					t.Fatalf("stream over %s", c.resp.Proto)
				}
				if !refusedStream(t, c, tc.reason) {
					t.Fatalf("stream %d past the cap was served", i+3)
				}
			}
			if n := s.accepted.Load(); n != 1 {
				t.Fatalf("%d connections, want the one HTTP/2 connection", n)
			}
			if n := connectionsRefused(t, s.edgeReg, tc.label); n != 3 {
				t.Fatalf("connections_refused{%s} = %v, want 3", tc.label, n)
			}
			live[0].close()
			eventually(t, 10*time.Second, "a stream served once one ended", func() bool {
				c := s.connect("/tasks", nil)
				defer c.close()
				for {
					ev, err := c.next(10 * time.Second)
					if err != nil {
						return false
					}
					if ev.Event == "ready" {
						return true
					}
				}
			})
		})
	}
}

// lockedBuffer is a log destination safe for the edge's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An address at its cap is logged with what an operator behind a load
// balancer needs to know: the balancer must be listed in
// sse.trustedProxies, or all its browsers are one address (on 63c3e19 the
// line said "connection over limit" and nothing about why).
func TestAddressAtItsCapLogsTheTrustedProxiesHint(t *testing.T) {
	logs := &lockedBuffer{}
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.MaxConnectionsPerIP = 1
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	if !tryStream(t, addr, "/tasks") {
		t.Fatal("first stream refused")
	}
	conn, br := rawGet(t, s.url, "/tasks")
	readRefusal(t, conn, br, "too many connections from this address", 2000, 4000)
	if n := connectionsRefused(t, s.edgeReg, "max_connections_per_ip"); n != 1 {
		t.Fatalf("connections_refused{max_connections_per_ip} = %v, want 1", n)
	}
	eventually(t, 10*time.Second, "the refusal logged with the hint", func() bool {
		return strings.Contains(logs.String(), "sse.trustedProxies") && strings.Contains(logs.String(), "client=127.0.0.1")
	})
}

// produceState writes n records of size bytes each over the topic's three
// partitions and waits until the cache has applied them.
func (s *stack) produceState(topic string, n, size int) {
	s.t.Helper()
	value := strings.Repeat("v", size)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, rec(int32(i%3), fmt.Sprintf("k%06d", i), value))
	}
	for i := 0; i < len(recs); i += 500 {
		s.produceToKafka(topic, recs[i:min(i+500, len(recs))]...)
	}
	for _, r := range recs[len(recs)-3:] {
		s.waitApplied(topic, r.Partition, r.Offset)
	}
}

// nonReaderStack is a stack with one setup worker, an 8 MB state on
// "tasks" (more than a socket's buffers, or an HTTP/2 client's 4 MiB
// stream window, hold) and one record on "other", whose state parts are
// cut off at timeout; over TLS with HTTP/2 when h2.
func nonReaderStack(t *testing.T, h2 bool, timeout time.Duration) *stack {
	t.Helper()
	tweak := func(c *edge.Config) {
		c.SetupConcurrency = 1
		c.StateWriteTimeout, c.StateMinRate = timeout, 1<<30
	}
	var s *stack
	if h2 {
		s, _, _ = tlsStackWith(t, true, stackOptions{topics: []string{"tasks", "other"}}, tweak)
	} else {
		s = newStack(t, stackOptions{topics: []string{"tasks", "other"}, edgeCfg: tweak})
	}
	s.produceState("tasks", 256, 32<<10) // 8 MiB in few records: light on kfake
	s.produce("other", rec(0, "a", "1"))
	return s
}

// openNonReader asks for the 8 MB state and never reads it: on a raw
// connection with a small receive buffer, or as an HTTP/2 stream whose
// body is not read.
func openNonReader(t *testing.T, s *stack, h2 bool) {
	t.Helper()
	if !h2 {
		conn := dial(t, strings.TrimPrefix(s.url, "http://"))
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n")
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/tasks", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "identity") // the 8 MB as they are: compressed they would fit the window
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 {
		t.Fatalf("stream over %s", resp.Proto)
	}
}

// A client that asks for a state larger than its socket can hold and never
// reads it does not keep a setup worker: once a write of its state part
// waits on the full socket (or, over HTTP/2, the stream's flow window) the
// stream gives its worker back (parked), so that with one worker another
// client reaches ready while it is still in its state part; and a client
// that does not read is cut off at its write deadline, counted, its
// connection closed. (On 63c3e19 it held the worker for the 30 s write
// timeout of each write: 64 such clients blocked every new stream of the
// edge.) Each mechanism has a stack of its own: a deadline too long to
// pass in the first, a short one in the second, so that neither depends
// on how fast a loaded machine is.
func TestNonReadingClientGivesBackItsSetupWorkerAndIsCutOff(t *testing.T) {
	for _, mode := range []struct {
		name string
		h2   bool
	}{{"serve", false}, {"h2", true}} {
		t.Run(mode.name+"/worker given back", func(t *testing.T) {
			s := nonReaderStack(t, mode.h2, 10*time.Minute)
			openNonReader(t, s, mode.h2)
			eventually(t, 30*time.Second, "the non-reading stream parked", func() bool {
				return s.counter(s.edgeReg, "ssekafka_edge_state_parked_total") == 1
			})
			c := s.connect("/t/other", nil) // the edge's only worker serves it
			c.untilReady()
			if n := s.counter(s.edgeReg, "ssekafka_edge_state_stalled_total"); n != 0 {
				t.Fatalf("state_stalled_total = %v", n)
			}
			if g := s.gauge("ssekafka_edge_clients"); g != 2 {
				t.Fatalf("clients = %v, want the non-reading one, still in its state part, and the other", g)
			}
		})
		t.Run(mode.name+"/cut off", func(t *testing.T) {
			s := nonReaderStack(t, mode.h2, time.Second)
			openNonReader(t, s, mode.h2)
			eventually(t, 60*time.Second, "the non-reading stream cut off", func() bool {
				return s.counter(s.edgeReg, "ssekafka_edge_state_stalled_total") == 1
			})
			if n := s.counter(s.edgeReg, "ssekafka_edge_state_parked_total"); n != 1 {
				t.Fatalf("state_parked_total = %v: it held its worker until the cut-off", n)
			}
			eventually(t, 30*time.Second, "the cut-off stream gone", func() bool {
				return s.gauge("ssekafka_edge_clients") == 0 && (mode.h2 || s.gauge("ssekafka_edge_open_connections") == 0)
			})
		})
	}
}

// statusWithin reads the status line conn gets within d ("" if none).
func statusWithin(conn net.Conn, br *bufio.Reader, d time.Duration) string {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	line, _ := br.ReadString('\n')
	return strings.TrimSuffix(line, "\r\n")
}

// The long header budget (MaxHeaderBytes, for a Last-Event-ID of many
// partitions) is only for a Last-Event-ID: a header that passes
// OrdinaryHeaderBytes without one is answered 431 as soon as it does, and
// the long buffers one address holds are bounded: past the budget a stream
// gets the browser-safe refusal, counted. (On 63c3e19 any connection held
// a 272 KiB buffer until the header timeout: 990 connections with
// unfinished 260 KiB headers took RSS from 21 to 289 MiB.)
func TestOnlyALongLastEventIDGetsTheLongHeaderBudget(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")

	filler := dial(t, addr)
	fmt.Fprintf(filler, "GET /tasks HTTP/1.1\r\nHost: e\r\nX-Filler: %s", strings.Repeat("x", 20<<10))
	if got := statusWithin(filler, bufio.NewReader(filler), 5*time.Second); got != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Fatalf("20 KiB of an ordinary field, unfinished: %q, want 431 at once", got)
	}

	partial := "GET /tasks HTTP/1.1\r\nHost: e\r\nAccept: text/event-stream\r\nLast-Event-ID: " + strings.Repeat("A", 20<<10)
	long := edge.MaxHeaderMemoryPerAddress / edge.MaxHeaderBytes // long headers one address may have in progress
	var held []net.Conn
	for range long {
		c := dial(t, addr)
		fmt.Fprint(c, partial)
		held = append(held, c)
	}
	eventually(t, 10*time.Second, "the long headers held", func() bool {
		return s.gauge("ssekafka_edge_header_memory_bytes") == float64(long*edge.MaxHeaderBytes)
	})
	over := dial(t, addr)
	fmt.Fprint(over, partial)
	readRefusal(t, over, bufio.NewReader(over), "too many long request headers being read", 2000, 4000)
	if n := connectionsRefused(t, s.edgeReg, "header_memory"); n != 1 {
		t.Fatalf("connections_refused{header_memory} = %v, want 1", n)
	}

	// A long Last-Event-ID within the budget is served as ever.
	fmt.Fprint(held[0], "\r\n\r\n")
	if got := statusWithin(held[0], bufio.NewReader(held[0]), 10*time.Second); got != "HTTP/1.1 200 OK" {
		t.Fatalf("a 20 KiB Last-Event-ID: %q, want a stream", got)
	}
	eventually(t, 10*time.Second, "its header buffer given back", func() bool {
		return s.gauge("ssekafka_edge_header_memory_bytes") == float64((long-1)*edge.MaxHeaderBytes)
	})
}
