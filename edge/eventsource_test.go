package edge_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
)

// eventSource is a real EventSource client (the npm eventsource package,
// run by test/eventsource/client.mjs) and the key→value view it holds.
type eventSource struct {
	t     *testing.T
	stdin io.WriteCloser
	done  chan struct{}

	mu     sync.Mutex
	view   map[string]string
	opens  int // streams opened (the first, then each reconnect)
	errors int // streams that ended or failed
	readys int
	resets int
	closed bool // gave up for good: readyState CLOSED
	lastID string
	log    []string
}

// esLine is one line client.mjs prints.
type esLine struct {
	T, Type, ID, Data, Message string
	ReadyState                 int
}

// startEventSource runs client.mjs against url (args after it: an
// Accept-Encoding to send instead of Node's). It skips the test when node
// or the package's node_modules is missing (`npm ci` in test/eventsource),
// unless SSEKAFKA_EVENTSOURCE=required or CI is set (.ci/run installs both).
func startEventSource(t *testing.T, url string, args ...string) *eventSource {
	t.Helper()
	dir, err := filepath.Abs("../test/eventsource")
	if err != nil {
		t.Fatal(err)
	}
	// .ci/run sets SSEKAFKA_EVENTSOURCE=required: there a missing client fails.
	skip := t.Skip
	if os.Getenv("SSEKAFKA_EVENTSOURCE") == "required" || os.Getenv("CI") != "" {
		skip = t.Fatal
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not installed: the EventSource tests need Node 20 and `npm ci` in test/eventsource")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "eventsource")); err != nil {
		skip("test/eventsource/node_modules is missing: run `npm ci` in test/eventsource")
	}
	cmd := exec.Command(node, append([]string{"client.mjs", url}, args...)...)
	cmd.Dir = dir
	cmd.Stderr = testWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	es := &eventSource{t: t, stdin: stdin, done: make(chan struct{}), view: map[string]string{}}
	go es.read(stdout)
	t.Cleanup(func() {
		_ = stdin.Close() // client.mjs exits when its stdin closes
		select {
		case <-es.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
		_ = cmd.Wait()
	})
	return es
}

func (es *eventSource) read(r io.Reader) {
	defer close(es.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l esLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			es.t.Errorf("client.mjs printed %q: %v", sc.Text(), err)
			continue
		}
		es.mu.Lock()
		es.log = append(es.log, sc.Text())
		switch l.T {
		case "open":
			es.opens++
		case "error":
			es.errors++
		case "closed":
			es.closed = true
		case "event":
			es.apply(l)
		}
		es.mu.Unlock()
	}
}

// apply changes the view as an application would. The caller holds es.mu.
func (es *eventSource) apply(l esLine) {
	switch l.Type {
	case "ready":
		es.readys++
		return
	case "reset":
		es.resets++
		clear(es.view)
		return
	}
	es.lastID = l.ID
	var parts []*string
	if err := json.Unmarshal([]byte(l.ID), &parts); err != nil || len(parts) != 2 || parts[0] == nil {
		es.t.Errorf("event %s with id %q: not a keyed id", l.Type, l.ID)
		return
	}
	key, err := base64.URLEncoding.DecodeString(*parts[0])
	if err != nil {
		es.t.Errorf("id %q: %v", l.ID, err)
		return
	}
	if l.Type == "delete" {
		delete(es.view, string(key))
	} else {
		es.view[string(key)] = l.Data
	}
}

// state is a copy of what the client holds.
func (es *eventSource) state() (view map[string]string, opens, readys int, closed bool) {
	es.mu.Lock()
	defer es.mu.Unlock()
	return maps.Clone(es.view), es.opens, es.readys, es.closed
}

// waitFor polls until cond holds for the client, failing if it gave up.
func (es *eventSource) waitFor(what string, cond func(view map[string]string, opens, readys int) bool) {
	es.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		view, opens, readys, closed := es.state()
		if closed {
			es.fatal("the EventSource gave up (readyState CLOSED) waiting for " + what)
		}
		if cond(view, opens, readys) {
			return
		}
		if time.Now().After(deadline) {
			es.fatal("timeout waiting for " + what)
		}
		time.Sleep(10 * time.Millisecond) // polling the client's report
	}
}

func (es *eventSource) fatal(msg string) {
	es.t.Helper()
	es.mu.Lock()
	defer es.mu.Unlock()
	for _, l := range es.log {
		es.t.Log("client.mjs: " + l)
	}
	es.t.Fatalf("%s; view %v, %d opens, %d readys", msg, es.view, es.opens, es.readys)
}

// exactly waits until the client holds want (and has seen ready) and
// checks it never gave up.
func (es *eventSource) exactly(want map[string]string) {
	es.t.Helper()
	es.waitFor("the exact state", func(view map[string]string, _, readys int) bool {
		return readys > 0 && maps.Equal(view, want)
	})
}

// produceKeys writes key=value records to tasks and notes them in want.
func (s *stack) produceKeys(want map[string]string, kv ...string) {
	s.t.Helper()
	for i := 0; i < len(kv); i += 2 {
		s.produce("tasks", rec(int32(i/2%3), kv[i], kv[i+1]))
		want[kv[i]] = kv[i+1]
	}
}

// esOptions keep reconnects quick: the stream's retry and the refusals'
// (drawn from [Retry, 2·Retry]) are 100 ms to 200 ms.
func esOptions(tweak func(*edge.Config)) stackOptions {
	return stackOptions{edgeCfg: func(c *edge.Config) {
		c.Retry, c.ReadyProbe = 100*time.Millisecond, 50*time.Millisecond
		if tweak != nil {
			tweak(c)
		}
	}}
}

