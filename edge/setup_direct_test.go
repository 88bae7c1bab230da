package edge_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
)

// directStack is a stack whose streams run on net/http's goroutines, not
// on the edge's own path: HTTP/2 over TLS (Edge.Serve hands the connection
// to net/http), or every stream of an edge served by net/http (ServeHTTP).
func directStack(t *testing.T, h2 bool, tweak func(*edge.Config)) *stack {
	t.Helper()
	if h2 {
		s, _, _ := tlsStackWith(t, true, stackOptions{}, tweak)
		return s
	}
	return newStack(t, stackOptions{viaNetHTTP: true, edgeCfg: tweak})
}

// directModes are the two ways a stream runs on net/http's goroutine.
var directModes = []struct {
	name string
	h2   bool
}{{"h2", true}, {"net-http", false}}

// opened is what openAsync sends: a stream, or why there is none.
type opened struct {
	c      *sseClient
	status int
	err    error
}

// openAsync opens a stream under ctx in the background (its response
// header comes only once its state part has begun).
func (s *stack) openAsync(ctx context.Context, path string) <-chan opened {
	got := make(chan opened, 1)
	go func() {
		c, status, err := s.request(ctx, path, nil)
		got <- opened{c, status, err}
	}()
	return got
}

// countAnswered passes on what got brings, counting in n the streams
// answered 200 as they are.
func countAnswered(got <-chan opened, n *atomic.Int32) <-chan opened {
	counted := make(chan opened, 1)
	go func() {
		o := <-got
		if o.err == nil && o.status == http.StatusOK {
			n.Add(1)
		}
		counted <- o
	}()
	return counted
}

// receive waits for a stream openAsync opened.
func receive(t *testing.T, got <-chan opened, what string) *sseClient {
	t.Helper()
	select {
	case o := <-got:
		if o.err != nil || o.status != http.StatusOK {
			t.Fatalf("%s: status %d, %v", what, o.status, o.err)
		}
		return o.c
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no response header", what)
	}
	return nil
}

// Streams on net/http's goroutines (HTTP/2; an edge under net/http) take
// a setup slot for their state part as the streams Serve reads itself do:
// a burst of 6 with SetupConcurrency 2 has at most 2 in their state part
// at once and the others waiting in the setup queue (before, HTTP/2 setups
// were not bounded: 6 ran at once, and a burst of 10,000 ran 10,000
// against the cache tier), and each then gets its full state, ready and
// a live change.
func TestDirectStreamSetupsAreBounded(t *testing.T) {
	for _, mode := range directModes {
		t.Run(mode.name, func(t *testing.T) {
			const streams, slots = 6, 2
			release := make(chan struct{})
			var once sync.Once
			s := directStack(t, mode.h2, func(c *edge.Config) {
				c.SetupConcurrency = slots
				// State pages are held: a stream in its state part stays there.
				edge.HoldStatePages(c, func(int32, int64) { <-release })
			})
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"), rec(2, "c", "3"))
			// A stream's response header comes as its state part begins
			// (with the retry hint, before its first page): the streams
			// answered are those in their state part, and none leaves it
			// while pages are held, so their count is the most at once.
			var inState atomic.Int32
			var streamsOpened []<-chan opened
			for range streams {
				streamsOpened = append(streamsOpened, countAnswered(s.openAsync(context.Background(), "/tasks"), &inState))
			}
			current := func() int { return int(inState.Load()) }
			eventually(t, 10*time.Second, "every stream in its state part or waiting for a slot", func() bool {
				return current()+int(s.gauge("ssekafka_edge_setup_waiting")) == streams
			})
			if got := current(); got > slots {
				t.Fatalf("%d streams in their state part at once, SetupConcurrency %d", got, slots)
			}
			once.Do(func() { close(release) })
			var clients []*sseClient
			for i, o := range streamsOpened {
				c := receive(t, o, "stream")
				if c.resp.ProtoMajor != map[bool]int{true: 2, false: 1}[mode.h2] {
					t.Fatalf("stream %d over %s", i, c.resp.Proto)
				}
				evs := c.untilReady()
				var data []string
				for _, ev := range evs[1 : len(evs)-1] { // after the retry, before ready
					data = append(data, ev.Data)
				}
				if strings.Join(data, ",") != "1,2,3" {
					t.Fatalf("stream %d: state %q, want 1,2,3", i, data)
				}
				clients = append(clients, c)
			}
			s.produce("tasks", rec(0, "a", "live"))
			for i, c := range clients {
				if ev := c.mustNext(); ev.Data != "live" {
					t.Fatalf("stream %d: live change %+v", i, ev)
				}
			}
			if got := s.gauge("ssekafka_edge_setup_waiting"); got != 0 {
				t.Fatalf("%v streams still waiting", got)
			}
		})
	}
}

