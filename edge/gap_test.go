package edge_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/proto"
)

func (s *stack) edgeCounter(name string) float64 {
	s.t.Helper()
	return s.counter(s.edgeReg, name)
}

// counter sums a counter's series in reg.
func (s *stack) counter(reg *prometheus.Registry, name string) float64 {
	s.t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// readLive applies a live client's events until its view equals want.
func readUntilView(t *testing.T, c *sseClient, view, want map[string]string) {
	t.Helper()
	seen := map[string]bool{}
	for !maps.Equal(view, want) {
		ev, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("%v; view has %d keys, want %d", err, len(view), len(want))
		}
		if !ev.HasID {
			continue
		}
		_, _, change := keyedEvent(t, ev)
		if ev.Event == "" {
			if seen[change] {
				t.Fatalf("%q twice in one connection", change)
			}
			seen[change] = true
		}
		apply(view, change)
	}
}

// readExact reads a live client's events until its view is the model's
// final state. Every event must carry its key's value as of its own id,
// every id must be a true position (the view there plus the stream docs/architecture.md
// rule 2 gives from it is the final state), ids never go back, and no value
// comes twice: a fill that lost, reordered, repeated or misplaced a change
// fails here, whatever the counters say.
func readExact(t *testing.T, c *sseClient, view map[string]string, m *model) {
	t.Helper()
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})
	seen := map[string]bool{}
	var last proto.Progress
	for !maps.Equal(view, final) {
		ev, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("%v; view has %d keys, want %d", err, len(view), len(final))
		}
		if !ev.HasID {
			continue
		}
		key, p, change := keyedEvent(t, ev)
		if ev.Event == "" {
			if seen[change] {
				t.Fatalf("%q twice in one connection", change)
			}
			seen[change] = true
		}
		for i, o := range last.Offsets {
			if p.Offset(int32(i)) < o {
				t.Fatalf("%q at %v: id went back from %v", change, p.Offsets, last.Offsets)
			}
		}
		last = p
		if want, ok := m.asOf(p)[key]; ev.Event == "" && (!ok || change != key+"="+want) {
			t.Fatalf("%q at %v: the model has %s=%q there", change, p.Offsets, key, want)
		}
		apply(view, change)
		trueAt(t, m, view, p, 3, final)
	}
}

// A feed whose buffer overflows loses live messages in NATS; it must see the
// gap by offsets (a change's From, or a head, past the feed's position) and
// fill it from the cache before sending anything newer.
func TestLiveGapIsFilled(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.FeedBuffer = 1 }})
	var m model
	c := s.connect("/keyed", nil)
	view := map[string]string{}
	for _, ev := range c.untilReady()[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(view, change)
	}
	for burst := 0; burst < 20 && s.edgeCounter("ssekafka_edge_live_gaps_total") == 0; burst++ {
		var recs []*kgo.Record
		for i := range 300 {
			recs = append(recs, rec(int32(i%50%3), fmt.Sprintf("k%d", i%50), fmt.Sprintf("b%d-%d", burst, i))) // a key stays in its partition
		}
		m.add(s.produce("tasks", recs...)...)
	}
	if s.edgeCounter("ssekafka_edge_live_gaps_total") == 0 {
		t.Fatal("no gap was provoked")
	}
	readExact(t, c, view, &m)
	if s.edgeCounter("ssekafka_edge_gap_fills_total") == 0 {
		t.Fatal("gap seen but never filled")
	}
}

// A restarted cache node consumes its partitions from the start again, and
// records were produced while none ran: the edge must fill what it missed
// from its position, skip the replay, and not resend what clients hold.
func TestCacheRestartKeepsStreamsExact(t *testing.T) {
	s := newStack(t, stackOptions{})
	var m model
	m.add(s.produce("tasks", rec(0, "a", "a1"), rec(1, "b", "b1"))...)
	c := s.connect("/keyed", nil)
	view := map[string]string{}
	for _, ev := range c.untilReady()[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(view, change)
	}
	s.stopCache()
	m.add(s.produceToKafka("tasks", rec(0, "a", "a2"), rec(2, "c", "c1"))...) // while no cache runs
	s.startCache(nil)
	m.add(s.produce("tasks", rec(1, "b", "b2"))...)
	readExact(t, c, view, &m)
	// Nothing more arrives: the new node's replay of old records is skipped.
	if ev, err := c.next(500 * time.Millisecond); err == nil && ev.HasData {
		t.Fatalf("unexpected event after catching up: %+v", ev)
	}
}

