package hub

import (
	"slices"
	"sync/atomic"
	"testing"
)

// countSink counts its flushes.
type countSink struct{ n atomic.Int64 }

func (s *countSink) flush()                { s.n.Add(1) }
func (s *countSink) live(*liveStream) bool { return true }

// Each dirty client of a batch is flushed once, whether its writer, the
// feed or, once the edge is closing, the feed alone flushes it.
func TestWritersFlushEachDirtyClientOncePerBatch(t *testing.T) {
	done := make(chan struct{})
	var w writers
	w.init(4, done)
	var fs feedShards
	clients := make([]*client, 1000)
	sinks := make([]*countSink, len(clients))
	for i := range clients {
		sinks[i] = &countSink{}
		clients[i] = &client{sink: sinks[i]}
		w.assign(&fs, clients[i])
	}
	if !slices.Equal(fs.count, []int{250, 250, 250, 250}) {
		t.Fatalf("clients per writer %v", fs.count)
	}
	for batch := range 20 {
		if batch == 10 {
			close(done) // the writers end: the feed flushes every share
		}
		dirty := clients[batch%3:] // a different set each batch
		w.flush(&fs, slices.Clone(dirty))
		for i, s := range sinks {
			want := int64(0)
			for b := range batch + 1 {
				if i >= b%3 {
					want++
				}
			}
			if got := s.n.Load(); got != want {
				t.Fatalf("batch %d: client %d flushed %d times, want %d", batch, i, got, want)
			}
		}
	}
}

// A client joining goes to the writer with the fewest of its feed's
// clients: those that left are replaced there.
func TestWritersAssignTheLeastLoaded(t *testing.T) {
	var w writers
	w.init(3, nil)
	var fs feedShards
	cs := make([]*client, 9)
	for i := range cs {
		cs[i] = &client{}
		w.assign(&fs, cs[i])
	}
	w.release(&fs, cs[1])
	w.release(&fs, cs[4])
	w.release(&fs, cs[2])
	if !slices.Equal(fs.count, []int{3, 1, 2}) {
		t.Fatalf("after leaves: %v", fs.count)
	}
	for _, want := range []uint16{1, 1, 2} {
		c := &client{}
		w.assign(&fs, c)
		if c.shard != want {
			t.Fatalf("joined writer %d, want %d (counts %v)", c.shard, want, fs.count)
		}
	}
}
