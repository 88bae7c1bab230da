package edge_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/proto"
)

// Values many times over the cache's memory budget still stream exactly:
// what ristretto does not hold is read back from Kafka.
func TestStateBeyondMaxBytesIsExact(t *testing.T) {
	s := newStack(t, stackOptions{cacheCfg: func(c *cache.Config) { c.MaxBytes = 1 << 20 }}) // the smallest budget allowed
	var m model
	pad := strings.Repeat("v", 16000)
	for batch := range 5 {
		var recs []*kgo.Record
		for i := range 200 {
			k := (batch*200 + i) % 700
			if i%25 == 0 {
				recs = append(recs, tombstone(int32(k%3), fmt.Sprintf("k%d", k)))
				continue
			}
			recs = append(recs, rec(int32(k%3), fmt.Sprintf("k%d", k), fmt.Sprintf("%d-%d-%s", batch, i, pad)))
		}
		m.add(s.produce("tasks", recs...)...)
	}
	want := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})
	if size := len(want) * 16000; size < 8<<20 {
		t.Fatalf("test data %d bytes is not many times the budget", size)
	}
	for range 2 { // twice: the second stream finds some values warm
		sameView(t, "new client", s.newClientView("/keyed"), want)
	}
	if misses := s.counter(s.cacheReg, "ssekafka_cache_value_misses_total"); misses < 100 {
		t.Fatalf("only %v values read back from Kafka: the budget did not bind", misses)
	}
}