// Cache tier down: a new EventSource is refused again and again while the
// cache is away, without giving up, then gets the exact state and live
// changes once it is back.
func TestEventSourceSurvivesCacheTierDown(t *testing.T) {
	s := newStack(t, esOptions(nil))
	want := map[string]string{}
	s.produceKeys(want, "a", "1", "b", "2", "c", "3")
	s.stopCache()
	es := startEventSource(t, s.url+"/keyed")
	es.waitFor("two refusals of the same client", func(map[string]string, int, int) bool {
		return s.refusals(s.edgeReg, "cache_unavailable") >= 2
	})
	s.startCache(nil)
	es.exactly(want)
	s.produceKeys(want, "a", "4", "d", "5")
	es.exactly(want)
}

// Feed restart: a topic feed that ends (as on a topic change) disconnects
// its clients; the EventSource comes back with its Last-Event-ID and holds
// the exact state, changes made while it was away included.
func TestEventSourceSurvivesFeedRestart(t *testing.T) {
	s := newStack(t, esOptions(nil))
	want := map[string]string{}
	s.produceKeys(want, "a", "1", "b", "2")
	es := startEventSource(t, s.url+"/keyed")
	es.exactly(want)
	edge.FailFeeds(s.edge)
	s.produceKeys(want, "b", "3", "c", "4")
	es.waitFor("a reconnect", func(_ map[string]string, opens, _ int) bool { return opens >= 2 })
	es.exactly(want)
	s.produceKeys(want, "e", "5")
	es.exactly(want)
	if _, _, readys, _ := es.state(); readys < 2 {
		t.Fatalf("%d readys, want one per stream", readys)
	}
}

// Full setup queue: the EventSource is refused (it used to get 503 and give
// up), comes back by itself, and is served once the queue has room.
func TestEventSourceSurvivesFullSetupQueue(t *testing.T) {
	release, held := make(chan struct{}), make(chan struct{}, 8)
	var once sync.Once
	o := esOptions(func(c *edge.Config) {
		c.SetupConcurrency, c.SetupQueue = 1, 1
		// A stream's first state page is held: its setup slot stays taken.
		edge.HoldStatePages(c, func(int32, int64) {
			select {
			case <-release:
			default:
				held <- struct{}{}
				<-release
			}
		})
	})
	s := newStack(t, o)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	want := map[string]string{}
	s.produceKeys(want, "a", "1", "b", "2")
	rawGet(t, s.url, "/tasks") // holds the worker
	<-held
	rawGet(t, s.url, "/tasks") // waits in the queue
	eventually(t, 10*time.Second, "a queued stream", func() bool { return s.gauge("ssekafka_edge_setup_waiting") == 1 })
	es := startEventSource(t, s.url+"/keyed")
	es.waitFor("two refusals of the client", func(map[string]string, int, int) bool {
		return s.refusals(s.edgeReg, "queue_full") >= 2
	})
	once.Do(func() { close(release) })
	es.exactly(want)
	s.produceKeys(want, "c", "3")
	es.exactly(want)
}

// Drain: behind a load balancer that moves traffic to another edge once the
// first is not ready, the EventSource's stream is closed with a final
// retry, it is refused by the draining edge, and it resumes from its
// Last-Event-ID on the other edge with the exact state.
func TestEventSourceSurvivesDrain(t *testing.T) {
	s := newStack(t, esOptions(nil))
	other := s.addEdge()
	lb := newBalancer(t, s.url, other.url)
	want := map[string]string{}
	s.produceKeys(want, "a", "1", "b", "2")
	es := startEventSource(t, lb.url+"/keyed")
	es.exactly(want)
	drained := make(chan error, 1)
	go func() { drained <- s.edge.Drain(t.Context(), 300*time.Millisecond) }()
	s.produceKeys(want, "b", "3", "c", "4") // while it drains, or after
	es.waitFor("the EventSource refused by the draining edge", func(map[string]string, int, int) bool {
		return s.refusals(s.edgeReg, "draining") >= 1
	})
	lb.moveOn() // a load balancer sees /_ssekafka/ready fail and moves on
	es.exactly(want)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	s.produceKeys(want, "d", "5")
	es.exactly(want)
	if n := s.edgeCounter("ssekafka_edge_drain_closed_total"); n != 1 {
		t.Fatalf("drain_closed_total %v, want 1", n)
	}
	if _, _, _, closed := es.state(); closed {
		t.Fatal("the EventSource gave up")
	}
}

// runningEdge is a second edge on the stack's NATS.
type runningEdge struct {
	edge *edge.Edge
	url  string
}

func (s *stack) addEdge() runningEdge {
	s.t.Helper()
	e, url := s.serveAnotherEdge([]edge.RouteConfig{
		{Paths: []string{"/tasks"}, Topic: "tasks"},
		{Paths: []string{"/keyed"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`},
	}, edge.Config{Logger: testLogger(s.t), Retry: 100 * time.Millisecond,
		Now: func() time.Time { return fixedNow }, Registerer: prometheus.NewRegistry(), ProbeInterval: 200 * time.Millisecond, PageTimeout: 500 * time.Millisecond}, nil)
	return runningEdge{edge: e, url: url}
}

// balancer is a TCP load balancer with two backends: it sends every new
// connection to the first until moveOn, then to the second.
type balancer struct {
	url   string
	moved atomic.Bool
}

func newBalancer(t *testing.T, first, second string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	b := &balancer{url: "http://" + ln.Addr().String()}
	hostOf := func(u string) string { return u[len("http://"):] }
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			target := hostOf(first)
			if b.moved.Load() {
				target = hostOf(second)
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); _ = up.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, up)
			}()
		}
	}()
	return b
}

func (b *balancer) moveOn() { b.moved.Store(true) }
