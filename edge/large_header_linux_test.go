//go:build linux

package edge_test

// Issue 9: a request whose header exceeds the edge's
// 4 KiB peek buffer (a browser with large cookies) is handed to net/http,
// which serves it through the mux: it skips the setup queue, and its
// hijacked connection is a prefixedConn, not a syscall.Conn, so it gets no
// live socket and no hang-up watch.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
)

// bigCookie is a header line that pushes a request past the peek buffer.
var bigCookie = "Cookie: c=" + strings.Repeat("x", 5000) + "\r\n"

// A client with a large header that hangs up is released like any other.
func TestLargeHeaderClientReleasedOnHangup(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: noKeepAlive})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	conn := dial(t, addr)
	fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\n%s\r\n", bigCookie)
	br := bufio.NewReader(conn)
	readUntil(t, br, "event:ready\n")
	sockets := edgeSockets(t, addr, 1)
	_ = conn.Close()
	eventually(t, 5*time.Second, "the edge to release the large-header client", func() bool {
		return openSockets(t, sockets) == 0 && gauge(t, s.edgeReg, "ssekafka_edge_clients") == 0
	})
}

// A client with a large header is admitted through the setup queue like
// any other: with the only worker busy and the queue full, it is refused.
func TestLargeHeaderClientAdmittedThroughQueue(t *testing.T) {
	release, held := make(chan struct{}), make(chan struct{}, 8)
	var once sync.Once
	s := newStack(t, stackOptions{
		edgeCfg: func(c *edge.Config) {
			c.SetupConcurrency, c.SetupQueue, c.Retry = 1, 1, 200*time.Millisecond
			// A stream's first state page is held: its setup slot stays taken.
			edge.HoldStatePages(c, func(int32, int64) { held <- struct{}{}; <-release })
		},
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s.produce("tasks", rec(0, "a", "1"))
	rawGet(t, s.url, "/tasks")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no setup started")
	}
	rawGet(t, s.url, "/tasks")
	eventually(t, 10*time.Second, "a queued stream", func() bool { return s.gauge("ssekafka_edge_setup_waiting") == 1 })
	conn := dial(t, strings.TrimPrefix(s.url, "http://"))
	fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n%s\r\n", bigCookie)
	br := bufio.NewReader(conn)
	got, err := readUntilErr(br, "event:ready\n")
	if err == nil {
		t.Fatalf("a large-header stream was served while the setup queue was full (not admitted): %q", got)
	}
	checkRefusal(t, got, "setup queue full", 200, 400)
}

// A storm's resume from the ring (docs/architecture.md rules 7, 8) gives ready at the
// feed's position even when the feed lags what the cache tier held before
// the request came (its goroutine busy or behind on its NATS backlog, with
// its primary heard less than 3 s ago): ready before the client holds what
// the tier held. Here the feed is held on b1's message; a new client (the
// storm's first) waits for the feed, a resume that follows within a second
// is given ready at once without b1.
func TestStormRingReadyCoversWhatCacheHeld(t *testing.T) {
	var holding atomic.Bool
	release := make(chan struct{})
	var once sync.Once
	s := newStack(t, stackOptions{
		edgeCfg: func(c *edge.Config) {
			c.ProbeInterval = time.Minute
			edge.HoldFeeds(c, func() {
				if holding.Load() {
					<-release
				}
			})
		},
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	s.produce("tasks", rec(0, "a", "a1"))
	a := s.connect("/tasks", nil)
	a.untilReady()
	s.produce("tasks", rec(0, "a", "a2")) // a live change: the feed heard its primary just now
	ev := a.mustNext()
	if ev.Data != "a2" {
		t.Fatalf("live event %+v, want a2", ev)
	}
	p0 := ev.ID
	holding.Store(true)
	s.produce("tasks", rec(0, "b", "b1")) // applied by the cache; the feed is held

	requests := s.edgeCounter("ssekafka_edge_state_requests_total")
	b := s.connect("/tasks", nil)
	eventually(t, 5*time.Second, "the new client's state request", func() bool {
		return s.edgeCounter("ssekafka_edge_state_requests_total") > requests
	})
	// The feed is let go after a while: a correct ready waits for it (the
	// live feed must cover the state part); a ring ready came at once.
	time.AfterFunc(500*time.Millisecond, func() { once.Do(func() { close(release) }) })
	c := s.connect("/tasks", http.Header{"Last-Event-ID": {p0}})
	got := c.untilReady()
	for _, ev := range got {
		if ev.Data == "b1" {
			b.close()
			return
		}
	}
	t.Fatalf("resume from %s got ready without b1, which the cache held before it asked: %+v", p0, got)
}

// Observed answers to HEAD and a CORS preflight on an SSE route: 405 with
// Allow: GET and no CORS headers (documented, not a failure).
func TestHeadAndPreflightOnStreamRouteAre405(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"))
	for _, req := range []string{
		"HEAD /tasks HTTP/1.1\r\nHost: edge\r\n\r\n",
		"OPTIONS /tasks HTTP/1.1\r\nHost: edge\r\nOrigin: http://other.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n",
	} {
		conn := dial(t, strings.TrimPrefix(s.url, "http://"))
		fmt.Fprint(conn, req)
		b, _ := io.ReadAll(conn)
		t.Logf("%q -> %q", strings.SplitN(req, "\r\n", 2)[0], b)
		if !strings.HasPrefix(string(b), "HTTP/1.1 405 ") {
			t.Errorf("%q: %q", req, b)
		}
	}
}

// A drain ends the streams still in their setup too: one whose setup waits
// on the cache tier (absent, asked again for up to RequestTimeout) keeps
// Drain from returning until its context ends.
func TestDrainEndsStreamInSetup(t *testing.T) {
	var cacheNC *nats.Conn
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.RequestTimeout = time.Minute },
		cacheCfg: func(c *cache.Config) { cacheNC = c.NATS }})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	first := s.connect("/tasks", nil) // keeps the feed up
	first.untilReady()
	s.stopCacheTier(cacheNC, "tasks")
	stuck := dial(t, addr)
	fmt.Fprintf(stuck, "GET /tasks HTTP/1.1\r\nHost: edge\r\n\r\n")
	eventually(t, 5*time.Second, "the stuck stream to join its feed", func() bool {
		return gauge(t, s.edgeReg, "ssekafka_edge_clients") == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := s.edge.Drain(ctx, 0); err != nil {
		t.Fatalf("Drain with window 0: %v after %v (a stream in its setup was never ended)", err, time.Since(t0))
	}
}
