// The resume ring: each feed's recent changes, so that a client whose
// position lies inside it resumes from memory (DESIGN rule 8).

package edge

import (
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
	heard  time.Time // when the last head or change of the partition came (see ringFresh)
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

// latestPerKey keeps, of recs (in offset order), only the last record of
// each key, in offset order: what the state path gives for them.
func latestPerKey(recs []*proto.Record) []*proto.Record {
	if len(recs) < 2 {
		return recs
	}
	seen := make(map[string]struct{}, len(recs))
	w := len(recs)
	for i := len(recs) - 1; i >= 0; i-- {
		if _, newer := seen[string(recs[i].Key)]; newer {
			continue
		}
		seen[string(recs[i].Key)] = struct{}{}
		w--
		recs[w] = recs[i]
	}
	return recs[w:]
}
