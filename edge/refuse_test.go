package edge_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
)

// refusals is ssekafka_edge_refusals_total{reason} in reg.
func (s *stack) refusals(reg *prometheus.Registry, reason string) float64 {
	s.t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ssekafka_edge_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// rawGet sends a GET for path on a connection of its own and returns it
// with a reader of the response.
func rawGet(t *testing.T, url, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

var refusalResponse = regexp.MustCompile(`^HTTP/1\.1 200 OK\r\n(?:[^\r\n]+\r\n)*\r\n: ([a-z ]+)\nretry:(\d+)\n\n$`)

// readRefusal reads a whole response (the edge closes it) and checks it is
// a refusal for reason with a retry in [lo, hi].
func readRefusal(t *testing.T, conn net.Conn, br *bufio.Reader, reason string, lo, hi int) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the refusal: %v (got %q)", err, b)
	}
	checkRefusal(t, string(b), reason, lo, hi)
}

func checkRefusal(t *testing.T, resp, reason string, lo, hi int) {
	t.Helper()
	m := refusalResponse.FindStringSubmatch(resp)
	if m == nil || !strings.Contains(resp, "\r\nContent-Type: text/event-stream\r\n") {
		t.Fatalf("response %q, want a 200 text/event-stream refusal", resp)
	}
	var ms int
	for _, d := range m[2] {
		ms = 10*ms + int(d-'0')
	}
	if m[1] != reason || ms < lo || ms > hi {
		t.Fatalf("refusal %q retry %d, want %q with a retry in [%d, %d]", m[1], ms, reason, lo, hi)
	}
}

// netHTTPGet is a GET through net/http's client, whole response as bytes.
func netHTTPGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + resp.Status + "\r\n")
	b.WriteString("Content-Type: " + resp.Header.Get("Content-Type") + "\r\n\r\n")
	b.Write(body)
	return b.String()
}

// With the cache tier down, a new topic's stream is refused with 200, the
// reason and a spread retry, on both serving paths; 404 stays for what a
// retry cannot fix.
func TestRefusedWhileCacheTierDown(t *testing.T) {
	for _, viaNetHTTP := range []bool{false, true} {
		s := newStack(t, stackOptions{viaNetHTTP: viaNetHTTP, edgeCfg: func(c *edge.Config) { c.Retry = 300 * time.Millisecond }})
		s.stopCache()
		if viaNetHTTP {
			checkRefusal(t, netHTTPGet(t, s.url+"/tasks"), "cache tier unavailable", 300, 600)
		} else {
			conn, br := rawGet(t, s.url, "/tasks")
			readRefusal(t, conn, br, "cache tier unavailable", 300, 600)
		}
		if n := s.refusals(s.edgeReg, "cache_unavailable"); n != 1 {
			t.Fatalf("refusals{cache_unavailable} = %v, want 1", n)
		}
		if _, status := s.open("/nowhere", nil); status != http.StatusNotFound {
			t.Fatalf("unknown path: %d, want 404", status)
		}
	}
}

// A full setup queue refuses the next stream with 200 (it used to be 503,
// which ends a browser's EventSource for good).
func TestRefusedWhileSetupQueueFull(t *testing.T) {
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
	// One stream holds the only worker, the next waits in the queue.
	rawGet(t, s.url, "/tasks")
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no setup started")
	}
	rawGet(t, s.url, "/tasks")
	eventually(t, 10*time.Second, "a queued stream", func() bool { return s.gauge("ssekafka_edge_setup_waiting") == 1 })
	conn, br := rawGet(t, s.url, "/tasks")
	readRefusal(t, conn, br, "setup queue full", 200, 400)
	if n := s.refusals(s.edgeReg, "queue_full"); n != 1 {
		t.Fatalf("refusals{queue_full} = %v, want 1", n)
	}
}

func (s *stack) gauge(name string) float64 {
	s.t.Helper()
	mfs, err := s.edgeReg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	s.t.Fatalf("no gauge %s", name)
	return 0
}

// Drain ends a live stream with a final retry, refuses new ones with 200,
// makes the edge not ready, and returns once no stream is left.
func TestDrainClosesWithRetryAndRefuses(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(map[bool]string{false: "hijacked", true: "ResponseWriter"}[noHijack], func(t *testing.T) {
			testDrain(t, noHijack)
		})
	}
}

func testDrain(t *testing.T, noHijack bool) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.Retry, c.NoHijack = 500*time.Millisecond, noHijack }})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	if ok, why := s.edge.Ready(); !ok {
		t.Fatalf("not ready before the drain: %s", why)
	}
	done := make(chan error, 1)
	go func() { done <- s.edge.Drain(context.Background(), 200*time.Millisecond) }()
	ev := c.mustNext()
	if ev.Raw != "retry:500\n\n" {
		t.Fatalf("last block %q, want retry:500", ev.Raw)
	}
	if _, err := c.next(5 * time.Second); err != errStreamEnded {
		t.Fatalf("after the final retry: %v, want the stream to end", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return once its stream was gone")
	}
	if ok, why := s.edge.Ready(); ok || why != "draining" {
		t.Fatalf("Ready() = %v %q while draining", ok, why)
	}
	conn, br := rawGet(t, s.url, "/tasks?lastEventId=x")
	readRefusal(t, conn, br, "edge draining", 500, 1000)
	if n := s.refusals(s.edgeReg, "draining"); n != 1 {
		t.Fatalf("refusals{draining} = %v, want 1", n)
	}
	if n := s.edgeCounter("ssekafka_edge_drain_closed_total"); n != 1 {
		t.Fatalf("drain_closed_total = %v, want 1", n)
	}
}

// Drain spreads its closes over the window: of 6 streams, the first goes
// at once and the last not before 5/6 of the window.
func TestDrainSpreadsOverTheWindow(t *testing.T) {
	s := newStack(t, stackOptions{viaNetHTTP: true})
	var cs []*sseClient
	for range 6 {
		c := s.connect("/tasks", nil)
		c.untilReady()
		cs = append(cs, c)
	}
	window := 1200 * time.Millisecond
	start := time.Now()
	go func() { _ = s.edge.Drain(context.Background(), window) }()
	ends := make([]time.Duration, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			<-c.done
			ends[i] = time.Since(start)
		})
	}
	wg.Wait()
	slow, fast := ends[0], ends[0]
	for _, d := range ends {
		slow, fast = max(slow, d), min(fast, d)
	}
	if slow < window*5/6 {
		t.Fatalf("streams ended after %v: all within %v, want spread over %v", ends, slow, window)
	}
	if fast > window/2 {
		t.Fatalf("streams ended after %v: the first only after %v", ends, fast)
	}
}

// Ready is false while the cache tier does not answer, true again once it does.
func TestReadyFollowsTheCacheTier(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.ReadyProbe = 50 * time.Millisecond }})
	eventually(t, 10*time.Second, "ready", func() bool { ok, _ := s.edge.Ready(); return ok })
	s.stopCache()
	eventually(t, 10*time.Second, "not ready without a cache", func() bool {
		ok, why := s.edge.Ready()
		return !ok && why == "cache tier does not answer"
	})
	s.startCache(nil)
	eventually(t, 10*time.Second, "ready again", func() bool { ok, _ := s.edge.Ready(); return ok })
	s.nats.Shutdown()
	eventually(t, 10*time.Second, "not ready without NATS", func() bool {
		ok, why := s.edge.Ready()
		return !ok && why == "nats disconnected"
	})
}
