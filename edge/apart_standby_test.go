package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// standbyVariants are the cache tiers every test of records apart runs
// against: one node, and a primary beside a standby whose Kafka reads lag
// (a standby a few milliseconds behind, and one a third of a second).
var standbyVariants = []struct {
	name string
	lag  time.Duration
}{{"single", 0}, {"standby-5ms", 5 * time.Millisecond}, {"standby-300ms", 300 * time.Millisecond}}

// withStandbys runs test once per standbyVariants, as subtests.
func withStandbys(t *testing.T, test func(t *testing.T, lag time.Duration)) {
	for _, v := range standbyVariants {
		t.Run(v.name, func(t *testing.T) { test(t, v.lag) })
	}
}

// collect reads c until it has a message event for every value of want
// (value to name), or fails naming what it lacks after timeout.
func collect(t *testing.T, what string, c *sseClient, want map[string]string, timeout time.Duration) {
	t.Helper()
	got := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(got) < len(want) {
		ev, err := c.next(time.Until(deadline))
		if err != nil {
			var missing []string
			for v, name := range want {
				if !got[v] {
					missing = append(missing, name)
				}
			}
			t.Errorf("%s: %d of %d records (%v); missing %v", what, len(got), len(want), err, missing)
			return
		}
		if name, ok := want[ev.Data]; ok && ev.Event == "" {
			if got[ev.Data] {
				t.Fatalf("%s: %s twice", what, name)
			}
			got[ev.Data] = true
		}
	}
}

// idOf reads c until a message with data, and returns its id.
func idOf(c *sseClient, data string) string {
	c.t.Helper()
	for {
		if ev := nextMessage(c); ev.Data == data {
			return ev.ID
		}
	}
}

// A record sent apart is read in parts from whichever holder of its
// partition the queue group picks. A standby that has not applied the
// record yet answered Gone ("superseded"), and the edge dropped the record
// and moved past its offset: with a standby 5 ms behind, a live client
// lost 4 of 9 keys; 300 ms behind, a new client's state lacked 2 of 9
// while its ready covered them; and null-key records apart (which only the
// primary kept at hand) never reached a live client at all. Now a holder
// that has not applied the offset answers "not yet" and the edge asks
// again: live, in a new client's state, on a resume, in a key read, null
// keys included, every record arrives.
func TestApartRecordsReachClientsBesideLaggingStandby(t *testing.T) {
	for _, v := range standbyVariants[1:] {
		t.Run(v.name, func(t *testing.T) {
			s := newStack(t, stackOptions{partitions: 1, maxPayload: 64 << 10, standbyLag: v.lag})
			s.standbyBehind = true // clients start while the standby lags
			s.produce("tasks", rec(0, "first", "v0"))
			// A holder behind may answer the state: "first" comes in it, or live after.
			start := idOf(s.connect("/tasks", nil), "v0")
			live := s.connect("/tasks", nil)
			live.untilReady()

			// Rounds of 9 keys at once: a live client and a client that
			// starts right after them (its pages from either holder).
			keyed, apart := map[string]string{}, 0
			for round := range 3 {
				batch := map[string]string{}
				var recs []*kgo.Record
				for i := range 9 {
					k := fmt.Sprintf("r%dk%d", round, i)
					value := bigValue(k, 100<<10)
					batch[value], keyed[value] = k, k
					recs = append(recs, rec(0, k, value))
				}
				s.produce("tasks", recs...)
				fresh := s.connect("/tasks", nil)
				collect(t, fmt.Sprintf("round %d: live client", round), live, batch, 10*time.Second)
				collect(t, fmt.Sprintf("round %d: new client", round), fresh, batch, 10*time.Second)
				fresh.close()
				apart += len(recs)
			}
			nullKeyed := map[string]string{}
			var nulls []*kgo.Record
			for i := range 6 {
				value := bigValue(fmt.Sprintf("null%d", i), 100<<10)
				nullKeyed[value] = fmt.Sprintf("null-key record %d", i)
				nulls = append(nulls, &kgo.Record{Partition: 0, Value: []byte(value)})
			}
			s.produce("tasks", nulls...)
			collect(t, "live client, null keys", live, nullKeyed, 10*time.Second)
			apart += len(nulls)

			resumed := s.connect("/tasks", http.Header{"Last-Event-ID": {start}})
			collect(t, "resumed client", resumed, keyed, 20*time.Second)

			// A key read answers the whole value or nothing yet (whether a
			// lagging holder's "not found" may answer is the key read's own
			// question), never another value or an error.
			for value, k := range keyed {
				eventually(t, 10*time.Second, "key read of "+k, func() bool {
					status, _, body := s.getJSON(http.MethodGet, "/tasks/"+k, nil)
					if status == 200 && body != value || status >= 500 {
						t.Fatalf("key read of %s: %d, %d bytes", k, status, len(body))
					}
					return status == 200
				})
			}
			if n := s.counter(s.cacheReg, "ssekafka_cache_records_apart_total"); n < float64(apart) {
				t.Fatalf("%v records apart, want %d: the test does not reach the path", n, apart)
			}
		})
	}
}

