// The resume ring: each feed's recent changes, so that a client whose
// position lies inside it resumes from memory (docs/architecture.md rule 8).

package hub

import (
	"context"
	"math"
	"sort"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

// ring holds a feed's recent state records per partition, bounded in bytes
// and age. For each partition, every record of the compacted state whose
// offset lies in [start, the feed's position) is in recs, or superseded by
// one that is: so the latest record per key among recs at or after a
// position is what the state path gives from that position. Records with a
// null key are left out (the state holds none). Written by the feed
// goroutine and read by streams, both under feed.mu.
type ring struct {
	maxBytes int // <= 0: no ring
	maxAge   time.Duration
	bytes    int
	parts    []ringPart
}

type ringPart struct {
	start  int64
	behind bool      // the feed knows it lacks changes here (see markBehind)
	held   bool      // changes of the partition wait for a job of the feed (see noteHeld)
	heard  time.Time // when the tier's word on the partition last came: a head or change, or an answer (see awaitWord)
	known  int64     // the highest Next the cache tier has shown (heads, pages): the ring serves only once the feed is there
	recs   []ringRec // in offset order; recs[head:] are live
	head   int
}

type ringRec struct {
	rec  *proto.Record
	at   time.Time // when the feed applied it (for maxAge)
	size int
}

func newRing(maxBytes int, maxAge time.Duration, next []int64) ring {
	r := ring{maxBytes: maxBytes, maxAge: maxAge, parts: make([]ringPart, len(next))}
	for p, o := range next {
		r.parts[p].start = o
	}
	if maxBytes <= 0 { // no ring: no position is ever inside it
		for p := range r.parts {
			r.parts[p].start = 1<<63 - 1
		}
	}
	return r
}

// add appends rec, which the feed applied to partition p in offset order,
// and drops the oldest records past the bounds.
func (r *ring) add(p int32, rec *proto.Record, now time.Time) {
	if r.maxBytes <= 0 || rec.KeyNull {
		return
	}
	cp := *rec // the caller's record may sit in a larger array (a fill page)
	size := cp.Size() + 48
	rp := &r.parts[p]
	rp.recs = append(rp.recs, ringRec{rec: &cp, at: now, size: size})
	r.bytes += size
	r.trim(now)
}

// trim drops records older than maxAge, then the oldest until the ring
// fits in maxBytes; a partition's start moves past what it drops.
func (r *ring) trim(now time.Time) {
	for p := range r.parts {
		rp := &r.parts[p]
		for rp.head < len(rp.recs) && now.Sub(rp.recs[rp.head].at) > r.maxAge {
			r.drop(rp)
		}
	}
	for r.bytes > r.maxBytes {
		oldest := -1
		for p := range r.parts {
			rp := &r.parts[p]
			if rp.head < len(rp.recs) && (oldest < 0 || rp.recs[rp.head].at.Before(r.parts[oldest].recs[r.parts[oldest].head].at)) {
				oldest = p
			}
		}
		if oldest < 0 {
			return
		}
		r.drop(&r.parts[oldest])
	}
}

// drop removes rp's oldest record.
func (r *ring) drop(rp *ringPart) {
	old := rp.recs[rp.head]
	rp.recs[rp.head] = ringRec{}
	rp.head++
	r.bytes -= old.size
	rp.start = old.rec.Offset + 1
	if rp.head > 64 && rp.head*2 > len(rp.recs) { // compact the array
		n := copy(rp.recs, rp.recs[rp.head:])
		clear(rp.recs[n:])
		rp.recs, rp.head = rp.recs[:n], 0
	}
}

// from returns partition p's records at or after since (to be conflated by
// the caller), or ok false when since lies before the ring's start. The
// caller holds feed.mu and checked since against the feed's position.
func (r *ring) from(p int32, since int64) (recs []*proto.Record, ok bool) {
	rp := &r.parts[p]
	if since < rp.start {
		return nil, false
	}
	live := rp.recs[rp.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].rec.Offset >= since })
	recs = make([]*proto.Record, 0, len(live)-i)
	for _, rr := range live[i:] {
		recs = append(recs, rr.rec)
	}
	return recs, true
}

