package edge_test

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// handID builds the id docs/architecture.md rule 1 prescribes for a progress without the
// proto package: base64url (no padding) of kind 2, then uvarints epoch,
// time in ms, partition count and each next offset. The tests' clock is fixedNow.
func handID(epoch uint32, offsets ...int64) string {
	bin := []byte{2}
	bin = binary.AppendUvarint(bin, uint64(epoch))
	bin = binary.AppendUvarint(bin, uint64(fixedNow.UnixMilli()))
	bin = binary.AppendUvarint(bin, uint64(len(offsets)))
	for _, o := range offsets {
		bin = binary.AppendUvarint(bin, uint64(o))
	}
	return base64.RawURLEncoding.EncodeToString(bin)
}

// The state pages may be ahead of the live feed: the cache applies a change
// before the edge's feed hears of it. Here the feed is held on purpose while
// the cache has three more records; a new client gets them in its state
// part, and event:ready comes only once the live feed has caught up, so that
// no value comes twice and no live id is below ready's (docs/architecture.md rule 5).
func TestReadyWaitsForLiveFeedToCoverState(t *testing.T) {
	var gate sync.RWMutex
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		edge.HoldFeeds(c, func() {
			gate.RLock() // a gate: waiting for it is the point
			defer gate.RUnlock()
		})
	}})
	s.produce("tasks", rec(0, "a", "a0"), rec(1, "b", "b0"))
	ep := s.epoch("tasks")
	s.connect("/tasks", nil).untilReady() // the topic's feed runs

	gate.Lock() // the live feed stops before its next change
	held := true
	defer func() {
		if held {
			gate.Unlock()
		}
	}()
	s.produce("tasks", rec(0, "a", "a1"), rec(1, "c", "c1"), rec(2, "d", "d1")) // the cache has them
	c := s.connect("/tasks", nil)
	want := []string{
		"retry:2000\n\n",
		"id:" + handID(ep, 2, 0, 0) + "\ndata:a1\n\n",
		"id:" + handID(ep, 2, 1, 0) + "\ndata:b0\n\n",
		"id:" + handID(ep, 2, 2, 0) + "\ndata:c1\n\n",
		"id:" + handID(ep, 2, 2, 1) + "\ndata:d1\n\n",
		"id:" + handID(ep, 2, 2, 1) + "\nevent:ready\ndata:{}\n\n",
		"id:" + handID(ep, 3, 2, 1) + "\ndata:a2\n\n",
	}
	var got []string
	for range 5 { // the state part, written while the feed is held
		got = append(got, c.mustNext().Raw)
	}
	gate.Unlock()
	held = false
	s.produce("tasks", rec(0, "a", "a2"))
	for len(got) < len(want) {
		ev := c.mustNext()
		got = append(got, ev.Raw)
		if ev.Data == "a2" {
			break
		}
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("stream:\n got %q\nwant %q", got, want)
	}
}

