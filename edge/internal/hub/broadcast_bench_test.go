package hub

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/proto"
)

// BenchmarkBroadcast measures the live broadcast path: one change delivered
// by a topic feed to every client of a view (frame encoded once, queued to
// each client). One op is one event; allocations per delivery are allocs/op
// divided by the subscribers. Client queues are drained with the timer
// stopped, as their writers would after each batch.
func BenchmarkBroadcast(b *testing.B) {
	for _, subscribers := range []int{1, 100, 10_000} {
		b.Run(fmt.Sprintf("subscribers-%d", subscribers), func(b *testing.B) {
			e := &Hub{metrics: metrics.New(nil)}
			e.cfg.Now = fixedClock
			f := &feed{e: e, views: map[string]*view{}}
			f.progress = proto.Progress{Epoch: 1, Offsets: make([]int64, 3)}
			clients := make([]*client, subscribers)
			for i := range clients {
				clients[i] = newClient(1<<20, math.MaxInt)
				clients[i].live = true
				if _, ok := f.join("v", nil, frameFormat{id: proto.IDEtag}, clients[i]); !ok {
					b.Fatal("join")
				}
			}
			rec := proto.Record{Key: []byte("task-17"), Value: []byte(`{"id":"task-17","status":"doing","rev":12345}`)}
			drain := func() {
				for _, c := range clients {
					frames, _, _ := c.take()
					putIovecs(frames)
				}
			}
			// Warm up: the clients' queue arrays come from a pool, empty at first.
			for i := range 16 {
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
				if i%16 == 15 { // the feed flushes after each batch it has: a few events, at most 1024
					b.StopTimer()
					drain()
					b.StartTimer()
				}
			}
			b.StopTimer()
			drain()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(subscribers), "ns/delivery")
		})
	}
}

func fixedClock() time.Time { return time.UnixMilli(1_800_000_000_000) }
