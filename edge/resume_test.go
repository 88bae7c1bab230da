package edge_test

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// model is what was produced, per partition in offset order.
type model struct {
	mu   sync.Mutex
	recs map[int32][]*kgo.Record
}

func (m *model) add(recs ...*kgo.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs == nil {
		m.recs = map[int32][]*kgo.Record{}
	}
	for _, r := range recs {
		m.recs[r.Partition] = append(m.recs[r.Partition], r)
	}
}

// asOf is the latest value per key among records below the progress.
func (m *model) asOf(p proto.Progress) map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	view := map[string]string{}
	for part, recs := range m.recs {
		for _, r := range recs {
			if r.Offset >= p.Offset(part) {
				continue
			}
			if r.Value == nil {
				delete(view, string(r.Key))
			} else {
				view[string(r.Key)] = string(r.Value)
			}
		}
	}
	return view
}

// offsetOf returns the offset of the record that gave key the value.
func (m *model) offsetOf(key, value string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, recs := range m.recs {
		for _, r := range recs {
			if string(r.Key) == key && r.Value != nil && string(r.Value) == value {
				return r.Offset, true
			}
		}
	}
	return 0, false
}

// streamFrom is docs/architecture.md rule 2 computed from the model: the current entries
// with offset >= p in each partition, in offset order, tombstones only where
// the client could hold the key.
func (m *model) streamFrom(p proto.Progress, partitions int32) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for part := range partitions {
		latest := map[string]*kgo.Record{}
		for _, r := range m.recs[part] {
			latest[string(r.Key)] = r
		}
		recs := slices.Collect(maps.Values(latest))
		sort.Slice(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
		for _, r := range recs {
			switch {
			case r.Offset < p.Offset(part):
			case r.Value == nil && p.Offset(part) > 0:
				out = append(out, "delete "+string(r.Key))
			case r.Value != nil:
				out = append(out, string(r.Key)+"="+string(r.Value))
			}
		}
	}
	return out
}

// keyedEvent reads an event of the /keyed route: its key, progress and change.
func keyedEvent(t *testing.T, ev event) (key string, p proto.Progress, change string) {
	t.Helper()
	var parts []*string
	if err := json.Unmarshal([]byte(ev.ID), &parts); err != nil || len(parts) != 2 {
		t.Fatalf("keyed id %q: %v", ev.ID, err)
	}
	p, err := proto.ParseEventID(ev.ID)
	if err != nil {
		t.Fatalf("keyed id %q: %v", ev.ID, err)
	}
	if parts[0] != nil {
		k, err := base64.URLEncoding.DecodeString(*parts[0])
		if err != nil {
			t.Fatalf("keyed id key %q: %v", *parts[0], err)
		}
		key = string(k)
	}
	switch ev.Event {
	case "delete":
		change = "delete " + key
	case "":
		change = key + "=" + ev.Data
	default:
		change = ev.Event
	}
	return key, p, change
}

func apply(view map[string]string, change string) {
	if k, ok := cutPrefix(change, "delete "); ok {
		delete(view, k)
		return
	}
	for i := 0; i < len(change); i++ {
		if change[i] == '=' {
			view[change[:i]] = change[i+1:]
			return
		}
	}
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// TestResumeFromEveryPosition reconnects from every event a client received,
// state part and live part, and checks the resumed stream is exactly docs/architecture.md
// rule 2 from that id, and that the resumed view is the topic's state.
func TestResumeFromEveryPosition(t *testing.T) {
	s := newStack(t, stackOptions{})
	var m model
	m.add(s.produce("tasks",
		rec(0, "a", "a1"), rec(1, "b", "b1"), rec(2, "c", "c1"), rec(0, "d", "d1"),
		rec(1, "b", "b2"), tombstone(0, "a"), rec(2, "e", "e1"), rec(2, "c", "c2"),
		rec(0, "f", "f1"), tombstone(2, "e"), rec(1, "g", "g1"),
	)...)
	c := s.connect("/keyed", nil)
	evs := c.untilReady()[1:] // after retry
	m.add(s.produce("tasks", rec(0, "a", "a2"), tombstone(1, "g"), rec(2, "h", "h1"), rec(1, "b", "b3"))...)
	for range 4 {
		evs = append(evs, c.mustNext())
	}
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})

	for i, ev := range evs {
		t.Run(fmt.Sprintf("after-%d-%s", i, ev.Event), func(t *testing.T) {
			view := map[string]string{}
			for _, prev := range evs[:i+1] {
				_, _, change := keyedEvent(t, prev)
				apply(view, change)
			}
			_, from, _ := keyedEvent(t, ev)
			r := s.connect("/keyed", http.Header{"Last-Event-Id": {ev.ID}})
			var got []string
			for _, rev := range r.untilReady()[1:] {
				_, _, change := keyedEvent(t, rev)
				apply(view, change)
				if rev.Event != "ready" {
					got = append(got, change)
				}
			}
			if want := m.streamFrom(from, 3); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("resumed stream:\n got %q\nwant %q", got, want)
			}
			delete(view, "")
			if !maps.Equal(view, final) {
				t.Fatalf("view after resume %v, want %v", view, final)
			}
		})
	}
}

