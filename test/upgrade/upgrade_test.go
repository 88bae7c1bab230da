// Package upgrade runs the previous release (63c3e19) beside this tree, as
// a rolling upgrade does: an edge of one version against a cache node of
// the other, as separate processes over loopback (kfake and nats-server
// in the test). What it shows is what docs/upgrading.md says.
package upgrade

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/internal/ssetest"
)

// maxPayload is the NATS server's max payload: a record of bigValue bytes
// does not fit in one message, so the cache sends it apart and the edge
// reads it back in parts.
const (
	maxPayload = 64 << 10
	bigValue   = 200 << 10
)

const config = `
sse:
  retry: 2000
routes:
  - when: [{path: /t}]
    with: {topic: up}
  - when: [{path: "/v/{id}"}]
    with: {topic: up, filters: [{key: "${params.id}"}]}
kafka:
  bootstrap: [up]
`

// mixed is cache nodes and edges, each its own process, possibly of
// different versions, on in-process kfake and nats-server.
type mixed struct {
	cacheHTTP string // the first cache node's /metrics
	edges     []*edgeProc
	prod      *kgo.Client
}

type edgeProc struct {
	*proc
	url, admin string
}

// startMixed starts a cache node from each of cacheBins (several: one
// memberlist cluster, every partition held by two), writes the state, and
// starts an edge from each of edgeBins.
func startMixed(t *testing.T, cacheBins []string, edgeBins ...string) *mixed {
	t.Helper()
	kc, kafka, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, []string{kafka}, 3, "up"); err != nil {
		t.Fatal(err)
	}
	ns, err := devstack.StartNATSMaxPayload("127.0.0.1:0", maxPayload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	path := filepath.Join(t.TempDir(), "ssekafka.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &mixed{cacheHTTP: freeAddr(t)}
	m.prod, err = kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("up"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.prod.Close)
	var caches []string // their /metrics
	var join string
	for i, bin := range cacheBins {
		httpAddr := m.cacheHTTP
		if i > 0 {
			httpAddr = freeAddr(t)
		}
		args := []string{"cache", "--config", path, "--kafka", kafka, "--nats", ns.ClientURL(), "--http", httpAddr}
		if len(cacheBins) > 1 {
			gossip := freeAddr(t)
			args = append(args, "--gossip", gossip, "--name", fmt.Sprintf("c%d", i), "--replicas", "2")
			if join != "" {
				args = append(args, "--join", join)
			}
			join = gossip
		}
		startProc(t, bin, fmt.Sprintf("cache %d (%s)", i, filepath.Base(bin)), args...).WaitFor(t, "cache node running")
		caches = append(caches, httpAddr)
	}
	// The state: three small keys, one per partition, and one record too
	// large for a NATS message, consumed by the cache node.
	m.produce(t, 0, "k0", 1, 100)
	m.produce(t, 1, "k1", 1, 100)
	m.produce(t, 2, "k2", 1, 100)
	m.produce(t, 0, "big", 1, bigValue)
	for _, c := range caches {
		if err := poll.Wait(ctx, 20*time.Millisecond, func() bool {
			return counter(t, c, "ssekafka_cache_records_consumed_total") == 4
		}); err != nil {
			t.Fatalf("the cache node did not consume the 4 records: %v", counters(c, "consumed"))
		}
		if len(caches) > 1 {
			if err := poll.Wait(ctx, 20*time.Millisecond, func() bool {
				return counter(t, c, "ssekafka_cache_partitions_held") == 3
			}); err != nil {
				t.Fatalf("the cache node does not hold the 3 partitions: %v", counters(c, "held"))
			}
		}
	}
	for i, bin := range edgeBins {
		addr, admin := freeAddr(t), freeAddr(t)
		e := &edgeProc{url: "http://" + addr, admin: admin}
		e.proc = startProc(t, bin, fmt.Sprintf("edge %d (%s)", i, filepath.Base(bin)), "edge", "--config", path,
			"--nats", ns.ClientURL(), "--http", addr, "--admin", admin)
		e.WaitFor(t, "edge serving")
		m.edges = append(m.edges, e)
	}
	return m
}

// value is a record's value: its key and version, padded to size bytes.
func value(key string, v, size int) []byte {
	b := fmt.Appendf(nil, `{"k":%q,"v":%d,"pad":"`, key, v)
	for len(b) < size-2 {
		b = append(b, 'a'+byte(len(b)%26))
	}
	return append(b, `"}`...)
}

func (m *mixed) produce(t *testing.T, partition int32, key string, v, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &kgo.Record{Partition: partition, Key: []byte(key), Value: value(key, v, size)}
	if err := m.prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

type event struct {
	id, event string
	key       string // from the value's "k"
	v, size   int
}

func (e event) String() string {
	return fmt.Sprintf("%s %s=v%d (%d bytes)", e.event, e.key, e.v, e.size)
}

// stream reads SSE events.
type stream struct {
	events chan event
	cancel context.CancelFunc
}

func openStream(t *testing.T, url, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	s := &stream{events: make(chan event, 1024), cancel: cancel}
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		r := ssetest.NewReader(resp.Body)
		for {
			sev, err := r.Next()
			if err != nil {
				return
			}
			if sev.Event == "" && sev.Data == "" {
				continue // a keep-alive or a retry
			}
			ev := event{id: sev.ID, event: sev.Event, size: len(sev.Data)}
			var d struct {
				K string `json:"k"`
				V int    `json:"v"`
			}
			if json.Unmarshal([]byte(sev.Data), &d) == nil {
				ev.key, ev.v = d.K, d.V
			}
			s.events <- ev
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *stream) close() { s.cancel() }

// next returns the next event, or false when none came within limit or
// the stream ended.
func (s *stream) next(limit time.Duration) (event, bool) {
	select {
	case ev, ok := <-s.events:
		return ev, ok
	case <-time.After(limit):
		return event{}, false
	}
}

// untilReady returns the events before ready and ready itself.
func (s *stream) untilReady(limit time.Duration) (before []event, ready event, ok bool) {
	deadline := time.Now().Add(limit)
	for {
		ev, ok := s.next(time.Until(deadline))
		if !ok {
			return before, event{}, false
		}
		if ev.event == "ready" {
			return before, ev, true
		}
		before = append(before, ev)
	}
}

// until reads events until one of key at version v, and returns the last
// event read (its id is the client's position).
func (s *stream) until(t *testing.T, key string, v int) event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var seen []event
	for {
		ev, ok := s.next(time.Until(deadline))
		if !ok {
			t.Fatalf("no %s=v%d within 30s; got %v", key, v, seen)
		}
		seen = append(seen, ev)
		if ev.key == key && ev.v == v {
			return ev
		}
	}
}

// keyRead is a JSON read of one key: status and the value's version.
func (e *edgeProc) keyRead(key string) (status, v int, body string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/v/"+key, nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var d struct {
		V int `json:"v"`
	}
	_ = json.Unmarshal(b, &d)
	return resp.StatusCode, d.V, strings.TrimSpace(string(b))
}

// TestMixedVersions runs each step of a rolling upgrade: an edge of the
// previous release against a cache node of this tree and the reverse, a
// client moving between edges of both versions, and a cache cluster of
// both versions under a new edge. Streams interoperate
// every way: the state (a record apart included), live changes (one read
// back in parts) and a resume from Last-Event-ID. So do key reads (JSON
// reads of a keyed route): a new cache node answers a request without a
// floor (all the previous release sends) in the previous form, without
// its position; a new edge whose floor an old cache node refuses asks
// again without it, and sends none for a minute. docs/upgrading.md says
// the same.
func TestMixedVersions(t *testing.T) {
	old, cur := binaries(t)
	t.Run("old edge, new cache", func(t *testing.T) {
		t.Parallel()
		m := startMixed(t, []string{cur}, old)
		e := m.edges[0]
		e.wantKeyRead(t, "k1", http.StatusOK, 1)
		streams(t, m, e, e, 1)
		// The previous edge's requests carry no floor: the new cache node
		// answers in the previous form (no position), which it decodes.
		e.wantKeyRead(t, "k1", http.StatusOK, 2)
		e.wantKeyRead(t, "big", http.StatusOK, 1) // apart: read in parts
		if n := counter(t, m.cacheHTTP, "ssekafka_cache_bad_requests_total"); n != 0 {
			t.Errorf("the new cache node refused %v requests of the previous edge", n)
		}
	})
	t.Run("new edge, old cache", func(t *testing.T) {
		t.Parallel()
		m := startMixed(t, []string{old}, cur)
		e := m.edges[0]
		e.wantKeyRead(t, "k1", http.StatusOK, 1) // no stream of the topic: no floor
		streams(t, m, e, e, 1)
		// With a stream of the topic open the request carries a floor,
		// which the old cache node refuses as malformed (and counts); the
		// edge says so, asks again without it and answers.
		e.wantKeyRead(t, "k1", http.StatusOK, 2)
		e.WaitFor(t, "refuses key read floors")
		refused := counter(t, m.cacheHTTP, "ssekafka_cache_bad_requests_total")
		if refused == 0 {
			t.Error("the old cache node did not count the key requests it refused")
		}
		// For a minute the edge sends no floor: no more refusals.
		e.wantKeyRead(t, "big", http.StatusOK, 1)
		e.wantKeyRead(t, "k1", http.StatusOK, 2)
		if n := counter(t, m.cacheHTTP, "ssekafka_cache_bad_requests_total"); n != refused {
			t.Errorf("the old cache node refused %v key requests, then %v: the edge kept sending floors", refused, n)
		}
	})
	// Edges first, over a cache node of the previous release: a client of
	// an old edge resumes on a new one from its Last-Event-ID, and back (a
	// rollback).
	t.Run("old edge to new edge, old cache", func(t *testing.T) {
		t.Parallel()
		m := startMixed(t, []string{old}, old, cur)
		streams(t, m, m.edges[0], m.edges[1], 1)
		streams(t, m, m.edges[1], m.edges[0], 2)
		for _, e := range m.edges {
			e.wantKeyRead(t, "k1", http.StatusOK, 3)
		}
	})
	// Then the cache nodes one at a time: new edges over a cluster of an
	// old and a new cache node, each holding every partition (either may
	// answer a part of a record apart); the first started is primary.
	t.Run("new edge, old primary and new standby", func(t *testing.T) {
		t.Parallel()
		m := startMixed(t, []string{old, cur}, cur)
		streams(t, m, m.edges[0], m.edges[0], 1)
		m.edges[0].wantKeyRead(t, "k1", http.StatusOK, 2)
		m.edges[0].wantKeyRead(t, "big", http.StatusOK, 1)
	})
	t.Run("new edge, new primary and old standby", func(t *testing.T) {
		t.Parallel()
		m := startMixed(t, []string{cur, old}, cur)
		streams(t, m, m.edges[0], m.edges[0], 1)
		m.edges[0].wantKeyRead(t, "k1", http.StatusOK, 2)
		m.edges[0].wantKeyRead(t, "big", http.StatusOK, 1)
	})
}

// streams checks what a client gets: the state and live changes from edge
// from, then a resume on edge to from its last event. round numbers the
// versions of the records it writes: 1, 2, ... on one cluster.
func streams(t *testing.T, m *mixed, from, to *edgeProc, round int) {
	t.Helper()
	var state []event
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var s *stream
	err := poll.Wait(ctx, 200*time.Millisecond, func() bool {
		if s != nil {
			s.close()
		}
		s = openStream(t, from.url+"/t", "")
		var ok bool
		state, _, ok = s.untilReady(10 * time.Second)
		keys := map[string]bool{}
		for _, ev := range state {
			keys[ev.key] = true
		}
		return ok && keys["k0"] && keys["k1"] && keys["k2"] && keys["big"]
	})
	if err != nil {
		t.Fatalf("state: want k0, k1, k2 and big (%d bytes) before ready, got %v", bigValue, state)
	}
	for _, ev := range state {
		if ev.key == "big" && ev.size != bigValue {
			t.Errorf("state: the record apart has %d bytes, want %d", ev.size, bigValue)
		}
	}
	// Live: a small change, and one the edge reads back in parts.
	m.produce(t, 1, "k1", round+1, 100)
	s.until(t, "k1", round+1)
	m.produce(t, 2, "big2", round, bigValue)
	last := s.until(t, "big2", round)
	if last.size != bigValue {
		t.Errorf("live record apart: %d bytes, want %d", last.size, bigValue)
	}
	s.close()
	// A resume from the last event: the change made while away, and no
	// reset.
	m.produce(t, 2, "k2", round+1, 100)
	r := openStream(t, to.url+"/t", last.id)
	before, _, ok := r.untilReady(30 * time.Second)
	if !ok {
		t.Fatalf("resume: no ready; got %v", before)
	}
	for _, ev := range before {
		if ev.event == "reset" || ev.key != "k2" {
			t.Errorf("resume from %s on %s: want only k2=v%d, got %v", last.id, to.Name, round+1, before)
			break
		}
	}
	if len(before) == 0 {
		r.until(t, "k2", round+1)
	}
	r.close()
}

// wantKeyRead checks one JSON read of key.
func (e *edgeProc) wantKeyRead(t *testing.T, key string, status, v int) {
	t.Helper()
	gotStatus, gotV, body := e.keyRead(key)
	if gotStatus != status || gotV != v {
		t.Errorf("GET /v/%s: %d v%d (%.100q), want %d v%d", key, gotStatus, gotV, body, status, v)
	}
}

// counter sums the samples of one metric on a /metrics page.
func counter(t *testing.T, addr, name string) float64 {
	t.Helper()
	var sum float64
	for _, line := range counters(addr, name) {
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err != nil {
			t.Fatalf("%s: %q: %v", name, line, err)
		}
		sum += v
	}
	return sum
}

// counters returns the non-zero counters of a /metrics page whose names
// contain any of substrs.
func counters(addr string, substrs ...string) []string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return []string{err.Error()}
	}
	defer resp.Body.Close()
	var found []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.HasSuffix(line, " 0") {
			continue
		}
		for _, s := range substrs {
			if strings.Contains(line, s) {
				found = append(found, line)
				break
			}
		}
	}
	return found
}
