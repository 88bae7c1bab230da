package edge

import (
	"math"
	"testing"

	"github.com/ssekafka/ssekafka/proto"
)

// countingSink counts the calls a feed makes to a live client's sink.
type countingSink struct{ flushes int }

func (s *countingSink) flush()                { s.flushes++ }
func (s *countingSink) live(*liveStream) bool { return true }

// The feed calls a live client's sink once per batch of changes it
// delivered, not once per event (the hot path: no interface call per event
// per client), and the client's writer gets every frame of the batch.
func TestSinkIsFlushedOncePerBatchNotPerEvent(t *testing.T) {
	e := &Edge{metrics: newMetrics(nil)}
	e.cfg.Now = fixedClock
	f := &feed{e: e, views: map[string]*view{}}
	f.progress = proto.Progress{Epoch: 1, Offsets: make([]int64, 1)}
	c := newClient(1<<20, math.MaxInt)
	if _, ok := f.join("v", nil, proto.IDEtag, c); !ok {
		t.Fatal("join")
	}
	sk := &countingSink{}
	c.sink, c.live = sk, true
	rec := proto.Record{Key: []byte("k"), Value: []byte("v")}
	for batch := range 3 {
		f.mu.Lock()
		for i := range 100 {
			rec.Offset = int64(batch*100 + i)
			f.deliver(0, &rec)
		}
		f.mu.Unlock()
		f.flushDirty()
		if sk.flushes != batch+1 {
			t.Fatalf("batch %d: %d flushes, want one per batch", batch, sk.flushes)
		}
		frames, _, _ := c.take()
		if frames == nil || len(frames.bufs) != 100 {
			t.Fatalf("batch %d: the writer took %v frames, want 100", batch, frames)
		}
		putIovecs(frames)
	}
}
