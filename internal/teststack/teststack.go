// Package teststack starts, for tests and benchmarks, the tiers an edge
// needs: kfake with compacted topics, an embedded nats-server and a
// running cache node, all on loopback, stopped when the test ends. The
// edge package's own stack (edge/stack_test.go) is a thin layer over it.
package teststack

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
)

// Options say what StartWith starts.
type Options struct {
	Topics     []string // created compacted, bootstrapped by the cache node
	Partitions int32    // of each topic; default 3
	MaxPayload int32    // the NATS server's; default 8 MiB
	NoCache    bool     // start no cache node: the test starts its own (RunCache)
	// Cache changes the cache node's config before it starts.
	Cache func(*cache.Config)
}

// Tiers is Kafka, NATS and a cache node serving topics.
type Tiers struct {
	Kafka   string // broker address
	NATSURL string
	Cluster *kfake.Cluster
	NATS    *server.Server // the running server (RestartNATS replaces it)
	Node    *cache.Node    // nil with Options.NoCache

	t          testing.TB
	maxPayload int32
}

// Start creates topics (compacted, 3 partitions), starts NATS and a cache
// node bootstrapped with them, ready.
func Start(t testing.TB, topics ...string) *Tiers {
	t.Helper()
	return StartWith(t, Options{Topics: topics})
}

// StartWith starts what o says; the cache node, unless o.NoCache, is
// ready when it returns.
func StartWith(t testing.TB, o Options) *Tiers {
	t.Helper()
	if o.Partitions == 0 {
		o.Partitions = 3
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = 8 << 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc, kafka, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	if err := devstack.CreateCompactedTopics(ctx, []string{kafka}, o.Partitions, o.Topics...); err != nil {
		t.Fatal(err)
	}
	s := &Tiers{Kafka: kafka, Cluster: kc, t: t, maxPayload: o.MaxPayload}
	ns, err := devstack.StartNATSMaxPayload("127.0.0.1:0", o.MaxPayload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.NATS.Shutdown() })
	s.NATS, s.NATSURL = ns, ns.ClientURL()
	if o.NoCache {
		return s
	}
	cfg := cache.Config{Brokers: []string{kafka}, NATS: s.Connect(), Bootstrap: o.Topics}
	if o.Cache != nil {
		o.Cache(&cfg)
	}
	s.Node, _ = s.RunCache(cfg)
	poll.Until(t, 30*time.Second, "cache node ready", s.Node.Ready)
	return s
}

// Connect is a new NATS connection, closed when the test ends.
func (s *Tiers) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.NATSURL, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// RunCache runs a cache node of cfg until stop is called or the test
// ends; an error from its run fails the test.
func (s *Tiers) RunCache(cfg cache.Config) (node *cache.Node, stop func()) {
	s.t.Helper()
	node, err := cache.New(cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := node.Run(ctx); err != nil {
			s.t.Error(err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	s.t.Cleanup(stop)
	return node, stop
}

// RestartNATS stops the NATS server and starts a new one on the same
// address; every connection reconnects, and what was published meanwhile
// is lost.
func (s *Tiers) RestartNATS() {
	s.t.Helper()
	addr := s.NATS.Addr().String()
	s.NATS.Shutdown()
	ns, err := devstack.StartNATSMaxPayload(addr, s.maxPayload)
	if err != nil {
		s.t.Fatal(err)
	}
	s.NATS = ns
}

// Producer is a Kafka client of the cluster, closed when the test ends.
func (s *Tiers) Producer(opts ...kgo.Opt) *kgo.Client {
	s.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.Kafka)}, opts...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(cl.Close)
	return cl
}