// A stream on net/http's goroutine gives its setup slot back however its
// setup ends (an error, a refusal, its client gone in its state part), and
// one whose client goes while it waits leaves the queue: with one slot, the
// streams after each still start.
func TestDirectStreamSetupSlotReleasedOnEveryExit(t *testing.T) {
	for _, mode := range directModes {
		t.Run(mode.name, func(t *testing.T) {
			held := make(chan struct{}, 1)
			release := make(chan struct{})
			var once sync.Once
			// The next stream's setup is held: its topic's feed starts with
			// a metadata request, held until release.
			var armed atomic.Bool
			hold := &tiertest.Holding{BeforeMeta: func() {
				if armed.CompareAndSwap(true, false) {
					held <- struct{}{}
					<-release
				}
			}}
			s := directStack(t, mode.h2, func(c *edge.Config) {
				c.SetupConcurrency, c.SetupQueue, c.Retry = 1, 2, 200*time.Millisecond
				edge.HoldTier(c, hold)
			})
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			s.produce("tasks", rec(0, "a", "1"))

			// An error: a topic that does not exist is answered 404.
			if _, status := s.open("/t/nosuch", nil); status != http.StatusNotFound {
				t.Fatalf("missing topic: status %d, want 404", status)
			}

			// The next stream holds the only slot, in its setup (its feed
			// starting); two more wait for it.
			armed.Store(true)
			inSetupCtx, leaveInSetup := context.WithCancel(context.Background())
			defer leaveInSetup()
			s.openAsync(inSetupCtx, "/tasks")
			select {
			case <-held:
			case <-time.After(10 * time.Second):
				t.Fatal("no setup began")
			}
			waitingCtx, leaveWaiting := context.WithCancel(context.Background())
			defer leaveWaiting()
			s.openAsync(waitingCtx, "/tasks")
			eventually(t, 10*time.Second, "a stream waiting", func() bool { return s.gauge("ssekafka_edge_setup_waiting") == 1 })
			next := s.openAsync(context.Background(), "/tasks")
			eventually(t, 10*time.Second, "two streams waiting", func() bool { return s.gauge("ssekafka_edge_setup_waiting") == 2 })

			// A refusal: the queue is full.
			refused := s.connect("/tasks", nil)
			select {
			case <-refused.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the refused stream did not end")
			}
			body := refused.rawStream()
			if !strings.HasPrefix(body, ": setup queue full\nretry:") {
				t.Fatalf("refusal %q, want the setup queue full", body)
			}
			if n := s.refusals(s.edgeReg, "queue_full"); n != 1 {
				t.Fatalf("refusals{queue_full} = %v, want 1", n)
			}

			// A waiting stream whose client goes leaves the queue.
			leaveWaiting()
			eventually(t, 10*time.Second, "the gone stream to leave the queue", func() bool {
				return s.gauge("ssekafka_edge_setup_waiting") == 1
			})

			// The stream in its setup loses its client: the edge sees it go
			// and gives its slot back, and the last stream starts (served
			// once the feed's start is let go).
			leaveInSetup()
			eventually(t, 10*time.Second, "the edge to see the client go and give its slot to the last stream", func() bool {
				return s.gauge("ssekafka_edge_setup_waiting") == 0
			})
			once.Do(func() { close(release) })
			c := receive(t, next, "the last stream")
			if evs := c.untilReady(); len(evs) != 3 || evs[1].Data != "1" { // retry, a, ready
				t.Fatalf("the last stream: %+v", evs)
			}
			if got := s.gauge("ssekafka_edge_setup_waiting"); got != 0 {
				t.Fatalf("%v streams still waiting", got)
			}
			c.close()
			s.waitNoClients()
		})
	}
}
