package cache

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/proto"
)

// valuesNode is a cache node (not running) against a real kfake cluster,
// with a value cache of maxBytes.
func valuesNode(t *testing.T, maxBytes int64) (*Node, *kfake.Cluster, *kgo.Client) {
	t.Helper()
	cluster, addr, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, []string{addr}, 1, "v"); err != nil {
		t.Fatal(err)
	}
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	n, err := New(Config{Brokers: []string{addr}, NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	// Below Config's 1 MiB floor on purpose: a budget that refuses values.
	n.values.close()
	if n.values, err = newValues(maxBytes); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.kcl.Close(); n.reader.Close(); n.values.close() })
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("v"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return n, cluster, prod
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
	page, _ := ps.page(0, 1<<30)
	got, err := n.fillValues(ctx, ts, 0, page)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 300 {
		t.Fatalf("%d records, want 300", len(got))
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
	got, err := n.fillValues(ctx, ts, 0, stale)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Value) != "new" || string(got[1].Value) != "last batch" {
		t.Fatalf("got %+v", got)
	}
	if counter(t, n.metrics.valuesGone) != 1 {
		t.Fatal("the compacted record was not counted")
	}
}

func counter(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}