// serves reports whether the ring may give a stream that began at began
// the partition's records from since, the feed being at next: since lies
// at or before next; the feed lacks nothing the cache tier applied that it
// knows of (behind: a gap not filled; held: changes wait for a job; known:
// the highest position the tier has shown); and the tier's word on the
// partition came since began (see awaitWord). Whether since lies after
// start is from's to say. The caller holds feed.mu.
func (rp *ringPart) serves(since, next int64, began time.Time) bool {
	return since <= next && !rp.behind && !rp.held && next >= rp.known && !rp.heard.Before(began)
}

// ringFrom returns partition p's records at or after since, from the
// resume ring in offset order (resume.LatestPerKey makes them what the state path
// gives), the feed's position in p, and the ring's start in p; ok is false
// when since lies outside the ring (before start, its first offset, or
// past the feed's position) or the ring may not serve (see serves).
func (f *feed) ringFrom(p int32, since int64, began time.Time) (recs []*proto.Record, next, start int64, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rp := &f.ring.parts[p]
	next, start = f.progress.Offsets[p], rp.start
	// Not while changes wait for the feed goroutine (in its channel, or
	// in a batch being applied): the cache tier has applied them, so a
	// ready from the ring would lack them.
	if len(f.msgs) == 0 && !f.handling.Load() && rp.serves(since, next, began) {
		recs, ok = f.ring.from(p, since)
	}
	return recs, next, start, ok
}

// The tier's word (docs/architecture.md rule 8). The feed's position in a partition is
// what the cache tier holds only while the partition's primary speaks:
// after it crashes, a standby goes on applying records that nobody
// publishes until it takes over (after failure detection, a second or
// more), and a silent primary looks like a quiet partition. Edges are not
// memberlist members; they learn of a new primary from its heads (publisher
// and generation, see proto.Head and notePublisher), which come only once
// it has taken over. So no freshness window is trusted: a stream writes a
// partition from the ring (or trims a page with it) only once the tier's
// word on it came after the stream began, and ring.known, the highest
// position the tier has shown, is reached. The word is a change or head
// the feed applied, or the answer to a head request sent after the stream
// began: one per partition in flight, at most one per ringAskEvery, shared
// by the streams waiting. An answer past the feed's position raises known:
// those streams read state pages, and their ready holds what the holder had.

// ringAskEvery is how often, at most, a feed asks the cache tier for a
// partition's head while streams of a storm wait for the tier's word on it:
// a stream waits at most this long (and the answer) unless a change or
// head of the partition comes first.
const ringAskEvery = 10 * time.Millisecond

// wordAsk is a head request for awaitWord, shared by the streams that began
// before it was sent.
type wordAsk struct {
	sent time.Time
	done chan struct{} // closed once answered (or failed)
}

// awaitWord waits until each partition has had the tier's word since began
// (see above), or ctx ends. A partition whose head request fails stays
// unconfirmed: ringFrom refuses it, and the stream reads pages.
func (f *feed) awaitWord(ctx context.Context, began time.Time) {
	if f.ring.maxBytes <= 0 {
		return // no ring
	}
	asked := map[int32]*wordAsk{}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	f.mu.Lock()
	if f.asks == nil {
		f.asks = make([]*wordAsk, len(f.ring.parts))
	}
	for {
		due := f.askWordsLocked(began, asked)
		if due.IsZero() {
			break
		}
		// Until the next request may go, or a change moves the feed.
		ch := f.advancedLocked()
		f.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(time.Until(due))
		} else {
			timer.Reset(time.Until(due))
		}
		select {
		case <-ch:
		case <-timer.C:
		case <-ctx.Done():
			return
		}
		f.mu.Lock()
	}
	f.mu.Unlock()
	for _, a := range asked {
		select {
		case <-a.done:
		case <-ctx.Done():
			return
		}
	}
}

