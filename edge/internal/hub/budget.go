// The edge-wide budget for what topic feeds keep besides their clients'
// queues: resume rings, frames encoded from them, and shared state pages.
// A pattern route lets clients open feeds on many topics, each with a ring
// of up to ResumeRingBytes; without one bound an edge could hold gigabytes.
//
// Shared pages' records get a quarter of the budget (pageShare.maxBytes);
// rings and encodings (of rings and of shared pages) the rest, counted in
// feedMemory.used as they change. Past seven eighths of their share a
// reclaim gives memory back: first every ring and encoding of feeds
// without clients, then every encoding, then the oldest records of the
// rings above an even share. A feed whose own growth would pass the whole
// share sheds its own oldest records at once, and an encoding that would
// pass it is not kept, so the bound holds between reclaims too. A ring
// that lost records serves a resume from state instead: its start moves
// past what it dropped, so nothing is lost.

package hub

import (
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ssekafka/ssekafka/internal/confcheck"
)

// feedMemory counts what the feeds' rings and encodings hold.
type feedMemory struct {
	limit      int64        // bytes for rings and encodings; 0: no bound
	used       atomic.Int64 // bytes the feeds have charged
	reclaiming atomic.Bool  // a reclaim is under way
	logged     atomic.Int64 // when a reclaim was last logged (unix nanoseconds)
}

// split splits budget (FeedMemoryBytes) between the shared pages and the
// rings and encodings, counted in m.
func (m *feedMemory) split(pages *pageShare, budget int) {
	pages.mem = m
	if budget == confcheck.Off {
		return
	}
	n := min(pages.share.MaxCost, budget/4)
	pages.share.SetMaxCost(n)
	m.limit = int64(budget - n)
}

// feedMemoryBytes is what the feeds keep: rings, encodings, shared pages.
func (h *Hub) feedMemoryBytes() int64 {
	pages := h.cache.pages.share.Held()
	return h.feedMem.used.Load() + int64(pages)
}

// chargeRingLocked brings the edge's count up to date with f's ring, and
// sheds the ring's oldest records if the feeds' share would be passed. The
// caller holds f.mu.
func (f *feed) chargeRingLocked() {
	m := &f.e.feedMem
	d := int64(f.ring.bytes) - f.ringCharged
	if d == 0 {
		return
	}
	f.ringCharged += d
	if used := m.used.Add(d); d > 0 && m.limit > 0 && used > m.limit {
		f.shedRingLocked(int(used-m.limit), time.Now())
	}
}

// shedRingLocked drops f's oldest ring records until n bytes are freed (or
// the ring is empty). The caller holds f.mu.
func (f *feed) shedRingLocked(n int, now time.Time) {
	if n <= 0 || f.ring.bytes == 0 {
		return
	}
	before := f.ring.bytes
	limit := f.ring.maxBytes
	f.ring.maxBytes = max(f.ring.bytes-n, 0)
	f.ring.trim(now)
	f.ring.maxBytes = limit
	freed := before - f.ring.bytes
	f.ringCharged -= int64(freed)
	f.e.feedMem.used.Add(-int64(freed))
	f.e.metrics.FeedMemoryGivenBack.Add(float64(freed))
}

// chargeEncLocked brings the edge's count up to date with f's encodings.
// The caller holds f.encMu.
func (f *feed) chargeEncLocked() {
	if d := int64(f.encBytes) - f.encCharged; d != 0 {
		f.encCharged += d
		f.e.feedMem.used.Add(d)
	}
}

// dropEncodingsLocked gives back every encoding of f. The caller holds f.encMu.
func (f *feed) dropEncodingsLocked() {
	freed := f.encBytes
	f.enc, f.encOrder, f.encBytes = nil, nil, 0
	f.chargeEncLocked()
	f.e.metrics.FeedMemoryGivenBack.Add(float64(freed))
}

// releaseMemLocked gives back all f keeps, for good: the feed stopped. The
// caller holds f.mu.
func (f *feed) releaseMemLocked() {
	f.shedRingLocked(f.ring.bytes, time.Now())
	f.ring.maxBytes = 0 // nothing more is kept, and no position is inside it
	for p := range f.ring.parts {
		f.ring.parts[p].start = math.MaxInt64
	}
	f.encMu.Lock()
	f.dropEncodingsLocked()
	f.encMu.Unlock()
}

// reclaimFeedMemory gives memory back once the feeds pass seven eighths
// of their share, down to three quarters: idle feeds first. It is called
// with no lock held; one runs at a time.
func (h *Hub) reclaimFeedMemory() {
	m := &h.feedMem
	if m.limit <= 0 || m.used.Load() <= m.limit/8*7 || !m.reclaiming.CompareAndSwap(false, true) {
		return
	}
	defer m.reclaiming.Store(false)
	target := m.limit / 4 * 3
	type held struct {
		f     *feed
		idle  bool
		bytes int
	}
	var feeds []held
	for _, f := range h.feedList() {
		select {
		case <-f.ready: // init writes the ring without f.mu
		default:
			continue
		}
		f.mu.Lock()
		feeds = append(feeds, held{f, f.clients == 0, f.ring.bytes})
		f.mu.Unlock()
	}
	// Idle feeds first, then the largest.
	slices.SortFunc(feeds, func(a, b held) int {
		if a.idle != b.idle {
			if a.idle {
				return -1
			}
			return 1
		}
		return b.bytes - a.bytes
	})
	now := time.Now()
	active := 0
	for _, h := range feeds { // 1: all that idle feeds keep
		if !h.idle {
			active++
			continue
		}
		if m.used.Load() <= target {
			return
		}
		h.f.mu.Lock()
		h.f.shedRingLocked(h.f.ring.bytes, now)
		h.f.mu.Unlock()
		h.f.encMu.Lock()
		h.f.dropEncodingsLocked()
		h.f.encMu.Unlock()
	}
	h.cache.pages.share.Each(func(sp *sharedPage) { // 2: encodings, made again on demand
		h.metrics.FeedMemoryGivenBack.Add(float64(sp.dropEncodings(false)))
	})
	for _, h := range feeds {
		if m.used.Load() <= target {
			return
		}
		h.f.encMu.Lock()
		h.f.dropEncodingsLocked()
		h.f.encMu.Unlock()
	}
	if m.used.Load() <= target || active == 0 {
		return
	}
	share := int(target) / active // 3: rings above an even share
	for _, h := range feeds {
		if h.idle {
			continue
		}
		h.f.mu.Lock()
		h.f.shedRingLocked(h.f.ring.bytes-share, now)
		h.f.mu.Unlock()
	}
	if last := m.logged.Load(); time.Since(time.Unix(0, last)) >= 10*time.Second && m.logged.CompareAndSwap(last, now.UnixNano()) {
		h.log.Info("feed memory at its budget: resume rings of active feeds trimmed (resumes before their start are served from state)",
			"budget", h.cfg.FeedMemoryBytes, "feeds", len(feeds), "active", active)
	}
}