// A new client's state part that spans many pages is the exact state, and
// every id in it is a true position: what the client holds there, plus
// what docs/architecture.md rule 2 sends from that id, is the state.
func TestStateSpanningPagesIsExact(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.PageBytes = 200 }})
	var m model
	for round := range 3 {
		var recs []*kgo.Record
		for k := range 40 {
			if round > 0 && k%round != 0 {
				continue // later rounds overwrite some keys
			}
			recs = append(recs, rec(int32(k%3), fmt.Sprintf("key-%02d", k), fmt.Sprintf("value-%d-%02d-%s", round, k, strings.Repeat("x", k))))
		}
		m.add(s.produce("tasks", recs...)...)
	}
	m.add(s.produce("tasks", tombstone(1, "key-01"))...)
	ep := s.epoch("tasks")
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})

	requests := s.counter(s.cacheReg, "ssekafka_cache_state_requests_total")
	c := s.connect("/keyed", nil)
	view := map[string]string{}
	evs := c.untilReady()
	if pages := s.counter(s.cacheReg, "ssekafka_cache_state_requests_total") - requests; pages < 10 {
		t.Fatalf("the state part took %v state requests: want many pages", pages)
	}
	next := m.next(3)
	for i, ev := range evs[1 : len(evs)-1] {
		key, p, change := keyedEvent(t, ev)
		if change != key+"="+final[key] {
			t.Fatalf("state event %d: %q, want the current value %q", i, change, final[key])
		}
		// Its id, by hand: partitions before its own are done, its own is
		// just past the record, later ones not begun.
		part, offset := m.latest(key)
		offsets := make([]int64, 3)
		copy(offsets, next[:part])
		offsets[part] = offset + 1
		if wantID := `["` + base64.StdEncoding.EncodeToString([]byte(key)) + `","` + handID(ep, offsets...) + `"]`; ev.ID != wantID {
			t.Fatalf("state event %d (%s): id %s, want %s", i, key, ev.ID, wantID)
		}
		if _, twice := view[key]; twice {
			t.Fatalf("state event %d: key %s twice", i, key)
		}
		apply(view, change)
		trueAt(t, &m, view, p, 3, final)
	}
	sameView(t, "state part", view, final)
	ready := evs[len(evs)-1]
	if wantID := `[null,"` + handID(ep, next...) + `"]`; ready.Event != "ready" || ready.ID != wantID {
		t.Fatalf("ready %+v, want id %s", ready, wantID)
	}
}

// trueAt fails the test unless the client holding view at progress p would,
// with the stream docs/architecture.md rule 2 gives from p, hold the state final.
func trueAt(t *testing.T, m *model, view map[string]string, p proto.Progress, partitions int32, final map[string]string) {
	t.Helper()
	resumed := maps.Clone(view)
	for _, change := range m.streamFrom(p, partitions) {
		apply(resumed, change)
	}
	delete(resumed, "")
	if !maps.Equal(resumed, final) {
		t.Fatalf("id %v is not a true position: the view there plus the stream from it has %d keys, the state %d", p.Offsets, len(resumed), len(final))
	}
}

// next is each partition's next offset in the model.
func (m *model) next(partitions int32) []int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int64, partitions)
	for p, recs := range m.recs {
		if n := len(recs); n > 0 {
			out[p] = recs[n-1].Offset + 1
		}
	}
	return out
}

// latest is the partition and offset of key's last record in the model.
func (m *model) latest(key string) (int32, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	part, offset := int32(-1), int64(-1)
	for p, recs := range m.recs {
		for _, r := range recs {
			if string(r.Key) == key {
				part, offset = p, r.Offset
			}
		}
	}
	return part, offset
}

// An id of another epoch whose offsets lie inside the topic's own: the
// client is reset and gets the whole state from zero, not a resume from
// offsets that mean nothing in this epoch.
func TestOtherEpochIDInsideOffsetsResets(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"), rec(0, "b", "2"), rec(1, "c", "3"))
	ep := s.epoch("tasks")
	c := s.connect("/tasks", http.Header{"Last-Event-Id": {handID(ep+1, 1, 0, 0)}})
	var got strings.Builder
	for _, ev := range c.untilReady() {
		got.WriteString(ev.Raw)
	}
	want := "retry:2000\n\n" +
		"event:reset\ndata:{\"reason\":\"epoch\"}\n\n" +
		"id:" + handID(ep, 1, 0, 0) + "\ndata:1\n\n" +
		"id:" + handID(ep, 2, 0, 0) + "\ndata:2\n\n" +
		"id:" + handID(ep, 2, 1, 0) + "\ndata:3\n\n" +
		"id:" + handID(ep, 2, 1, 0) + "\nevent:ready\ndata:{}\n\n"
	if got.String() != want {
		t.Fatalf("stream:\n got %q\nwant %q", got.String(), want)
	}
}
