package teststack

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/internal/poll"
)

func TestStartWithReadyCacheAndRestartedNATS(t *testing.T) {
	var tweaked bool
	tiers := StartWith(t, Options{Topics: []string{"t"}, Partitions: 1, Cache: func(*cache.Config) { tweaked = true }})
	if tiers.Node == nil || !tiers.Node.Ready() || !tweaked {
		t.Fatalf("node %v, tweaked %v: want a ready node of the tweaked config", tiers.Node, tweaked)
	}
	nc := tiers.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	addr := tiers.NATS.Addr().String()
	tiers.RestartNATS()
	if got := tiers.NATS.Addr().String(); got != addr {
		t.Fatalf("NATS restarted on %s, want %s", got, addr)
	}
	poll.Until(t, 10*time.Second, "the connection back", func() bool { return nc.IsConnected() && nc.Stats().Reconnects > 0 })
}

func TestStartWithoutCache(t *testing.T) {
	tiers := StartWith(t, Options{Topics: []string{"t"}, NoCache: true})
	if tiers.Node != nil {
		t.Fatal("a cache node with NoCache")
	}
	node, stop := tiers.RunCache(cache.Config{Brokers: []string{tiers.Kafka}, NATS: tiers.Connect(), Bootstrap: []string{"t"}})
	poll.Until(t, 30*time.Second, "the test's cache node ready", node.Ready)
	stop()
	stop() // twice is fine: the test's end calls it too
}