// askWordsLocked sends a head request for each partition without the
// tier's word since began, that this stream waits for none of yet, where
// the last one went ringAskEvery ago (or joins one sent since began), and
// notes them in asked. It returns when the next of the others may go (zero:
// none waits). The caller holds f.mu.
func (f *feed) askWordsLocked(began time.Time, asked map[int32]*wordAsk) (due time.Time) {
	now := time.Now()
	for p := range f.ring.parts {
		pp := int32(p)
		if asked[pp] != nil || !f.ring.parts[p].heard.Before(began) {
			continue
		}
		a := f.asks[p]
		if a != nil && !a.sent.Before(began) {
			asked[pp] = a
			continue
		}
		at := began
		if a != nil {
			at = a.sent.Add(ringAskEvery)
		}
		if at.After(now) {
			if due.IsZero() || at.Before(due) {
				due = at
			}
			continue
		}
		a = &wordAsk{sent: now, done: make(chan struct{})}
		f.asks[p] = a
		asked[pp] = a
		go f.askWord(pp, a)
	}
	return due
}

// advancedLocked returns a channel closed when the feed's position next
// moves. The caller holds f.mu.
func (f *feed) advancedLocked() <-chan struct{} {
	if f.advanced == nil {
		f.advanced = make(chan struct{})
	}
	f.waiters++
	return f.advanced
}

// askWord asks the cache tier for partition p's head, with a context of its
// own (a stream that leaves does not fail the others waiting): the feed's
// position is confirmed as of a.sent when the holder that answers is not
// past it; otherwise known rises to its head.
func (f *feed) askWord(p int32, a *wordAsk) {
	defer close(a.done)
	f.e.metrics.RingHeadRequests.Inc()
	ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.PageTimeout)
	head, err := f.e.cache.requestPage(ctx, f.topic, f.meta.Epoch, p, math.MaxInt64)
	cancel()
	if err != nil {
		return
	}
	f.mu.Lock()
	rp := &f.ring.parts[p]
	rp.known = max(rp.known, head.Next)
	if f.progress.Offsets[p] >= head.Next && rp.heard.Before(a.sent) {
		rp.heard = a.sent
	}
	f.mu.Unlock()
}

// The frames encoded from the ring: the one cache of encodings on the ring
// path (a shared state page keeps its own, see sharedPage), under encMu.

// ringEncoded returns the frames encoded under key from the ring, if any.
func (f *feed) ringEncoded(key string) (encodedPage, bool) {
	f.encMu.Lock()
	defer f.encMu.Unlock()
	enc, ok := f.enc[key]
	return enc, ok
}

// keepRingEncoded keeps frames encoded from the ring for other streams of
// the view at the same position, the oldest dropped past a bound. Records
// below the feed's position never change, so they stay true.
func (f *feed) keepRingEncoded(key string, enc encodedPage) {
	f.keepRingEncodedLocked(key, enc)
	f.e.reclaimFeedMemory()
}

func (f *feed) keepRingEncodedLocked(key string, enc encodedPage) {
	f.encMu.Lock()
	defer f.encMu.Unlock()
	defer f.chargeEncLocked()
	maxBytes := max(f.e.cfg.ResumeRingBytes, 0)
	if m := &f.e.feedMem; enc.size() > maxBytes || m.limit > 0 && m.used.Load()+int64(enc.size()) > m.limit {
		return
	}
	if f.enc == nil {
		f.enc = map[string]encodedPage{}
	}
	if _, ok := f.enc[key]; ok {
		return
	}
	f.enc[key] = enc
	f.encOrder = append(f.encOrder, key)
	f.encBytes += enc.size()
	for len(f.encOrder) > maxRingEncodings || f.encBytes > maxBytes {
		old := f.enc[f.encOrder[0]]
		f.encBytes -= old.size()
		delete(f.enc, f.encOrder[0])
		f.encOrder = f.encOrder[1:]
	}
}

// maxRingEncodings bounds the encodings kept per feed.
const maxRingEncodings = 64
