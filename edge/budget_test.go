package edge_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// Feeds on many topics of a pattern route, each with more recent changes
// than the edge's whole budget allows, keep within FeedMemoryBytes (on
// 63c3e19 there was no bound: each feed's ring held up to 4 MiB); idle
// feeds give theirs back first, and a resume from a position whose ring
// records were given back is served from state, exactly.
func TestFeedMemoryStaysWithinItsBudget(t *testing.T) {
	const budget = 1 << 20
	const topics, records, valueBytes = 16, 64, 4 << 10
	var names []string
	for i := range topics {
		names = append(names, fmt.Sprintf("t%02d", i))
	}
	s := newStack(t, stackOptions{partitions: 1, topics: names, edgeCfg: func(c *edge.Config) {
		c.FeedMemoryBytes, c.FeedLinger = budget, time.Minute
	}})
	var most atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if n := int64(s.gauge("ssekafka_edge_feed_memory_bytes")); n > most.Load() {
				most.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	value := strings.Repeat("v", valueBytes)
	ids := map[string][]string{} // per topic, the id of each record as streamed
	for i, name := range names {
		c := s.connect("/t/"+name, nil)
		c.untilReady()
		var recs []*kgo.Record
		for r := range records {
			recs = append(recs, rec(0, fmt.Sprintf("k%d", r), fmt.Sprintf("%d:%s", r, value)))
		}
		s.produce(name, recs...)
		for r := range records {
			ev := c.mustNext()
			if !strings.HasPrefix(ev.Data, fmt.Sprintf("%d:", r)) {
				t.Fatalf("%s: record %d streamed as %.10q", name, r, ev.Data)
			}
			ids[name] = append(ids[name], ev.ID)
		}
		if i < topics/4 {
			c.close() // its feed lingers idle
		}
	}
	close(stop)
	wg.Wait()
	if m := most.Load(); m > budget {
		t.Fatalf("feeds kept up to %d bytes, over the budget of %d", m, budget)
	}
	if s.edgeCounter("ssekafka_edge_feed_memory_given_back_bytes_total") == 0 {
		t.Fatal("nothing given back, yet the feeds saw 4 MiB of changes")
	}
	// Resumes are exact, from the idle feed whose ring was given back and
	// from the last, busy one.
	for _, name := range []string{names[0], names[topics-1]} {
		for _, from := range []int{0, records / 2, records - 2} {
			c := s.connect("/t/"+name, http.Header{"Last-Event-Id": {ids[name][from]}})
			evs := c.untilReady()
			var got []string
			for _, ev := range evs {
				if ev.HasData && ev.Event == "" {
					got = append(got, ev.Data[:strings.Index(ev.Data, ":")])
				}
			}
			var want []string
			for r := from + 1; r < records; r++ {
				want = append(want, fmt.Sprint(r))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: resumed after record %d with %v, want %v", name, from, got, want)
			}
			c.close()
		}
	}
}
