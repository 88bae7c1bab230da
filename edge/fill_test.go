package edge_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// laggingTier is a cache tier of one partition spoken at the protocol level
// over the stack's NATS, so a test decides exactly what each state request
// is answered: the records it holds, and, once armed, one answer from a
// holder that lags (it has applied only lagAt records).
type laggingTier struct {
	mu      sync.Mutex
	recs    []proto.Record
	armed   bool
	headLag bool // answer the next head request as the lagging holder
	stuck   bool // answer every page "more follows" at the cursor asked for
	lagAt   int64
	lagged  int // answers given as the lagging holder
	epoch   uint32
	subject proto.Subjects
}

func (s *stack) startLaggingTier(topic string) *laggingTier {
	s.t.Helper()
	lt := &laggingTier{epoch: 7, subject: proto.Subjects{Prefix: "ssekafka"}}
	nc := s.connectNATS()
	meta, err := nc.Subscribe(lt.subject.Meta(topic), func(m *nats.Msg) {
		_ = m.Respond(proto.AppendMeta(nil, &proto.Meta{Status: proto.StatusOK, Epoch: lt.epoch, Partitions: 1, HorizonMs: 3600_000, CaughtUp: true}))
	})
	if err != nil {
		s.t.Fatal(err)
	}
	state, err := nc.QueueSubscribe(lt.subject.State(topic, 0), "cache", func(m *nats.Msg) {
		q, err := proto.DecodeStateRequest(m.Data)
		if err != nil {
			s.t.Error(err)
			return
		}
		lt.mu.Lock()
		next := int64(len(lt.recs))
		switch {
		case lt.armed && q.Since < next:
			lt.armed, next = false, lt.lagAt
			lt.lagged++
		case lt.headLag && q.Since == math.MaxInt64:
			lt.headLag, next = false, lt.lagAt
			lt.lagged++
		}
		page := proto.StatePage{Status: proto.StatusOK, Epoch: lt.epoch, Partition: 0, Next: next, Cursor: q.Since}
		for _, r := range lt.recs[:next] {
			if r.Offset >= q.Since {
				page.Records = append(page.Records, r)
				page.Cursor = r.Offset + 1
			}
		}
		if lt.stuck && q.Since != math.MaxInt64 {
			page.Records, page.More, page.Cursor = nil, true, q.Since
		}
		lt.mu.Unlock()
		_ = m.Respond(proto.AppendStatePage(nil, &page))
	})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = meta.Unsubscribe(); _ = state.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		s.t.Fatal(err)
	}
	return lt
}

// add applies records up to offset last (values "v<offset>") and returns
// the change of the last one, as its primary publishes it.
func (lt *laggingTier) add(last int64) proto.Change {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for o := int64(len(lt.recs)); o <= last; o++ {
		lt.recs = append(lt.recs, proto.Record{Offset: o, TimeMs: fixedNow.UnixMilli(), Key: fmt.Appendf(nil, "k%d", o),
			Value: fmt.Appendf(nil, "v%d", o), Etag: fmt.Sprint("e", o)})
	}
	return proto.Change{Epoch: lt.epoch, Partition: 0, From: last, Record: lt.recs[last]}
}

// A live change past the feed's position makes the edge fill the gap. When
// the holder that answers lags (it stands at 10 while the primary published
// 12), the fill is not complete: the edge asks again, and clients get v10,
// v11, v12, never v12 alone (defect 1 of issue 8).
func TestFillFromLaggingHolderIsComplete(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, partitions: 1})
	lt := s.startLaggingTier("tasks")
	lt.add(9)
	c := s.connect("/tasks", nil)
	evs := c.untilReady()
	if len(evs) != 12 { // retry, v0..v9, ready
		t.Fatalf("%d events before ready, want 12: %+v", len(evs), evs)
	}
	// v10 and v11 were published and lost to this edge; v12 arrives.
	lt.mu.Lock()
	lt.armed, lt.lagAt = true, 10
	lt.mu.Unlock()
	ch := lt.add(12)
	ch.From = 12
	pub := s.connectNATS()
	if err := pub.Publish(lt.subject.Event("tasks", 0), proto.AppendChange(nil, &ch)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		ev, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		if ev.HasData {
			got = append(got, ev.Data)
		}
	}
	if fmt.Sprint(got) != "[v10 v11 v12]" {
		t.Fatalf("client got %q after the gap, want [v10 v11 v12]", got)
	}
	lt.mu.Lock()
	defer lt.mu.Unlock()
	if lt.lagged != 1 {
		t.Fatalf("the lagging holder answered %d times, want 1: the test did not exercise it", lt.lagged)
	}
	if ev, err := c.next(300 * time.Millisecond); err == nil && ev.HasData {
		t.Fatalf("unexpected %+v after the gap was filled", ev)
	}
}

// A head past anything the cache tier holds (stale, or from a hostile
// publisher) is checked with a head request; no holder confirms it, so the
// feed drops it, and the changes after it flow live, none paying a fill.
func TestUnconfirmedHeadDoesNotStallTheFeed(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, partitions: 1})
	lt := s.startLaggingTier("tasks")
	lt.add(9)
	c := s.connect("/tasks", nil)
	c.untilReady()
	pub := s.connectNATS()
	s.expectBadChanges()
	dropped := s.edgeCounter("ssekafka_edge_bad_changes_total")
	h := proto.Head{Epoch: lt.epoch, Partition: 0, Next: 1 << 40}
	if err := pub.Publish(lt.subject.Event("tasks", 0), proto.AppendHead(nil, &h)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the head not confirmed by the cache tier and dropped", func() bool {
		return s.edgeCounter("ssekafka_edge_bad_changes_total") > dropped
	})
	gaps := s.edgeCounter("ssekafka_edge_live_gaps_total")
	for i := int64(10); i < 30; i++ {
		ch := lt.add(i)
		if err := pub.Publish(lt.subject.Event("tasks", 0), proto.AppendChange(nil, &ch)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < 30; i++ {
		ev := c.mustNext()
		if want := fmt.Sprintf("v%d", i); ev.Data != want {
			t.Fatalf("got %q, want %q", ev.Data, want)
		}
	}
	if g := s.edgeCounter("ssekafka_edge_live_gaps_total"); g != gaps {
		t.Fatalf("%v gaps for changes in order after the bogus head", g-gaps)
	}
}

// A page that says more follows but does not move its cursor on (a buggy
// or hostile member of the queue group) is refused: the feed goes back to
// its loop instead of asking forever, and fills the gap once a sound node
// answers.
func TestStuckPageCursorIsRefused(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, partitions: 1})
	lt := s.startLaggingTier("tasks")
	lt.add(9)
	c := s.connect("/tasks", nil)
	c.untilReady()
	lt.mu.Lock()
	lt.stuck = true
	lt.mu.Unlock()
	pub := s.connectNATS()
	ch := lt.add(11) // v10 never published: a gap
	if err := pub.Publish(lt.subject.Event("tasks", 0), proto.AppendChange(nil, &ch)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the stuck page refused", func() bool {
		return s.edgeCounter("ssekafka_edge_bad_state_pages_total") > 0
	})
	lt.mu.Lock()
	lt.stuck = false
	lt.mu.Unlock()
	for _, want := range []string{"v10", "v11"} {
		if ev := c.mustNext(); ev.Data != want {
			t.Fatalf("got %q, want %q", ev.Data, want)
		}
	}
}
