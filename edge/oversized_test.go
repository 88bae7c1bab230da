package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
)

// bigValue is size bytes that zstd compresses well (so that Kafka's 1 MB
// limit takes them) and that differ block by block, so that parts put
// together in a wrong order, or one lost, do not pass for the value.
func bigValue(tag string, size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%s block %08d %s|", tag, i, strings.Repeat("x", 1000))
	}
	return b.String()[:size]
}

// bigProducer writes records of up to 16 MiB, zstd-compressed: the way a
// producer gets a 10 MiB value past Kafka's default 1 MB message limit.
func (s *stack) bigProducer() *kgo.Client {
	s.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(16<<20))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}

// messages keeps the message events of evs (no retry, no ready).
func messages(evs []event) []event {
	var ms []event
	for _, ev := range evs {
		if ev.Event == "" && ev.HasData {
			ms = append(ms, ev)
		}
	}
	return ms
}

// nextMessage returns c's next message event, skipping retry and ready.
func nextMessage(c *sseClient) event {
	c.t.Helper()
	for {
		if ev := c.mustNext(); ev.Event == "" && ev.HasData {
			return ev
		}
	}
}

func (s *stack) produceWith(cl *kgo.Client, topic string, recs ...*kgo.Record) {
	s.t.Helper()
	for _, r := range recs {
		r.Topic = topic
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.t.Fatal(err)
	}
	for _, r := range recs {
		s.waitApplied(topic, r.Partition, r.Offset)
	}
}

// A record Kafka accepts reaches every client, however far it is over
// NATS's max payload (issue 11: a 10 MiB record stopped its partition for
// every client, and new clients looped without ready, until the key was
// overwritten). Here, with a 1 MiB max payload: live, in a new client's
// state, on a resume, overwritten by another, and read back from Kafka
// once the cache no longer holds it in memory.
func TestOversizedRecordReachesClients(t *testing.T) {
	withStandbys(t, testOversizedRecordReachesClients)
}

func testOversizedRecordReachesClients(t *testing.T, lag time.Duration) {
	// Frames of distinct keys over MaxQueueBytes/2 waiting for one client
	// disconnect it (it resumes): a burst of 11 MiB values needs a bound
	// above the default 8 MiB.
	s := newStack(t, stackOptions{standbyLag: lag, partitions: 1, maxPayload: 1 << 20, edgeCfg: func(c *edge.Config) { c.MaxQueueBytes = 256 << 20 },
		cacheCfg: func(c *cache.Config) { c.MaxBytes, c.ApartBytes = 1<<20, 12<<20 }}) // no value fits the value cache; one is kept apart
	big := s.bigProducer()
	s.produce("tasks", rec(0, "small", "v1"))

	live := s.connect("/tasks", nil)
	lastSmall := idOf(live, "v1") // in the state, or live after it if a standby behind answered

	first := bigValue("first", 10<<20)
	s.produceWith(big, "tasks", rec(0, "big", first))
	if ev := nextMessage(live); ev.Data != first {
		t.Fatalf("live: %d bytes, want the 10 MiB value (%.40q...)", len(ev.Data), ev.Data)
	}

	fresh := s.connect("/tasks", nil)
	evs := messages(fresh.untilReady())
	if len(evs) != 2 || evs[0].Data != "v1" || evs[1].Data != first {
		t.Fatalf("new client's state: %d events", len(evs))
	}

	resumed := s.connect("/tasks", http.Header{"Last-Event-ID": {lastSmall}})
	if ev := nextMessage(resumed); ev.Data != first {
		t.Fatalf("resume: %d bytes, want the 10 MiB value", len(ev.Data))
	}

	second := bigValue("second", 12<<20)
	s.produceWith(big, "tasks", rec(0, "big", second))
	for _, c := range []*sseClient{live, fresh} {
		if ev := nextMessage(c); ev.Data != second {
			t.Fatalf("overwrite: %d bytes, want the 12 MiB value", len(ev.Data))
		}
	}

	// The cache keeps one such value at hand here (ApartBytes): a new
	// client gets the older one read back from Kafka.
	third := bigValue("third", 11<<20)
	s.produceWith(big, "tasks", rec(0, "third", third))
	misses := s.counter(s.cacheReg, "ssekafka_cache_value_misses_total")
	evs = messages(s.connect("/tasks", nil).untilReady())
	if len(evs) != 3 || evs[0].Data != "v1" || evs[1].Data != second || evs[2].Data != third {
		t.Fatalf("state with values read back: %d events", len(evs))
	}
	if got := s.counter(s.cacheReg, "ssekafka_cache_value_misses_total"); got <= misses {
		t.Fatalf("no value was read back from Kafka (misses %v, before %v): the test did not reach that path", got, misses)
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n == 0 {
		t.Fatal("no record was sent apart")
	}
	// A JSON read of the key gets the whole value too.
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil); status != 200 || body != second {
		t.Fatalf("JSON read: %d, %d bytes", status, len(body))
	}
}

// A value over the largest the cache holds (proto.MaxValueBytes, 64 MiB)
// cannot reach a client: the cache takes the record as a delete of its
// key (logged, counted), so the key's older value is not served as if
// current: a live client gets event:delete, a JSON read 404.
func TestValueOverTheLargestIsADelete(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1, maxPayload: 1 << 20})
	big, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(80<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(big.Close)
	s.produce("tasks", rec(0, "k", `{"v":1}`))
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil); status != 200 || body != `{"v":1}` {
		t.Fatalf("JSON read: %d %q", status, body)
	}
	live := s.connect("/tasks", nil)
	live.untilReady()
	s.produceWith(big, "tasks", rec(0, "k", bigValue("huge", 64<<20+1)))
	if ev := live.mustNext(); ev.Event != "delete" {
		t.Fatalf("live: %q (%d bytes), want event:delete of k", ev.Event, len(ev.Data))
	}
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil); status != http.StatusNotFound {
		t.Fatalf("JSON read after the oversized value: %d %.40q, want 404", status, body)
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_too_large_total"); n != 1 {
		t.Fatalf("records_too_large_total %v, want 1", n)
	}
}
