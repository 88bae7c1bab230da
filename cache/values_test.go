package cache

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/proto"
)

// valuesNode is a cache node (not running) against a real kfake cluster,
// with a value cache of maxBytes.
func valuesNode(t *testing.T, maxBytes int64) (*Node, *kfake.Cluster, *kgo.Client) {
	t.Helper()
	return valuesNodeOn(t, maxBytes, devstack.KafkaOptions{})
}

func valuesNodeOn(t *testing.T, maxBytes int64, kopts devstack.KafkaOptions) (*Node, *kfake.Cluster, *kgo.Client) {
	t.Helper()
	tt := newTestTierOn(t, kopts)
	n, err := New(Config{Brokers: []string{tt.addr}, NATS: tt.nc})
	if err != nil {
		t.Fatal(err)
	}
	// Below Config's 1 MiB floor on purpose: a budget that refuses values.
	n.values.close()
	if n.values, err = newValues(maxBytes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.kcl.Close(); n.reader.Close(); n.values.close() })
	return n, tt.cluster, tt.prod
}

func produceValues(t *testing.T, prod *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// A value ristretto never admitted (too big for its budget, or a Set not
// yet visible) is read back from Kafka: the page is exact either way.
func TestFillValuesReadsBackWhatRistrettoLacks(t *testing.T) {
	n, _, prod := valuesNode(t, 1<<10) // 1 KiB: almost every Set is refused
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("value-%d-%0200d", i, i))})
	}
	produceValues(t, prod, recs...)
	ctx := context.Background()
	ts, err := n.loadTopic(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	ps := newPartitionState(0, 0)
	for _, kr := range recs {
		r := toRecord(kr)
		ps.apply(r)
		n.values.set("v", 0, r.Offset, r.Value) // asynchronous, and mostly refused
	}
	page, _ := ps.page(0, 1<<30, 1<<30)
	got, cut, err := n.fillValues(ctx, ts, 0, page)
	if err != nil || cut >= 0 {
		t.Fatal(err)
	}
	if len(got) != 300 {
		t.Fatalf("%d records (cut at %d), want 300", len(got), cut)
	}
	for i, r := range got {
		if want := fmt.Sprintf("value-%d-%0200d", i, i); string(r.Value) != want {
			t.Fatalf("offset %d: %.30q, want %.30q", r.Offset, r.Value, want)
		}
	}
	if hits, misses := counter(t, n.metrics.valueHits), counter(t, n.metrics.valueMisses); misses < 250 {
		t.Fatalf("expected most values read back from Kafka: %v hits, %v misses", hits, misses)
	}
}