// TestPropertyRandomClients runs random updates and deletes while clients
// connect, read a random number of events, drop and resume from their last
// id. At every ready and every live event, a client's view must equal the
// topic's latest-by-key at that event's id, and no value may arrive twice
// within one connection. At the end every client resumes to the final state.
func TestPropertyRandomClients(t *testing.T) {
	for _, mode := range []struct {
		name       string
		noHijack   bool
		viaNetHTTP bool
	}{{"raw", false, false}, {"net-http-hijacked", false, true}, {"response-writer", true, true}} {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, stackOptions{viaNetHTTP: mode.viaNetHTTP,
				edgeCfg: func(c *edge.Config) { c.NoHijack = mode.noHijack }})
			propertyRandomClients(t, s, nil)
		})
	}
}

var seedFlag = flag.Uint64("seed", 0, "seed of the property tests (default: SSEKAFKA_SEED, else the clock)")

// propertySeed is -seed, else $SSEKAFKA_SEED, else the clock; a failing
// test prints it with how to run it again.
func propertySeed(t *testing.T) uint64 {
	seed := *seedFlag
	if env := os.Getenv("SSEKAFKA_SEED"); seed == 0 && env != "" {
		var err error
		if seed, err = strconv.ParseUint(env, 10, 64); err != nil {
			t.Fatalf("SSEKAFKA_SEED=%q: %v", env, err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d", seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d: run again with -seed=%d or SSEKAFKA_SEED=%d", seed, seed, seed)
		}
	})
	return seed
}

