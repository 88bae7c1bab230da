package benchmarks

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkLargeValueState times a new client's state of one 10 MiB value:
// at a 1 MiB NATS max payload the value travels apart and the edge reads it
// in parts; at 16 MiB it fits in the state page (the baseline).
func BenchmarkLargeValueState(b *testing.B) {
	for _, mp := range []int32{1 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("maxPayload=%dMiB", mp>>20), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c := startCluster(b, ctx, WithNATSMaxPayload(mp))
			prod, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.DefaultProduceTopic(c.Topic),
				kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(16<<20))
			if err != nil {
				b.Fatal(err)
			}
			defer prod.Close()
			value := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
			if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("big"), Value: value}).FirstErr(); err != nil {
				b.Fatal(err)
			}
			// The cache has it once a new client sees it.
			if err := waitFor(ctx, func() bool { n, err := streamState(ctx, c); return err == nil && n == 1 }); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(value)))
			b.ResetTimer()
			for range b.N {
				if n, err := streamState(ctx, c); err != nil || n != 1 {
					b.Fatalf("got %d events, %v", n, err)
				}
			}
		})
	}
}
