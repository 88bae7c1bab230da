package hub

import (
	"fmt"
	"math"
	"testing"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/proto"
)

// BenchmarkBroadcastCoded is BenchmarkBroadcast in each content coding: a
// change delivered to every client of a view, its frame made into a chunk
// of the view's coding once (stored: a frame this small does not
// compress), each client's writer framing it (the gzip CRC combined per
// client). One op is one event; identity allocates as BenchmarkBroadcast.
func BenchmarkBroadcastCoded(b *testing.B) {
	for _, enc := range []compress.Encoding{compress.Identity, compress.Gzip, compress.Zstd} {
		for _, subscribers := range []int{100, 10_000} {
			b.Run(fmt.Sprintf("%s/subscribers-%d", enc, subscribers), func(b *testing.B) {
				broadcastCoded(b, enc, subscribers)
			})
		}
	}
}

func broadcastCoded(b *testing.B, enc compress.Encoding, subscribers int) {
	m := metrics.New(nil)
	e := &Hub{metrics: m, codings: newCodingMetrics(m)}
	e.cfg.Now = fixedClock
	f := &feed{e: e, views: map[string]*view{}}
	f.progress = proto.Progress{Epoch: 1, Offsets: make([]int64, 3)}
	format := frameFormat{id: proto.IDEtag, enc: enc}
	clients := make([]*client, subscribers)
	for i := range clients {
		c := newClient(1<<20, math.MaxInt)
		c.live, c.cs = true, compress.NewStream(enc)
		if _, ok := f.join(format.viewKey(0, ""), nil, format, c); !ok {
			b.Fatal("join")
		}
		clients[i] = c
	}
	rec := proto.Record{Key: []byte("task-17"), Value: []byte(`{"id":"task-17","status":"doing","rev":12345}`)}
	drain := func() {
		for _, c := range clients {
			frames, _, _ := c.take()
			putIovecs(frames)
		}
	}
	for i := range 16 { // warm up: the queue arrays come from a pool
		rec.Offset = int64(i)
		f.mu.Lock()
		f.deliver(int32(i%3), &rec)
		f.mu.Unlock()
	}
	drain()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rec.Offset = int64(i)
		f.mu.Lock()
		f.deliver(int32(i%3), &rec)
		f.mu.Unlock()
		if i%16 == 15 {
			drain() // timed: the writer's framing is part of a delivery
		}
	}
	drain()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(subscribers), "ns/delivery")
}
