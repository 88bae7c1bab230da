package edge_test

import (
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The random-clients property (every value a client sees was produced for
// its key, later than the key's previous one in the connection; every
// client ends exact) holds with records apart beside a standby: every
// partition has two holders, the standby's Kafka reads lagging 5 ms, a
// third of the keyed records carry 70 KiB of headers (apart at a 64 KiB
// max payload), and null-key records of 70 KiB go between them. A client
// that stays live throughout gets every null-key record.
func TestPropertyRandomClientsWithRecordsApart(t *testing.T) {
	start := time.Now()
	s := newStack(t, stackOptions{maxPayload: 64 << 10, standbyLag: 5 * time.Millisecond})
	s.standbyBehind = true
	trace := []byte(bigValue("h", 70<<10)) // over the 60 KiB a record may take in a message
	s.produceHook = func(r *kgo.Record) {
		if r.Key == nil {
			return
		}
		h := fnv.New32a()
		_, _ = h.Write(r.Key)
		_, _ = h.Write(r.Value)
		if h.Sum32()%3 == 0 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "trace", Value: trace})
		}
	}
	observer := s.connect("/tasks", nil)
	observer.untilReady()
	nulls, nextNull := map[string]string{}, 0
	ops := 600 // as propertyRandomClients
	if testing.Short() {
		ops = 200
	}
	propertyRandomClients(t, s, func(op int) {
		if op >= ops-4 {
			// The last batch waits for the standby too: the final resumes
			// check the whole state, which a holder behind may not hold yet.
			s.standbyBehind = false
		}
		if op < nextNull || len(nulls) >= 24 {
			return
		}
		nextNull = op + 25
		value := bigValue(fmt.Sprintf("null-%d", op), 70<<10)
		nulls[value] = fmt.Sprintf("null-key record of op %d", op)
		s.produceToKafka("tasks", &kgo.Record{Partition: int32(op/25) % 3, Value: []byte(value)})
	})
	collect(t, "live observer, null keys", observer, nulls, 10*time.Second)
	if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n < float64(len(nulls)) {
		t.Fatalf("%v records apart: the test does not reach the path", n)
	}
	t.Logf("%d null-key records, %v records apart, %v value parts asked again (not yet), in %v",
		len(nulls), s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"),
		s.counter(s.edgeReg, "ssekafka_edge_value_parts_not_yet_total"), time.Since(start))
}
