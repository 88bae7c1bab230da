package benchmarks

import (
	"context"
	"flag"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
)

var memoryValueMiB = flag.Int("memory-value-mib", 64, "MiB of distinct-key values in BenchmarkCacheMemory")

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkCacheMemory loads -memory-value-mib of 1 KiB values under
// distinct keys, then measures the Go heap a cache node adds once caught up,
// and the time to stream the whole state to a new client: with a value
// budget (MaxBytes) a tenth of the values, and with one twice their size.
func BenchmarkCacheMemory(b *testing.B) {
	total := int64(*memoryValueMiB) << 20
	for _, bc := range []struct {
		name     string
		maxBytes int64
	}{
		{"budget-10x-under", total / 10},
		{"budget-holds-all", 2 * total},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				c := startCluster(b, ctx, WithoutCache())
				keys := int(total >> 10)
				if err := c.Produce(ctx, keys, keys, 1024); err != nil {
					b.Fatal(err)
				}
				before := heapInuse()
				nc, err := nats.Connect(c.NATSURL)
				if err != nil {
					b.Fatal(err)
				}
				node, err := cache.New(cache.Config{Brokers: c.Brokers, NATS: nc, Bootstrap: []string{c.Topic}, MaxBytes: bc.maxBytes})
				if err != nil {
					b.Fatal(err)
				}
				runCtx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { defer close(done); _ = node.Run(runCtx) }()
				if err := waitFor(ctx, node.Ready); err != nil {
					b.Fatal(err)
				}
				after := heapInuse()
				start := time.Now()
				n, err := streamState(ctx, c)
				if err != nil || n != int64(keys) {
					b.Fatalf("streamed %d of %d: %v", n, keys, err)
				}
				stream := time.Since(start)
				b.ReportMetric(float64(after-before)/(1<<20), "cache-heap-MiB")
				b.ReportMetric(float64(bc.maxBytes)/(1<<20), "budget-MiB")
				b.ReportMetric(float64(total)/(1<<20), "values-MiB")
				b.ReportMetric(float64(stream.Milliseconds()), "full-state-ms")
				stop()
				<-done
				nc.Close()
				cancel()
			}
		})
	}
}
