package hub

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/proto"
)

// A reclaim gives back what idle feeds keep before it touches a feed with
// clients; only when that is not enough are the rings of active feeds
// trimmed, each to an even share, oldest records first.
func TestFeedMemoryReclaimTakesIdleFeedsFirst(t *testing.T) {
	e := &Hub{cfg: Config{FeedMemoryBytes: 4 << 20, ResumeRingBytes: 4 << 20, Log: slog.New(slog.DiscardHandler)},
		log: slog.New(slog.DiscardHandler), metrics: metrics.New(nil), feeds: map[string]*feed{}}
	e.cache.pages.share.MaxCost = 8 << 20
	e.feedMem.split(&e.cache.pages, e.cfg.FeedMemoryBytes) // rings and encodings: 3 MiB
	now := time.Now()
	newFeed := func(name string, clients int, kib int) *feed {
		f := &feed{e: e, topic: name, clients: clients, ring: newRing(e.cfg.ResumeRingBytes, time.Hour, []int64{0}), ready: make(chan struct{})}
		close(f.ready)
		for o := range int64(kib) {
			f.mu.Lock()
			f.ring.add(0, &proto.Record{Offset: o, Key: fmt.Appendf(nil, "k%d", o), Value: make([]byte, 1000)}, now)
			f.chargeRingLocked()
			f.mu.Unlock()
		}
		e.feeds[name] = f
		return f
	}
	idle := newFeed("idle", 0, 1200)
	busy := newFeed("busy", 3, 1500)
	before := busy.ring.bytes
	e.reclaimFeedMemory() // 2.7 MB of 3 MiB: past seven eighths
	if idle.ring.bytes != 0 || busy.ring.bytes != before {
		t.Fatalf("after a reclaim the idle feed keeps %d bytes, the busy one %d of %d: want the idle one's given back first",
			idle.ring.bytes, busy.ring.bytes, before)
	}
	if got := e.feedMem.used.Load(); got != int64(busy.ring.bytes) {
		t.Fatalf("counted %d bytes, the rings hold %d", got, busy.ring.bytes)
	}
	other := newFeed("other", 1, 1500) // 3.1 MB: past the share at once
	if used := e.feedMem.used.Load(); used > e.feedMem.limit {
		t.Fatalf("%d bytes counted, over the limit of %d between reclaims", used, e.feedMem.limit)
	}
	e.reclaimFeedMemory()
	share := int(e.feedMem.limit / 4 * 3 / 2)
	for _, f := range []*feed{busy, other} {
		if f.ring.bytes > share || f.ring.bytes == 0 {
			t.Fatalf("%s keeps %d bytes after the reclaim, want up to an even share of %d", f.topic, f.ring.bytes, share)
		}
		if start := f.ring.parts[0].start; start != f.ring.parts[0].recs[f.ring.parts[0].head].rec.Offset {
			t.Fatalf("%s: ring start %d, first record %d: the oldest records go first", f.topic, start, f.ring.parts[0].recs[f.ring.parts[0].head].rec.Offset)
		}
	}
}

// A shared page's encodings count in the feed memory while the page is
// among the recent pages, are given back when it leaves them, and one that
// would pass the budget is not kept.
func TestSharedPageEncodingsCountInFeedMemory(t *testing.T) {
	m := &feedMemory{limit: 1000}
	sp := &sharedPage{}
	sp.shared(m)
	sp.keep("a", encodedPage{frames: make([]byte, 600)})
	sp.keep("b", encodedPage{frames: make([]byte, 600)}) // past the limit: not kept
	if _, ok := sp.encoded("b"); ok || m.used.Load() != 600 {
		t.Fatalf("counted %d, b kept %v; want 600 and b not kept", m.used.Load(), ok)
	}
	if freed := sp.dropEncodings(true); freed != 600 || m.used.Load() != 0 {
		t.Fatalf("gave back %d, %d still counted", freed, m.used.Load())
	}
	sp.keep("c", encodedPage{frames: make([]byte, 100)}) // no longer shared: transient, not counted
	if m.used.Load() != 0 {
		t.Fatalf("%d counted for a page no longer shared", m.used.Load())
	}
}
