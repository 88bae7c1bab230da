//go:build linux

package edge_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
	"github.com/ssekafka/ssekafka/internal/ssetest"
)

// writerStack is an edge with four writers over an in-memory tier whose
// topic "tasks" (3 partitions) is served at /tasks; its HTTP/1.1 streams
// are hijacked connections, written by non-blocking writevs (liveConn).
func writerStack(t *testing.T, mem *tiertest.Tier, tweak func(*edge.Config)) *stack {
	t.Helper()
	reg := prometheus.NewRegistry()
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/tasks"}, Topic: "tasks"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := edge.Config{Logger: slog.New(slog.DiscardHandler), RetryJitter: edge.Off, KeepAlive: edge.Off,
		Now: func() time.Time { return fixedNow }, Routes: []*edge.Route{route}, Registerer: reg,
		Writers: 4, MaxConnectionsPerIP: edge.Off,
		MaxQueue: 256} // batches of 64 changes: many batches, each written by every writer
	if tweak != nil {
		tweak(&cfg)
	}
	edge.UseTier(&cfg, mem)
	edge.UseClock(&cfg, tiertest.Jumping(fixedNow))
	return serveEdge(t, cfg, reg)
}

func tasksTier() *tiertest.Tier {
	mem := tiertest.New()
	mem.AddTopic("tasks", 3, 7)
	mem.Append("tasks", 0, "a", []byte("a0"), fixedNow.UnixMilli())
	return mem
}

// connectAll opens n streams of /tasks, each read up to its ready.
func connectAll(s *stack, n int) []*sseClient {
	cs := make([]*sseClient, n)
	for i := range cs {
		cs[i] = s.connect("/tasks", nil)
		cs[i].untilReady()
	}
	return cs
}

// With its clients spread over several writers, every client of a hot
// topic still receives every event, in the feed's order, byte for byte
// the same as every other client of its view.
func TestShardedClientsReceiveEveryEventInOrder(t *testing.T) {
	// Rounds of events until a writer goroutine has written a share: the
	// feed takes back the shares no writer started, which on a busy
	// machine may be all of a round's.
	const clients, events, maxRounds = 120, 1200, 10
	mem := tasksTier()
	s := writerStack(t, mem, nil)
	cs := connectAll(s, clients)
	if got := edge.WriterShares(s.edge, "tasks"); !slices.Equal(got, []int{30, 30, 30, 30}) {
		t.Fatalf("clients per writer %v, want 30 each", got)
	}
	for round := 0; ; round++ {
		want := make([]string, events)
		for i := range want {
			want[i] = fmt.Sprintf("k%d=%d.%d", i%17, round, i)
			mem.Produce("tasks", int32(i%3), fmt.Sprintf("k%d", i%17), []byte(want[i]), fixedNow.UnixMilli())
		}
		for i, c := range cs {
			for n := 0; n < events; n++ {
				if ev := c.mustNext(); ev.Data != want[n] {
					t.Fatalf("round %d, client %d, event %d: %q, want %q", round, i, n, ev.Data, want[n])
				}
			}
		}
		for i, c := range cs[1:] {
			if c.rawStream() != cs[0].rawStream() {
				t.Fatalf("client %d's bytes differ from client 0's", i+1)
			}
		}
		if edge.WriterJobs(s.edge) > 0 {
			return
		}
		if round == maxRounds-1 {
			t.Fatalf("no writer goroutine wrote a share in %d events", maxRounds*events)
		}
	}
}

// Clients that hang up, and clients the edge closes (a drain: the retry
// hint last), while their writers write them: each is released; each
// client that stays receives the events in order, with none missing, up
// to its close, then the retry hint, then the end of its stream.
func TestShardedClientsLeaveWhileWritten(t *testing.T) {
	const clients, events = 90, 5000
	mem := tasksTier()
	s := writerStack(t, mem, nil)
	cs := connectAll(s, clients)
	var leaving, staying []*sseClient
	for i, c := range cs {
		if i%3 == 0 { // on every writer
			leaving = append(leaving, c)
		} else {
			staying = append(staying, c)
		}
	}
	want := make([]string, events)
	for i := range want {
		want[i] = fmt.Sprintf("k%d=%d", i%17, i)
	}
	go func() {
		for i, v := range want { // far faster than the feed writes them: they queue in its channel
			mem.Produce("tasks", int32(i%3), fmt.Sprintf("k%d", i%17), []byte(v), fixedNow.UnixMilli())
		}
	}()
	for _, c := range leaving {
		if _, err := c.next(20 * time.Second); err != nil { // being written
			t.Fatal(err)
		}
		c.close()
	}
	eventually(t, 20*time.Second, "the clients that hung up released", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == float64(len(staying))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.edge.Drain(ctx, 0); err != nil {
		t.Fatalf("drain: %v", err)
	}
	least, most := events, 0
	for _, c := range staying {
		n := readPrefix(t, c, want)
		least, most = min(least, n), max(most, n)
	}
	t.Logf("drained after %d to %d of %d events; %d shares written by writer goroutines", least, most, events, edge.WriterJobs(s.edge))
	eventually(t, 10*time.Second, "every client released", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0
	})
}

