package edge_test

import (
	"fmt"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

// forge publishes m on the live subject of tasks' partition 0, as anyone on
// an unauthenticated NATS could.
func (s *stack) forge(m []byte) {
	s.t.Helper()
	s.expectBadChanges()
	pub := s.connectNATS()
	if err := pub.Publish(proto.Subjects{Prefix: "ssekafka"}.Event("tasks", 0), m); err != nil {
		s.t.Fatal(err)
	}
	if err := pub.Flush(); err != nil {
		s.t.Fatal(err)
	}
}

// expectLive produces value to key and asserts the stream's next data event
// is exactly it.
func expectLive(t *testing.T, s *stack, c *sseClient, key, value string) event {
	t.Helper()
	s.produce("tasks", rec(0, key, value))
	ev, err := c.next(10 * time.Second)
	if err != nil {
		t.Fatalf("waiting for %s=%s: %v", key, value, err)
	}
	if ev.Event != "" || ev.Data != value {
		t.Fatalf("got event %q data %q, want the live change %q", ev.Event, ev.Data, value)
	}
	return ev
}

// One forged change at an offset far past the partition's head (on
// 5f6c6aa: every live client received it, and the feed then stood past
// every real record, so live updates stopped until every client had left)
// is checked against the cache tier, which has no such offset, and
// dropped: clients never see it and the next real record arrives.
func TestForgedFarChangeIsDroppedNotDelivered(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	ch := proto.Change{Epoch: s.epoch("tasks"), Partition: 0, From: 1,
		Record: proto.Record{Offset: 1_000_000_000_000, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
	s.forge(proto.AppendChange(nil, &ch))
	expectLive(t, s, c, "b", "2")
	expectLive(t, s, c, "c", "3")
}

// One forged change under another epoch (on 5f6c6aa: every client of the
// topic was sent event:reset and disconnected) is checked against the
// topic's metadata, which still has the feed's epoch, and dropped: the
// streams go on.
func TestForgedEpochDoesNotEndStreams(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	ch := proto.Change{Epoch: s.epoch("tasks") + 1, Partition: 0, From: 1,
		Record: proto.Record{Offset: 1, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
	s.forge(proto.AppendChange(nil, &ch))
	h := proto.Head{Epoch: s.epoch("tasks") + 1, Partition: 0, Next: 1}
	s.forge(proto.AppendHead(nil, &h))
	bad := proto.Change{Epoch: s.epoch("tasks"), Partition: 9, From: 1,
		Record: proto.Record{Offset: 1, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
	s.forge(proto.AppendChange(nil, &bad))
	expectLive(t, s, c, "b", "2")
}

// A forged head past the cache's head leaves the ring usable: on 5f6c6aa
// it raised what the feed believed the cache tier held, so no stream
// resumed from memory again. Far heads are dropped unbelieved; a near one
// is filled towards, and the fill that no holder confirms lowers the bound.
func TestForgedFarHeadIsNotBelieved(t *testing.T) {
	for _, next := range []int64{1 << 40, 1 << 20, 1000} {
		t.Run(fmt.Sprint(next), func(t *testing.T) {
			s := newStack(t, stackOptions{partitions: 1})
			s.produce("tasks", rec(0, "a", "1"))
			c := s.connect("/tasks", nil)
			c.untilReady()
			h := proto.Head{Epoch: s.epoch("tasks"), Partition: 0, Next: next}
			s.forge(proto.AppendHead(nil, &h))
			b := expectLive(t, s, c, "b", "2")
			expectLive(t, s, c, "c", "3")
			ring := labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "ring")
			var got []string
			eventually(t, 15*time.Second, "a resume just behind the feed served from the ring", func() bool {
				got = got[:0]
				r := s.connect("/tasks", http.Header{"Last-Event-Id": {b.ID}})
				defer r.close()
				for _, ev := range r.untilReady() {
					if ev.HasData || ev.Event != "" {
						got = append(got, ev.Event+":"+ev.Data)
					}
				}
				return labeled(t, s.edgeReg, "ssekafka_edge_resumes_total", "kind", "ring") > ring
			})
			if fmt.Sprint(got) != "[:3 ready:{}]" {
				t.Fatalf("resumed from the ring with %q, want c's value then ready", got)
			}
		})
	}
}

// Offsets that would wrap (MaxInt64 + 1), and a run of heads each just
// within reach of the last (a ratchet), do not move the feed: found by
// review of the first version of this defence, which delivered both.
func TestForgedOffsetsThatWrapOrRatchet(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	ep := s.epoch("tasks")
	wrap := proto.Change{Epoch: ep, Partition: 0, From: 0,
		Record: proto.Record{Offset: math.MaxInt64, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
	s.forge(proto.AppendChange(nil, &wrap))
	expectLive(t, s, c, "b", "2")
	for i := int64(1); i <= 50; i++ {
		h := proto.Head{Epoch: ep, Partition: 0, Next: i * 1000}
		s.forge(proto.AppendHead(nil, &h))
	}
	far := proto.Change{Epoch: ep, Partition: 0, From: 1,
		Record: proto.Record{Offset: 50 * 1000, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
	s.forge(proto.AppendChange(nil, &far))
	expectLive(t, s, c, "c", "3")
	expectLive(t, s, c, "d", "4")
}

// A run of forged changes each standing just past the feed's position (a
// gap no holder confirms) costs a fill a second, not one each: found by
// review, when 100 of them made 5 state requests each and held a real change
// back 4.3 s. The real change after them arrives in order.
func TestForgedNearGapsCostOneFillASecond(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	s.produce("tasks", rec(0, "a", "1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	requests := s.counter(s.cacheReg, "ssekafka_cache_state_requests_total")
	for i := range int64(100) {
		ch := proto.Change{Epoch: s.epoch("tasks"), Partition: 0, From: 5 + i,
			Record: proto.Record{Offset: 5 + i, Key: []byte("x"), Value: []byte("forged"), Etag: "f"}}
		s.forge(proto.AppendChange(nil, &ch))
	}
	expectLive(t, s, c, "b", "2")
	if n := s.counter(s.cacheReg, "ssekafka_cache_state_requests_total") - requests; n > 40 {
		t.Fatalf("%v state requests for 100 forged gaps, want a few fills' worth", n)
	}
}
