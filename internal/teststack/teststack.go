// Package teststack starts, for tests outside the cache and edge packages,
// the tiers an edge needs: kfake with compacted topics, an embedded
// nats-server and a running cache node, all on loopback, stopped when the
// test ends.
package teststack

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/internal/devstack"
)

// Tiers is Kafka, NATS and a cache node serving topics.
type Tiers struct {
	Kafka   string // broker address
	NATSURL string
	t       testing.TB
}

// Start creates topics (compacted, 3 partitions), starts NATS and a cache
// node bootstrapped with them.
func Start(t testing.TB, topics ...string) *Tiers {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kc, kafka, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	if err := devstack.CreateCompactedTopics(ctx, []string{kafka}, 3, topics...); err != nil {
		t.Fatal(err)
	}
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	s := &Tiers{Kafka: kafka, NATSURL: ns.ClientURL(), t: t}
	node, err := cache.New(cache.Config{Brokers: []string{kafka}, NATS: s.Connect(), Bootstrap: topics})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = node.Run(cctx) }()
	t.Cleanup(func() { ccancel(); <-done })
	return s
}

// Connect is a new NATS connection, closed when the test ends.
func (s *Tiers) Connect() *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}
