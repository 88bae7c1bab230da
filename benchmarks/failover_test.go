package benchmarks

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/membership"
)

var failoverRuns = flag.Int("failover-runs", 10, "kills per failure-detection setting in BenchmarkFailoverStall")

// cacheTrio is three in-process cache nodes gossiping on loopback.
type cacheTrio struct {
	nodes []*trioNode
}

type trioNode struct {
	members *membership.Cluster
	node    *cache.Node
	crash   func()
}

func startTrio(ctx context.Context, c *Cluster, mcfg membership.Config) (*cacheTrio, error) {
	trio := &cacheTrio{}
	for i := range 3 {
		cfg := mcfg
		cfg.Name, cfg.Bind = fmt.Sprintf("node-%d-%d", i, time.Now().UnixNano()), "127.0.0.1:0"
		if i > 0 {
			cfg.Join = []string{trio.nodes[0].members.Addr()}
		}
		mc, err := membership.NewCluster(cfg)
		if err != nil {
			return trio, err
		}
		nc, err := nats.Connect(c.NATSURL)
		if err != nil {
			return trio, err
		}
		node, err := cache.New(cache.Config{Brokers: c.Brokers, NATS: nc, Ownership: mc, Bootstrap: []string{c.Topic}})
		if err != nil {
			return trio, err
		}
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = node.Run(runCtx) }()
		var once sync.Once
		trio.nodes = append(trio.nodes, &trioNode{members: mc, node: node, crash: func() {
			once.Do(func() { _ = mc.Shutdown(); nc.Close(); cancel(); <-done })
		}})
	}
	return trio, waitFor(ctx, func() bool {
		for _, n := range trio.nodes {
			settled := 0
			for _, m := range n.members.Members() {
				if m.Settled {
					settled++
				}
			}
			if settled != 3 || !n.node.Ready() {
				return false
			}
		}
		return true
	})
}

func (t *cacheTrio) close() {
	for _, n := range t.nodes {
		n.crash()
	}
}

// BenchmarkFailoverStall kills the primary of a partition (no goodbye:
// memberlist must detect it) while a producer writes to that partition every
// 2 ms, and measures the time from the kill to the first event produced after
// it that reaches a client. It runs -failover-runs kills with memberlist's
// LAN failure detection and as many with a fast one.
func BenchmarkFailoverStall(b *testing.B) {
	for _, setting := range []struct {
		name string
		cfg  membership.Config
	}{
		{"lan-defaults", membership.Config{}},
		{"fast-probe-100ms", membership.Config{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, SuspicionMult: 2}},
	} {
		b.Run(setting.name, func(b *testing.B) {
			var stalls []time.Duration
			for range b.N {
				for range *failoverRuns {
					stalls = append(stalls, failoverOnce(b, setting.cfg))
				}
			}
			slices.Sort(stalls)
			b.ReportMetric(float64(stalls[len(stalls)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(stalls[len(stalls)-1].Milliseconds()), "max-ms")
			b.ReportMetric(float64(stalls[0].Milliseconds()), "min-ms")
		})
	}
}

func failoverOnce(b *testing.B, mcfg membership.Config) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, "bench", 3, WithoutCache())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	trio, err := startTrio(ctx, c, mcfg)
	defer trio.close()
	if err != nil {
		b.Fatal(err)
	}
	// A client that notes when each sequence number arrives.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.EdgeURL+"/t", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var mu sync.Mutex
	arrived := map[int]time.Time{}
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "data:seq-"); ok {
				if n, err := strconv.Atoi(v); err == nil {
					mu.Lock()
					arrived[n] = time.Now()
					mu.Unlock()
				}
			}
		}
	}()
	var primary *trioNode
	name, _ := trio.nodes[0].members.Owners("bench", 0)
	for _, n := range trio.nodes {
		if n.members.Name() == name {
			primary = n
		}
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var killedAt time.Time
	killSeq := -1
	for seq := 0; ; seq++ {
		<-tick.C
		if seq == 200 {
			primary.crash()
			killedAt, killSeq = time.Now(), seq
		}
		r := &kgo.Record{Topic: "bench", Partition: 0, Key: []byte(fmt.Sprintf("k%d", seq%50)), Value: []byte(fmt.Sprintf("seq-%d", seq))}
		prod.Produce(ctx, r, nil)
		if killSeq >= 0 {
			mu.Lock()
			var first time.Time
			for s, at := range arrived {
				if s >= killSeq && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			mu.Unlock()
			if !first.IsZero() {
				return first.Sub(killedAt)
			}
		}
		if ctx.Err() != nil {
			b.Fatal("no event after the kill")
		}
	}
}
