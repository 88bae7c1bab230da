package edge_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/proto"
)

// partRelay stands between the edge (its subjects under edgePrefix) and the
// cache tier (under "ssekafka"): it passes every request on, and every live
// change back, but holds the value-part requests of one partition while
// told to: a record apart of that partition cannot be read meanwhile.
type partRelay struct {
	nc      *nats.Conn
	subject string // the held partition's state subject, cache side

	mu       sync.Mutex
	holding  bool
	allState bool // hold state-page requests too, not only value parts
	held     []*nats.Msg
	seen     atomic.Int64 // requests held so far
	lose     atomic.Bool  // drop the held partition's next live change
}

const edgePrefix = "edgeside"

func startPartRelay(s *stack, partition int32) *partRelay {
	r := &partRelay{nc: s.connectNATS(), subject: proto.Subjects{Prefix: "ssekafka"}.State("tasks", partition)}
	if _, err := r.nc.Subscribe(edgePrefix+".>", r.toCache); err != nil {
		s.t.Fatal(err)
	}
	lost := proto.Subjects{Prefix: "ssekafka"}.Event("tasks", partition)
	if _, err := r.nc.Subscribe("ssekafka.ev.>", func(m *nats.Msg) {
		if m.Subject == lost && !proto.IsHead(m.Data) && r.lose.CompareAndSwap(true, false) {
			return // lost in transit
		}
		_ = r.nc.Publish(edgePrefix+strings.TrimPrefix(m.Subject, "ssekafka"), m.Data)
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := r.nc.Flush(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(r.release)
	return r
}

func (r *partRelay) toCache(m *nats.Msg) {
	if strings.HasPrefix(m.Subject, edgePrefix+".ev.") {
		return // our own republished live changes
	}
	subject := "ssekafka" + strings.TrimPrefix(m.Subject, edgePrefix)
	if subject == r.subject {
		r.mu.Lock()
		if r.holding && (r.allState || proto.IsValueRequest(m.Data)) {
			r.held = append(r.held, m)
			r.seen.Add(1)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
	_ = r.nc.PublishRequest(subject, m.Reply, m.Data)
}

// hold holds the partition's value-part requests, and with allState its
// state-page requests too (fills, probes).
func (r *partRelay) hold(allState bool) {
	r.mu.Lock()
	r.holding, r.allState = true, allState
	r.mu.Unlock()
}

// release passes on what it held, and holds no more.
func (r *partRelay) release() {
	r.mu.Lock()
	held := r.held
	r.held, r.holding = nil, false
	r.mu.Unlock()
	for _, m := range held {
		_ = r.nc.PublishRequest(r.subject, m.Reply, m.Data)
	}
}

// A small change on one partition reaches a live client while another
// partition's large record, sent apart, is still being read in parts: the
// feed reads it beside its goroutine, and holds back only that partition's
// later changes, which follow it in order once it is read. Before, the
// feed read the parts on its one goroutine, and every partition's changes
// waited (190 ms behind an 8 MiB record read back from Kafka, up to
// RequestTimeout when no holder answered).
func TestChangeOnOnePartitionIsNotHeldBehindAnotherPartitionsRecordApart(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2, maxPayload: 256 << 10,
		cacheCfg: func(c *cache.Config) { c.ApartBytes = 1 }, // nothing kept at hand
		edgeCfg: func(c *edge.Config) {
			c.SubjectPrefix = edgePrefix
			c.RequestTimeout = time.Minute // a part read is not given up within the test
		}})
	relay := startPartRelay(s, 0)
	s.produce("tasks", rec(0, "a", "a0"), rec(1, "b", "b0"))
	live := s.connect("/tasks", nil)
	if got := messages(live.untilReady()); len(got) != 2 {
		t.Fatalf("state: %d records, want 2", len(got))
	}

	relay.hold(false)
	value := bigValue("big", 8<<20) // 32 parts
	s.produceWith(s.bigProducer(), "tasks", rec(0, "big", value))
	s.produce("tasks", rec(0, "a", "a1"))
	poll.Until(t, 10*time.Second, "the edge to ask for a part of the record apart", func() bool { return relay.seen.Load() > 0 })
	s.produce("tasks", rec(1, "b", "b1"))
	ev, err := nextMessageWithin(live, 5*time.Second)
	if err != nil || ev.Data != "b1" {
		t.Fatalf("while partition 0's record apart is held: %+v, %v; want partition 1's change b1", ev, err)
	}

	relay.release()
	for _, want := range []string{value, "a1"} {
		ev, err := nextMessageWithin(live, 30*time.Second)
		if err != nil {
			t.Fatalf("after the release: %v, want partition 0's changes in order", err)
		}
		if ev.Data != want {
			t.Fatalf("after the release: %.40q (%d bytes), want %.40q", ev.Data, len(ev.Data), want)
		}
	}
	if ev, err := nextMessageWithin(live, 500*time.Millisecond); err == nil {
		t.Fatalf("after partition 0's changes: %.40q, want nothing more (a duplicate?)", ev.Data)
	}
}

// nextMessageWithin returns c's next message event (skipping retry and
// ready) if one comes within timeout.
func nextMessageWithin(c *sseClient, timeout time.Duration) (event, error) {
	deadline := time.Now().Add(timeout)
	for {
		ev, err := c.next(time.Until(deadline))
		if err != nil || ev.Event == "" && ev.HasData {
			return ev, err
		}
	}
}

// Changes that queue behind a partition's record apart are bounded
// (FeedBuffer here, the feed memory budget too): past the bound they are
// dropped and the partition is filled from the cache tier once the record
// is read, so a client still gets every change, in order, once.
func TestChangesQueuedPastTheBoundBehindARecordApartAreFilled(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2, maxPayload: 64 << 10,
		cacheCfg: func(c *cache.Config) { c.ApartBytes = 1 },
		edgeCfg: func(c *edge.Config) {
			c.SubjectPrefix = edgePrefix
			c.RequestTimeout = time.Minute
			c.FeedBuffer = 4
		}})
	relay := startPartRelay(s, 0)
	s.produce("tasks", rec(0, "a", "a0"))
	live := s.connect("/tasks", nil)
	live.untilReady()

	relay.hold(false)
	value := bigValue("big", 1<<20)
	s.produceWith(s.bigProducer(), "tasks", rec(0, "big", value))
	poll.Until(t, 10*time.Second, "the edge to ask for a part of the record apart", func() bool { return relay.seen.Load() > 0 })
	want := []string{value}
	for i := range 12 {
		v := "v" + string(rune('a'+i))
		s.produce("tasks", rec(0, "k"+v, v))
		want = append(want, v)
	}
	s.produce("tasks", rec(1, "b", "b1"))
	if ev, err := nextMessageWithin(live, 5*time.Second); err != nil || ev.Data != "b1" {
		t.Fatalf("while partition 0's record apart is held: %.40q, %v; want partition 1's change b1", ev.Data, err)
	}
	relay.release()
	for _, w := range want {
		ev, err := nextMessageWithin(live, 30*time.Second)
		if err != nil || ev.Data != w {
			t.Fatalf("after the release: %.40q (%v), want %.40q", ev.Data, err, w)
		}
	}
	if ev, err := nextMessageWithin(live, 500*time.Millisecond); err == nil {
		t.Fatalf("after partition 0's changes: %.40q, want nothing more (a duplicate?)", ev.Data)
	}
}

// A small change on one partition reaches a live client while another
// partition's gap is being filled and no holder answers the fill: the fill
// runs beside the feed goroutine (before, every partition waited up to
// PageTimeout for each page asked).
func TestChangeOnOnePartitionIsNotHeldBehindAnotherPartitionsFill(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 2,
		edgeCfg: func(c *edge.Config) {
			c.SubjectPrefix = edgePrefix
			c.PageTimeout = 20 * time.Second // a page asked is not given up within the test
		}})
	relay := startPartRelay(s, 0)
	s.produce("tasks", rec(0, "a", "a0"), rec(1, "b", "b0"))
	live := s.connect("/tasks", nil)
	live.untilReady()

	relay.hold(true)
	relay.lose.Store(true)
	s.produce("tasks", rec(0, "a", "a1")) // lost in transit
	s.produce("tasks", rec(0, "c", "c1")) // its gap starts a fill, held
	poll.Until(t, 10*time.Second, "the edge to ask for partition 0's state", func() bool { return relay.seen.Load() > 0 })
	s.produce("tasks", rec(1, "b", "b1"))
	if ev, err := nextMessageWithin(live, 5*time.Second); err != nil || ev.Data != "b1" {
		t.Fatalf("while partition 0's fill is held: %+v, %v; want partition 1's change b1", ev, err)
	}
	relay.release()
	for _, want := range []string{"a1", "c1"} {
		ev, err := nextMessageWithin(live, 30*time.Second)
		if err != nil || ev.Data != want {
			t.Fatalf("after the release: %+v (%v), want %q", ev, err, want)
		}
	}
	if ev, err := nextMessageWithin(live, 500*time.Millisecond); err == nil {
		t.Fatalf("after partition 0's changes: %+v, want nothing more (a duplicate?)", ev)
	}
}
