package edge_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// warnLog is a logger that passes every line to the test's log and keeps
// the WARN and ERROR lines.
type warnLog struct {
	t     *testing.T
	mu    sync.Mutex
	warns []string
}

func (w *warnLog) Write(b []byte) (int, error) {
	line := strings.TrimSuffix(string(b), "\n")
	w.t.Log(line)
	if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
		w.mu.Lock()
		w.warns = append(w.warns, line)
		w.mu.Unlock()
	}
	return len(b), nil
}

func (w *warnLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (w *warnLog) lines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warns...)
}

// countHeads counts the heads published on a partition's live subject from
// now on.
func (s *stack) countHeads(topic string, partition int32) *atomic.Int64 {
	s.t.Helper()
	var n atomic.Int64
	sub, err := s.connectNATS().Subscribe(proto.Subjects{Prefix: "ssekafka"}.Event(topic, partition), func(m *nats.Msg) {
		if proto.IsHead(m.Data) {
			n.Add(1)
		}
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// The head of an empty partition (Next 0) is what a healthy cache node says
// every HeadInterval: the edge takes it quietly, before and after the cache
// node restarts, and counts no bad change (the metric operators alert on).
func TestEmptyPartitionHeadsRaiseNoAlarm(t *testing.T) {
	logs := &warnLog{t: t}
	fastHeads := func(c *cache.Config) { c.HeadInterval = 20 * time.Millisecond }
	s := newStack(t, stackOptions{cacheCfg: fastHeads, edgeCfg: func(c *edge.Config) { c.Logger = logs.logger() }})
	s.produce("tasks", rec(0, "k0", "v0")) // partitions 1 and 2 stay empty
	c := s.connect("/tasks", nil)
	c.untilReady()

	quiet := func(when string) {
		t.Helper()
		heads := s.countHeads("tasks", 2)
		eventually(t, 10*time.Second, "heads of the empty partition", func() bool { return heads.Load() >= 10 })
		if n := s.edgeCounter("ssekafka_edge_bad_changes_total"); n != 0 {
			t.Fatalf("%s: bad_changes_total %v, want 0: heads of empty partitions counted as forged", when, n)
		}
		if w := logs.lines(); len(w) > 0 {
			t.Fatalf("%s: %d WARN lines, want none; first: %s", when, len(w), w[0])
		}
	}
	quiet("heads of a running cache")

	s.stopCache()
	s.startCache(fastHeads)
	quiet("heads after the cache node restarted")

	// The feed still flows in the partitions that were empty.
	expectLiveIn(t, s, c, 1, "k1", "v1")
}

// expectLiveIn produces value to key in partition p and asserts the
// stream's next data event is exactly it.
func expectLiveIn(t *testing.T, s *stack, c *sseClient, p int32, key, value string) {
	t.Helper()
	s.produce("tasks", rec(p, key, value))
	ev, err := c.next(10 * time.Second)
	if err != nil {
		t.Fatalf("waiting for %s=%s: %v", key, value, err)
	}
	if ev.Event != "" || ev.Data != value {
		t.Fatalf("got event %q data %q, want the live change %q", ev.Event, ev.Data, value)
	}
}

// A live change far past the feed's position (the edge lost a burst of
// changes) whose head request a lagging holder answers is dropped and
// filled, but it came from a cache node: the next probe finds the tier
// holding it, and it is no bad change. A forged one is (see
// TestUnconfirmedHeadDoesNotStallTheFeed).
func TestFarChangeFromALaggingHolderIsNoBadChange(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, partitions: 1})
	lt := s.startLaggingTier("tasks")
	lt.add(9)
	c := s.connect("/tasks", nil)
	c.untilReady()
	lt.mu.Lock()
	lt.headLag, lt.lagAt = true, 10
	lt.mu.Unlock()
	ch := lt.add(2100) // 10..2099 lost to this edge
	ch.From = 2100
	pub := s.connectNATS()
	if err := pub.Publish(lt.subject.Event("tasks", 0), proto.AppendChange(nil, &ch)); err != nil {
		t.Fatal(err)
	}
	for i := 10; i <= 2100; i++ {
		if ev := c.mustNext(); ev.Data != fmt.Sprintf("v%d", i) {
			t.Fatalf("got %q, want v%d", ev.Data, i)
		}
	}
	lt.mu.Lock()
	lagged := lt.lagged
	lt.mu.Unlock()
	if lagged != 1 {
		t.Fatalf("the lagging holder answered %d times, want 1: the test did not exercise it", lagged)
	}
	requests := s.stateRequests()
	eventually(t, 10*time.Second, "two probes after the fill", func() bool { return s.stateRequests() >= requests+2 })
	if n := s.edgeCounter("ssekafka_edge_bad_changes_total"); n != 0 {
		t.Fatalf("bad_changes_total %v, want 0: a change the cache tier holds was counted as forged", n)
	}
}