// propertyRandomClients runs the property on s; disrupt, if set, is called
// before each op with its number (for membership changes mid-stream). With
// a disruption, gaps are filled from state pages, which skip what was
// superseded since, so a view in a fill is no snapshot of its id (as in the
// state part; resuming from any id is still exact, docs/architecture.md rule 2): there
// each value must be one that was produced for its key, later than the
// key's previous value in the connection, and every client ends exact.
func propertyRandomClients(t *testing.T, s *stack, disrupt func(op int)) {
	seed := propertySeed(t)
	var m model
	keys := 24
	ops := 600
	if testing.Short() {
		ops = 200
	}

	type check struct {
		progress proto.Progress
		view     map[string]string
		what     string
		conn     string // client and connection
		change   string
	}
	var (
		checksMu sync.Mutex
		checks   []check
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	views := make([]map[string]string, 4)
	lastIDs := make([]string, len(views))
	for ci := range views {
		views[ci] = map[string]string{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(ci)))
			for conn := 0; ; conn++ {
				select {
				case <-stop:
					return
				default:
				}
				h := http.Header{}
				if lastIDs[ci] != "" {
					h.Set("Last-Event-Id", lastIDs[ci])
				}
				c := s.connect("/keyed", h)
				seen := map[string]bool{}
				var trace []string
				live := false
				for n := rng.IntN(40) + 1; n > 0; n-- {
					ev, err := c.nextOrStop(10*time.Second, stop)
					if err == errStopped {
						return
					}
					if err != nil {
						t.Errorf("client %d: %v", ci, err)
						return
					}
					if !ev.HasID {
						if ev.Event == "reset" {
							t.Errorf("client %d: unexpected reset", ci)
						}
						continue
					}
					if ev.Event == "" && strings.HasPrefix(ev.ID, "[null,") {
						lastIDs[ci] = ev.ID // a null-key record: in no view
						continue
					}
					_, p, change := keyedEvent(t, ev)
					trace = append(trace, fmt.Sprintf("%s@%v", change, p.Offsets))
					if change != "ready" && ev.Event != "delete" { // values are unique; deletes are not
						if seen[change] {
							t.Errorf("client %d conn %d: %q twice in one connection", ci, conn, change)
						}
						seen[change] = true
					}
					apply(views[ci], change)
					lastIDs[ci] = ev.ID
					if change == "ready" {
						live = true
					}
					if live {
						checksMu.Lock()
						checks = append(checks, check{p, maps.Clone(views[ci]), fmt.Sprintf("client %d conn %d %s (from %s: %v)", ci, conn, change, h.Get("Last-Event-Id"), trace),
							fmt.Sprintf("%d/%d", ci, conn), change})
						checksMu.Unlock()
					}
				}
				c.close()
			}
		}()
	}

	rng := rand.New(rand.NewPCG(seed, 99))
	tick := time.NewTicker(2 * time.Millisecond)
	for i := 0; i < ops; {
		<-tick.C
		if disrupt != nil {
			disrupt(i)
		}
		var batch []*kgo.Record
		for n := rng.IntN(4) + 1; n > 0 && i < ops; n-- {
			k := rng.IntN(keys)
			key := fmt.Sprintf("k%d", k)
			if rng.IntN(5) == 0 {
				batch = append(batch, tombstone(int32(k%3), key))
			} else {
				batch = append(batch, rec(int32(k%3), key, fmt.Sprintf("v%d", i)))
			}
			i++
		}
		m.add(s.produce("tasks", batch...)...)
	}
	tick.Stop()
	close(stop)
	wg.Wait()

	last := map[string]int64{} // connection and key → offset of the last value received
	for _, ch := range checks {
		if disrupt == nil {
			if want := m.asOf(ch.progress); !maps.Equal(ch.view, want) {
				t.Errorf("%s: at %v\nview %v\nwant %v", ch.what, ch.progress.Offsets, ch.view, want)
			}
			continue
		}
		key, value, ok := strings.Cut(ch.change, "=")
		if !ok {
			continue // ready, deletes: values are unique, deletes are not
		}
		off, ok := m.offsetOf(key, value)
		if !ok {
			t.Errorf("%s: %s=%s was never produced", ch.what, key, value)
			continue
		}
		if prev, seen := last[ch.conn+" "+key]; seen && off <= prev {
			t.Errorf("%s: %s went back from offset %d to %d", ch.what, key, prev, off)
		}
		last[ch.conn+" "+key] = off
	}
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})
	for ci, view := range views {
		h := http.Header{}
		if lastIDs[ci] != "" {
			h.Set("Last-Event-Id", lastIDs[ci])
		}
		c := s.connect("/keyed", h)
		for _, ev := range c.untilReady()[1:] {
			_, _, change := keyedEvent(t, ev)
			apply(view, change)
		}
		// A standby that lags (standbyBehind) may answer as of a position
		// before the last records: they follow live.
		for s.standbyBehind && !maps.Equal(view, final) {
			ev, err := c.next(10 * time.Second)
			if err != nil {
				t.Fatalf("client %d after ready: %v; view %v, want %v", ci, err, view, final)
			}
			if !ev.HasID || ev.Event == "" && strings.HasPrefix(ev.ID, "[null,") {
				continue
			}
			_, _, change := keyedEvent(t, ev)
			apply(view, change)
		}
		if !maps.Equal(view, final) {
			t.Fatalf("client %d final view %v, want %v", ci, view, final)
		}
	}
	t.Logf("%d checks over %d ops", len(checks), ops)
}