// A null-key record apart that no holder can give (none kept it at hand,
// and Kafka dropped it before the edge asked for its parts) cannot reach
// the live clients, and no state page holds it: each live stream a null
// key may match gets event:reset with an id at the start, which brings the
// full state on its next connection; a stream whose key filter cannot
// match a null key goes on. Before, the feed moved past the record with a
// log line only.
func TestUnreadableNullKeyRecordResetsLiveClients(t *testing.T) {
	var armed atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	s := newStack(t, stackOptions{partitions: 1, maxPayload: 64 << 10, routes: apartRoutes(),
		cacheCfg: func(c *cache.Config) { c.ApartBytes = 1 }, // nothing kept at hand
		edgeCfg: func(c *edge.Config) {
			edge.HoldFeeds(c, func() {
				if armed.CompareAndSwap(true, false) {
					close(held)
					<-release
				}
			})
		}})
	s.produce("tasks", rec(0, "a", "v0"))
	live, byKey := s.connect("/tasks", nil), s.connect("/tasks/a", nil)
	live.untilReady()
	byKey.untilReady()
	armed.Store(true)
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the feed never held")
	}
	null := &kgo.Record{Partition: 0, Value: []byte(bigValue("lost", 100<<10))}
	s.produce("tasks", null, rec(0, "b", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var upTo kadm.Offsets
	upTo.Add(kadm.Offset{Topic: "tasks", Partition: 0, At: null.Offset + 1})
	if resp, err := s.adm().DeleteRecords(ctx, upTo); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v, %v", err, resp.Error())
	}
	close(release)

	var reset event
	for reset.Event != "reset" {
		ev, err := live.next(10 * time.Second)
		if err != nil {
			t.Fatalf("live client: %v before event:reset", err)
		}
		if ev.Data == string(null.Value) {
			t.Fatal("live client: got the record Kafka had dropped")
		}
		reset = ev
	}
	if !strings.Contains(reset.Data, `"lost"`) || !reset.HasID {
		t.Fatalf("reset: %+v, want reason lost and an id", reset)
	}
	if _, err := live.next(5 * time.Second); err != errStreamEnded {
		t.Fatalf("after the reset: %v, want the stream ended", err)
	}
	evs := messages(s.connect("/tasks", http.Header{"Last-Event-ID": {reset.ID}}).untilReady())
	if len(evs) != 2 || evs[0].Data != "v0" || evs[1].Data != "v1" {
		t.Fatalf("with the reset's id: %d records, want the full state (a, b)", len(evs))
	}
	s.produce("tasks", rec(0, "a", "v2"))
	if ev := nextEvent(byKey); ev.Data != "v2" {
		t.Fatalf("key-filtered client: %+v, want it to go on", ev)
	}
	if n := labeled(t, s.edgeReg, "ssekafka_edge_resets_total", "reason", "lost"); n != 1 {
		t.Fatalf("resets_total{reason=lost} %v, want 1", n)
	}
}

// What a holder answers for a part of a record it cannot give: an offset
// it has not applied is NotYet with its position (before, Gone: "no longer
// the key's latest record"), a record superseded where it stands is Gone
// with its position past the offset, and a null-key record not at hand is
// read back from Kafka.
func TestValuePartSaysWhereTheHolderStands(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1, maxPayload: 64 << 10,
		cacheCfg: func(c *cache.Config) { c.ApartBytes = 1 }}) // nothing kept at hand
	recs := s.produce("tasks", rec(0, "k", bigValue("v1", 100<<10)), rec(0, "k", "v2"),
		&kgo.Record{Partition: 0, Value: []byte(bigValue("null", 100<<10))})
	ask := func(offset int64) proto.ValuePart {
		t.Helper()
		req := proto.AppendValueRequest(nil, &proto.ValueRequest{Offset: offset, MaxBytes: 16 << 10})
		msg, err := s.nc.Request(proto.Subjects{Prefix: "ssekafka"}.State("tasks", 0), req, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		part, err := proto.DecodeValuePart(msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		return part
	}
	next := recs[2].Offset + 1
	if p := ask(next); p.Status != proto.StatusNotYet || p.Next != next {
		t.Fatalf("an offset not applied: %s (%s), next %d; want not yet at %d", p.Status, p.Error, p.Next, next)
	}
	if p := ask(recs[0].Offset); p.Status != proto.StatusGone || p.Next != next {
		t.Fatalf("a superseded record: %s (%s), next %d; want gone at %d", p.Status, p.Error, p.Next, next)
	}
	if p := ask(recs[2].Offset); p.Status != proto.StatusOK || p.Total == 0 {
		t.Fatalf("a null-key record not at hand: %s (%s)", p.Status, p.Error)
	}
}