// A NATS outage loses live changes in transit; after the reconnect the edge
// fills from the cache, and clients end exact, without duplicates.
func TestNATSRestartIsFilled(t *testing.T) {
	s := newStack(t, stackOptions{})
	var m model
	m.add(s.produce("tasks", rec(0, "a", "a1"))...)
	c := s.connect("/keyed", nil)
	view := map[string]string{}
	for _, ev := range c.untilReady()[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(view, change)
	}
	s.restartNATS()
	m.add(s.produceToKafka("tasks", rec(0, "a", "a2"), rec(1, "b", "b1"), rec(2, "c", "c1"))...)
	m.add(s.produce("tasks", rec(1, "d", "d1"))...)
	readExact(t, c, view, &m)
	// The feed noticed the reconnect and filled every partition.
	eventually(t, 5*time.Second, "gap fills after the reconnect", func() bool {
		return s.edgeCounter("ssekafka_edge_gap_fills_total") >= 3
	})
}

func TestKeepAliveComment(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.KeepAlive = 50 * time.Millisecond }})
	c := s.connect("/tasks", nil)
	c.untilReady()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-c.events:
			if ev.Raw == ":\n\n" {
				return
			}
			t.Fatalf("unexpected %q while idle", ev.Raw)
		case <-deadline:
			t.Fatal("no keep-alive comment")
		}
	}
}

// A topic deleted and created again is a new epoch: streams on the old one
// end, and a client resuming with an old id gets event:reset and the new
// topic's state, never the two mixed.
func TestRecreatedTopicResetsClients(t *testing.T) {
	s := newStack(t, stackOptions{cacheCfg: fastTopicChecks})
	s.produce("tasks", rec(0, "a", "old-a"), rec(1, "b", "old-b"))
	c := s.connect("/tasks", nil)
	evs := c.untilReady()
	lastID := evs[len(evs)-1].ID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	prod := s.recreateTopic(ctx, "tasks", 3)
	r := rec(2, "c", "new-c")
	r.Topic = "tasks"
	if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for { // the old stream ends
		if _, err := c.next(15 * time.Second); err == errStreamEnded {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	eventually(t, 15*time.Second, "the new topic's state after a reset", func() bool {
		r, status := s.open("/tasks", http.Header{"Last-Event-Id": {lastID}})
		if status != http.StatusOK {
			return false
		}
		defer r.close()
		got = nil
		for _, ev := range r.untilReady()[1:] {
			got = append(got, ev.Event+":"+ev.Data)
		}
		return fmt.Sprint(got) == `[reset:{"reason":"epoch"} :new-c ready:{}]`
	})
	t.Logf("resumed with the old id: %q", got)
}

// fastTopicChecks has the cache check topics often and see Kafka's metadata
// as it is: kgo caches metadata for MetadataMinAge (5 s by default), which
// would hide a deletion followed soon by a creation.
func fastTopicChecks(c *cache.Config) {
	c.TopicCheckInterval = 100 * time.Millisecond
	c.HeadInterval = 100 * time.Millisecond
	c.KafkaOptions = append(c.KafkaOptions, kgo.MetadataMinAge(10*time.Millisecond))
}

// A topic deleted, noticed gone by the cache, and created again later: the
// streams on it end, new requests get 404 while it does not exist, and
// once it exists again it is served, a client resuming with an old id
// getting event:reset and the new state (defect 4 of issue 8).
func TestTopicRecreatedLaterIsServed(t *testing.T) {
	s := newStack(t, stackOptions{cacheCfg: fastTopicChecks})
	s.produce("tasks", rec(0, "a", "old-a"), rec(1, "b", "old-b"))
	c := s.connect("/tasks", nil)
	evs := c.untilReady()
	lastID := evs[len(evs)-1].ID
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.adm().DeleteTopics(ctx, "tasks"); err != nil {
		t.Fatal(err)
	}
	for { // the stream on the deleted topic ends
		if _, err := c.next(10 * time.Second); err == errStreamEnded {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "404 while the topic does not exist", func() bool {
		r, status := s.open("/tasks", nil)
		if status == http.StatusOK {
			r.close()
		}
		return status == http.StatusNotFound
	})
	if err := devstack.CreateCompactedTopics(ctx, s.brokers, 3, "tasks"); err != nil {
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(s.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	r := rec(2, "c", "new-c")
	r.Topic = "tasks"
	if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var got []string
	eventually(t, 15*time.Second, "the new topic's state after a reset", func() bool {
		r, status := s.open("/tasks", http.Header{"Last-Event-Id": {lastID}})
		if status != http.StatusOK {
			return false
		}
		defer r.close()
		got = nil
		for _, ev := range r.untilReady()[1:] {
			got = append(got, ev.Event+":"+ev.Data)
		}
		return fmt.Sprint(got) == `[reset:{"reason":"epoch"} :new-c ready:{}]`
	})
}
