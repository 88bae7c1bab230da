package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/poll"
)

func getStatus(addr string) (cacheStatus, error) {
	var st cacheStatus
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// TestClusterProcessesSurviveKill9 is Done-when 2 of the cluster issue with
// real processes: three cache nodes gossiping on loopback, each partition
// held by exactly --replicas of them, and a kill -9 of a primary while
// records are produced loses nothing for a client that streams throughout.
func TestClusterProcessesSurviveKill9(t *testing.T) {
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	kafkaAddr, natsURL := devServices(t)
	config := fixture(t, "tasks-cluster")
	type node struct {
		name, gossip, http string
		proc               *process
	}
	var nodes []*node
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), gossip: freeAddr(t), http: freeAddr(t)}
		args := []string{"cache", "--config", config, "--kafka", kafkaAddr, "--nats", natsURL,
			"--gossip", n.gossip, "--http", n.http, "--name", n.name}
		if i > 0 {
			args = append(args, "--join", nodes[0].gossip)
		}
		n.proc = start(t, args...)
		n.proc.waitFor(t, "cache node running")
		nodes = append(nodes, n)
	}
	// Every node sees three caught-up members; each partition has exactly
	// two holders, one of them primary.
	var holders map[int32][]string
	var primary0 *node
	waitUntil(t, "three settled members and a stable assignment", func() bool {
		holders = map[int32][]string{}
		primaries := map[int32]int{}
		for _, n := range nodes {
			st, err := getStatus(n.http)
			if err != nil || len(st.Members) != 3 || !st.Ready {
				return false
			}
			for _, m := range st.Members {
				if !m.Settled {
					return false
				}
			}
			for _, ts := range st.Topics {
				for _, h := range ts.Held {
					holders[h.Partition] = append(holders[h.Partition], n.name)
					if h.Role == "primary" {
						primaries[h.Partition]++
						if h.Partition == 0 {
							primary0 = n
						}
					}
				}
			}
		}
		for p := range int32(3) {
			if len(holders[p]) != 2 || primaries[p] != 1 {
				return false
			}
		}
		return true
	})
	t.Logf("holders %v; primary of tasks/0: %s", holders, primary0.name)

	edgeProc := start(t, "edge", "--config", config, "--nats", natsURL, "--http", httpAddr, "--admin", adminAddr)
	edgeProc.waitFor(t, "edge serving")
	s := openStream(t, "http://"+httpAddr+"/tasks", "")
	if data, _ := s.untilReady(t); len(data) != 0 {
		t.Fatalf("empty topic streamed %q", data)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("tasks"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	want := map[string]string{}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := range 400 {
		<-tick.C
		if i == 100 {
			// The fetch metrics agree: each partition consumed by exactly two nodes.
			waitUntil(t, "records consumed by exactly two nodes per partition", func() bool {
				for p := range 3 {
					consumers := 0
					for _, n := range nodes {
						if consumed(t, n.http, p) > 0 {
							consumers++
						}
					}
					if consumers != 2 {
						return false
					}
				}
				return true
			})
		}
		if i == 200 {
			if err := primary0.proc.cmd.Process.Kill(); err != nil { // SIGKILL: no goodbye
				t.Fatal(err)
			}
			t.Logf("killed -9 %s", primary0.name)
		}
		key := fmt.Sprintf("k%d", i%40)
		value := fmt.Sprintf("%s=%d", key, i)
		r := &kgo.Record{Key: []byte(key), Value: []byte(value), Partition: int32(i % 3)}
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want[key] = value
	}
	got := map[string]string{}
	for !equalMaps(got, want) {
		ev := s.next(t)
		if ev.event == "" {
			k, _, _ := strings.Cut(ev.data, "=")
			got[k] = ev.data
		}
	}
	// What cache nodes publish, a crash included, is no bad change: the
	// metric operators alert on stays 0.
	if n := metricValue(t, adminAddr, "ssekafka_edge_bad_changes_total "); n != 0 {
		t.Fatalf("the edge counted %v bad changes", n)
	}
}

// metricValue reads the sample whose line starts with prefix (name and
// labels, then a space) from addr's /metrics; -1 if there is none.
func metricValue(t *testing.T, addr, prefix string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// consumed reads ssekafka_cache_records_consumed_total for tasks/partition
// from a cache node's /metrics.
func consumed(t *testing.T, addr string, partition int) float64 {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf(`ssekafka_cache_records_consumed_total{partition="%d",topic="tasks"} `, partition)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, want); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 60*time.Second, what, cond)
}