// A record that Kafka compacted away after the page was read (its key was
// updated since) is dropped from the page; the update comes later.
func TestFillValuesDropsRecordsKafkaCompacted(t *testing.T) {
	n, cluster, prod := valuesNode(t, 1<<10)
	produceValues(t, prod, &kgo.Record{Key: []byte("a"), Value: []byte("old")})
	produceValues(t, prod, &kgo.Record{Key: []byte("a"), Value: []byte("new")})
	produceValues(t, prod, &kgo.Record{Key: []byte("b"), Value: []byte("last batch")})
	cluster.Compact()
	ctx := context.Background()
	ts, err := n.loadTopic(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	stale := []proto.Record{{Offset: 0, Key: []byte("a")}, {Offset: 1, Key: []byte("a")}, {Offset: 2, Key: []byte("b")}}
	got, cut, err := n.fillValues(ctx, ts, 0, stale)
	if err != nil || cut >= 0 {
		t.Fatal(err, cut)
	}
	if len(got) != 2 || string(got[0].Value) != "new" || string(got[1].Value) != "last batch" {
		t.Fatalf("got %+v", got)
	}
	if counter(t, n.metrics.valuesGone) != 1 {
		t.Fatal("the compacted record was not counted")
	}
}

// produceLarge writes n records of key k<i> with a 10 KiB value each, in
// batches of 20, so that reading them all back takes several fetches.
func produceLarge(t *testing.T, prod *kgo.Client, n int) {
	t.Helper()
	for i := 0; i < n; i += 20 {
		var batch []*kgo.Record
		for j := i; j < min(i+20, n); j++ {
			batch = append(batch, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", j)), Value: largeValue(j)})
		}
		produceValues(t, prod, batch...)
	}
}

// largeValue is 10 KiB that does not compress, so fetches are as large.
func largeValue(i int) []byte {
	v := make([]byte, 10<<10)
	_, _ = rand.NewChaCha8([32]byte{byte(i), byte(i >> 8)}).Read(v)
	return v
}

// evictedPage is records 0..n-1 of produceLarge as a state page whose
// values are all out of memory.
func evictedPage(n int) []proto.Record {
	page := make([]proto.Record, n)
	for i := range page {
		page[i] = proto.Record{Offset: int64(i), Key: []byte(fmt.Sprintf("k%d", i))}
	}
	return page
}

// Defect 3 of issue 8: after a partition's leader moves, values not in
// memory are still read back, from the new leader.
func TestReadBackFollowsMovedLeader(t *testing.T) {
	n, cluster, prod := valuesNodeOn(t, 1<<10, devstack.KafkaOptions{Brokers: 2})
	produceLarge(t, prod, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts, err := n.loadTopic(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	was := cluster.LeaderFor("v", 0)
	if was < 0 || ts.leader(0) != was {
		t.Fatalf("leader %d, node knows %d", was, ts.leader(0))
	}
	if err := cluster.MoveTopicPartition("v", 0, 1-was); err != nil {
		t.Fatal(err)
	}
	page := evictedPage(200)
	got, cut, err := n.fillValues(ctx, ts, 0, page)
	if err != nil || cut >= 0 {
		t.Fatalf("read back after the leader moved: cut at %d: %v", cut, err)
	}
	if len(got) != 200 {
		t.Fatalf("%d records, want 200", len(got))
	}
	for i, r := range got {
		if !bytes.Equal(r.Value, largeValue(i)) {
			t.Fatalf("offset %d: %.30q, want %.30q", r.Offset, r.Value, largeValue(i))
		}
	}
	if ts.leader(0) != 1-was {
		t.Fatalf("node still thinks the leader is %d", ts.leader(0))
	}
	if counter(t, n.metrics.readBackRetries) == 0 {
		t.Fatal("no retry counted")
	}
}

// Defect 3 of issue 8, second half: a value that cannot be read back cuts
// the page before it (the edge asks again from there) instead of failing
// the values already in hand.
func TestReadBackFailureCutsThePage(t *testing.T) {
	n, cluster, prod := valuesNode(t, 1<<10)
	produceLarge(t, prod, 200)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts, err := n.loadTopic(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	page := evictedPage(200)
	// Every fetch past the first fails at the broker.
	cluster.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		f := req.(*kmsg.FetchRequest)
		if len(f.Topics) == 1 && len(f.Topics[0].Partitions) == 1 && f.Topics[0].Partitions[0].FetchOffset > 0 {
			resp := f.ResponseKind().(*kmsg.FetchResponse)
			resp.ErrorCode = kerr.UnknownServerError.Code
			return resp, nil, true
		}
		return nil, nil, false
	})
	got, cut, err := n.fillValues(ctx, ts, 0, page)
	if err != nil {
		t.Fatal(err)
	}
	if cut <= 0 || len(got) == 0 || len(got) >= 200 || got[len(got)-1].Offset != cut-1 {
		t.Fatalf("page of %d records cut at %d", len(got), cut)
	}
	for i, r := range got {
		if !bytes.Equal(r.Value, largeValue(i)) {
			t.Fatalf("offset %d: %.30q, want %.30q", r.Offset, r.Value, largeValue(i))
		}
	}
	if counter(t, n.metrics.pagesCut) != 1 {
		t.Fatal("the cut page was not counted")
	}
	// A page whose first value cannot be read fails as a whole.
	if got, cut, err := n.fillValues(ctx, ts, 0, page[cut:]); err == nil {
		t.Fatalf("no error: %d records, cut at %d", len(got), cut)
	}
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
