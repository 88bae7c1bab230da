package resume

import "github.com/ssekafka/ssekafka/proto"

// Source is where a partition's state part is read from.
type Source uint8

const (
	Ring       Source = iota + 1 // the feed's resume ring: no request
	SharedPage                   // a state page asked or answered lately for another stream, if any
	OwnPage                      // a state page of its own
)

// Sharing is the storm strategy: when a stream shares work with others
// (the resume ring, pages answered lately, frames encoded once). Every
// strategy gives a client the same events and ids as a stream served
// alone (the tests of this package prove it on random logs); they differ
// only in the requests the cache tier gets.
type Sharing uint8

const (
	ShareWhenCrowded Sharing = iota // the edge's: in a storm (streams starting together)
	ShareAlways                     // every stream as in a storm
	ShareNever                      // every stream alone, never from the ring
)

// Storm reports whether a stream is served as one of a storm, given
// whether others began their state part with it.
func (s Sharing) Storm(others bool) bool {
	switch s {
	case ShareAlways:
		return true
	case ShareNever:
		return false
	}
	return others
}

// Reuse reports whether a stream may take a page answered lately for
// another one, given whether the feed is crowded with streams in their
// state part; never when it asks again because the page was behind.
func (s Sharing) Reuse(crowded, again bool) bool {
	return !again && (s == ShareAlways || crowded)
}

// SourceFor decides where the next stretch of a partition is read from.
// In a storm, a partition the ring covers from since (ringCovers: the
// ring holds it and the tier's word came after the stream began) is
// written from the ring, up to the feed's position, as if the client had
// never left; but a client from zero in it first reads the cache's state
// (paged: it has read a page of it), which may be ahead of the feed. A
// lone stream reads the cache tier's state, so that its ready covers all
// the tier had (and a storm's ring resumes are at least as current).
func SourceFor(ringCovers, storm bool, since int64, paged, reuse bool) Source {
	switch {
	case ringCovers && storm && (since > 0 || paged):
		return Ring
	case reuse:
		return SharedPage
	}
	return OwnPage
}

// Kind is how a resumed stream's state part was served, in
// ssekafka_edge_resumes_total{kind}.
type Kind uint8

const (
	KindRing      Kind = iota // from the resume ring only
	KindCoalesced             // state pages, all shared with other streams
	KindState                 // some state request of its own
)

// Label is the kind's value in the metric label.
func (k Kind) Label() string {
	switch k {
	case KindCoalesced:
		return "coalesced"
	case KindState:
		return "state"
	}
	return "ring"
}

// AfterPage is the kind once a page was read, shared or not.
func (k Kind) AfterPage(shared bool) Kind {
	switch {
	case !shared:
		return KindState
	case k == KindRing:
		return KindCoalesced
	}
	return k
}

// Superseded is what a shared page must leave out: the keys of the feed's
// changes past the page's Next (newer, from the ring). The client gets
// those changes from the ring or its live frames, and the page is then as
// of the feed's position. Nil when there are none.
func Superseded(newer []*proto.Record) map[string]struct{} {
	if len(newer) == 0 {
		return nil
	}
	keys := make(map[string]struct{}, len(newer))
	for _, r := range newer {
		keys[string(r.Key)] = struct{}{}
	}
	return keys
}

// SkipAfterPage is the offset below which tombstones are left out once a
// page that reached next was read, the feed then being at current (-1 if
// the ring has nothing past next): a tombstone the cache had applied by
// then deletes a key a client from zero never got, one applied later may
// delete a key an earlier page gave it.
func SkipAfterPage(skip, next, current int64) int64 { return min(skip, max(next, current)) }

// LatestPerKey keeps, of recs in offset order, only the last per key, in
// order: what a client resuming before them needs (it changes recs).
func LatestPerKey(recs []*proto.Record) []*proto.Record {
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
