package cache

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/proto"
)

func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			total := 0.0
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
			return total
		}
	}
	return 0
}

// A topic whose config cannot be read must not silently get a 24 h horizon:
// it is counted and logged, the horizon is the shorter of what is known,
// and the topic check reads the config again (defect 5 of issue 8).
func TestTopicConfigUnreadable(t *testing.T) {
	cluster, addr, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	var refuse atomic.Bool
	refuse.Store(true)
	cluster.ControlKey(int16(kmsg.DescribeConfigs), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		req := kreq.(*kmsg.DescribeConfigsRequest)
		resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, r := range req.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = r.ResourceType, r.ResourceName
			rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	if _, err := kadm.NewClient(admCl).CreateTopic(ctx, 1, 1, map[string]*string{
		"cleanup.policy": new("compact"), "delete.retention.ms": new("60000"),
	}, "r"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	n, err := New(Config{Brokers: []string{addr}, NATS: newTestTier(t).nc, TombstoneHorizon: 2 * time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.kcl.Close(); n.reader.Close(); n.values.close() })
	ts, err := n.loadTopic(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg, "ssekafka_cache_topic_config_unreadable_total"); got != 1 {
		t.Fatalf("unreadable config counted %v times, want 1", got)
	}
	if h := n.horizon(ts); h != 2*time.Hour {
		t.Fatalf("horizon %v while the config is unreadable, want TombstoneHorizon 2h", h)
	}
	refuse.Store(false)
	n.checkTopic(ctx, ts)
	if h := n.horizon(ts); h != time.Minute {
		t.Fatalf("horizon %v after the topic check, want the topic's delete.retention.ms 1m", h)
	}
}

// A node holds at most MaxTopics: a request for one more is refused, and
// topics taken up on demand that nobody asked for in TopicIdle are dropped,
// making room; bootstrap topics stay.
func TestTopicsBoundedAndIdleDropped(t *testing.T) {
	tt := newTestTier(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, []string{tt.addr}, 1, "a", "b"); err != nil {
		t.Fatal(err)
	}
	n := tt.run(t, Config{Bootstrap: []string{"v"}, MaxTopics: 2, TopicIdle: 300 * time.Millisecond})
	if err := poll.Wait(ctx, 10*time.Millisecond, n.Ready); err != nil {
		t.Fatal("node never ready")
	}
	meta := func(topic string) proto.Meta {
		t.Helper()
		msg, err := tt.nc.Request(proto.Subjects{Prefix: "ssekafka"}.Meta(topic), proto.AppendMetaRequest(nil), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		m, err := proto.DecodeMeta(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := meta("a"); m.Status != proto.StatusOK {
		t.Fatalf("a: %+v", m)
	}
	if m := meta("b"); m.Status != proto.StatusError || !strings.Contains(m.Error, "too many topics") {
		t.Fatalf("a third topic over MaxTopics 2: %+v", m)
	}
	// a goes idle and is dropped; then b fits. v, a bootstrap topic, stays.
	if err := poll.Wait(ctx, 20*time.Millisecond, func() bool { return n.loaded("a") == nil }); err != nil {
		t.Fatal("idle topic a never dropped")
	}
	if m := meta("b"); m.Status != proto.StatusOK {
		t.Fatalf("b after a was dropped: %+v", m)
	}
	if n.loaded("v") == nil {
		t.Fatal("the bootstrap topic was dropped")
	}
	if counter(t, n.metrics.topicsRefused) < 1 || counter(t, n.metrics.topicsIdleDropped) < 1 {
		t.Fatal("not counted")
	}
}