// readPrefix reads c's events until its stream ends: they must be want's
// first ones, in order, then a retry hint. It returns how many it read.
func readPrefix(t *testing.T, c *sseClient, want []string) int {
	t.Helper()
	n := 0
	for {
		ev, err := c.next(20 * time.Second)
		if errors.Is(err, errStreamEnded) {
			t.Fatalf("stream ended after %d events without the retry hint", n)
		}
		if err != nil {
			t.Fatalf("after %d events: %v", n, err)
		}
		if ev.Retry != "" && !ev.HasData {
			if _, err := c.next(20 * time.Second); !errors.Is(err, errStreamEnded) {
				t.Fatalf("after the retry hint: %v, want the stream's end", err)
			}
			return n
		}
		if n >= len(want) || ev.Data != want[n] {
			t.Fatalf("event %d: %q, want %q", n, ev.Data, want[min(n, len(want)-1)])
		}
		n++
	}
}

// Clients that stop reading, on different writers, are each conflated by
// their own writer's flushes: when they read again they get the newest
// value per key, each key's values in order, and end with exactly the
// topic's state; none is cut off, and a client that reads is not held
// back meanwhile.
func TestShardedSlowClientsConflateToTheTopicsState(t *testing.T) {
	const slowClients, keys, rounds, valueBytes = 8, 4, 64, 32 << 10 // 8 MiB a client: more than its socket holds
	mem := tasksTier()
	// Bound by bytes: a stalled client conflates past 1 MiB queued, 32 frames.
	s := writerStack(t, mem, func(c *edge.Config) { c.MaxQueueBytes = 1 << 20 })
	addr := strings.TrimPrefix(s.url, "http://")
	// A small receive buffer, set before connecting, fills the edge's
	// socket sooner (as in TestStalledClientDoesNotSlowOthers).
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	slow := make([]*ssetest.Reader, slowClients)
	for i := range slow {
		conn, err := dialer.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n")
		br := bufio.NewReader(conn)
		if _, err := http.ReadResponse(br, nil); err != nil {
			t.Fatal(err)
		}
		slow[i] = ssetest.NewReader(br)
		for { // the state part, then no more reading
			ev, err := slow[i].Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Event == "ready" {
				break
			}
		}
	}
	fast := connectAll(s, 1)[0]
	if got := edge.WriterShares(s.edge, "tasks"); !slices.Equal(got, []int{3, 2, 2, 2}) {
		t.Fatalf("clients per writer %v, want two slow clients on each", got)
	}
	final := map[string]string{"a": "a0"}
	big := strings.Repeat("x", valueBytes)
	for r := range rounds {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			final[key] = fmt.Sprintf("%d:%s", r, big)
			mem.Produce("tasks", int32(k%3), key, []byte(key+"="+final[key]), fixedNow.UnixMilli())
		}
		for range keys { // the reading client keeps up
			fast.mustNext()
		}
	}
	for i, rd := range slow {
		view, events := map[string]string{"a": "a0"}, 0
		for !maps.Equal(view, final) {
			ev, err := rd.Next()
			if err != nil {
				got := map[string]int{}
				for k, v := range view {
					got[k] = roundOf(v)
				}
				t.Fatalf("slow client %d, after %d events: %v (rounds %v)", i, events, err, got)
			}
			if !ev.HasData {
				continue
			}
			key, value, _ := strings.Cut(ev.Data, "=")
			if old, ok := view[key]; ok && key != "a" && roundOf(value) <= roundOf(old) {
				t.Fatalf("slow client %d: %s's round %d after %d", i, key, roundOf(value), roundOf(old))
			}
			view[key] = value
			events++
		}
		if events >= rounds*keys {
			t.Fatalf("slow client %d got all %d events: not conflated", i, events)
		}
		t.Logf("slow client %d: %d events for %d changes", i, events, rounds*keys)
	}
	if n := s.edgeCounter("ssekafka_edge_overflow_disconnects_total"); n != 0 {
		t.Fatalf("%v clients cut off, want none (few keys: conflated)", n)
	}
	if s.edgeCounter("ssekafka_edge_frames_conflated_total") == 0 {
		t.Fatal("nothing conflated")
	}
}

// roundOf is the round a value of TestShardedSlowClientsConflateToTheTopicsState was written in.
func roundOf(v string) int {
	var r int
	_, _ = fmt.Sscanf(v, "%d:", &r)
	return r
}
