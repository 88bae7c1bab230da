package resume

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ssekafka/ssekafka/proto"
)

// A model of one partition: its log, the cache's compacted state of a
// prefix of it (a state page), and the feed's ring of its recent records.
// The state part a client gets is built from the rules of this package the
// way the edge builds it (writeState), for each source SourceFor may pick;
// the plain rule is a lone stream's own page of now.

type plog []proto.Record

// page is the cache's state at head, from since: the latest record per key
// at or after since, in offset order (a state page without paging).
func (l plog) page(since, head int64) []proto.Record {
	return derefs(LatestPerKey(l.ptrs(0, head)), since)
}

// ring is the feed's ring's records from since to head.
func (l plog) ring(since, head int64) []*proto.Record { return l.ptrs(since, head) }

func (l plog) ptrs(from, to int64) []*proto.Record {
	var out []*proto.Record
	for i := from; i < to; i++ {
		r := l[i]
		out = append(out, &r)
	}
	return out
}

func derefs(recs []*proto.Record, since int64) []proto.Record {
	var out []proto.Record
	for _, r := range recs {
		if r.Offset >= since {
			out = append(out, *r)
		}
	}
	return out
}

// view is what a client holds after applying recs to what it held at since.
func (l plog) view(since int64, frames []proto.Record) map[string]string {
	v := map[string]string{}
	apply := func(r proto.Record) {
		if r.Tombstone {
			delete(v, string(r.Key))
		} else {
			v[string(r.Key)] = string(r.Value)
		}
	}
	for _, r := range l[:since] {
		apply(r)
	}
	for _, r := range frames {
		apply(r)
	}
	return v
}

func randomLog(rng *rand.Rand) plog {
	n := rng.IntN(30)
	l := make(plog, n)
	for i := range l {
		l[i] = proto.Record{Offset: int64(i), Key: []byte(fmt.Sprintf("k%d", rng.IntN(6))), Value: []byte(fmt.Sprintf("v%d", i))}
		if rng.IntN(4) == 0 {
			l[i].Tombstone, l[i].Value = true, nil
		}
	}
	return l
}

func send(recs []proto.Record, skip int64, superseded map[string]struct{}) []proto.Record {
	var out []proto.Record
	for i := range recs {
		if Send(&recs[i], skip, superseded) {
			out = append(out, recs[i])
		}
	}
	return out
}

// plain is a lone stream's state part: its own page of the state at head.
func plain(l plog, since, head int64) []proto.Record {
	skip := SkipAfterPage(FirstSkip(since), head, -1)
	return send(l.page(since, head), skip, nil)
}

// fromRing is a storm's resume inside the ring.
func fromRing(l plog, since, head int64, skip int64) []proto.Record {
	return send(derefs(LatestPerKey(l.ring(since, head)), 0), min(skip, head), nil)
}

// served is the state part of a client at since when the cache answered
// a page as of pageAt (a shared page of a moment ago, or one of now), the
// ring holds the records from ringStart and the feed stands at head.
func served(l plog, since, pageAt, ringStart, head int64, storm, reuse bool) ([]proto.Record, Source) {
	src := SourceFor(ringStart <= since, storm, since, false, reuse)
	skip := FirstSkip(since)
	switch src {
	case Ring:
		return fromRing(l, since, head, skip), src
	case OwnPage:
		pageAt = head
	}
	var superseded map[string]struct{}
	current := int64(-1)
	if ringStart <= pageAt && pageAt < head {
		superseded, current = Superseded(l.ring(pageAt, head)), head
	}
	skip = SkipAfterPage(skip, pageAt, current)
	frames := send(l.page(since, pageAt), skip, superseded)
	if pageAt >= head {
		return frames, src
	}
	// Short of the feed: the ring covers the rest, or a page of now.
	if SourceFor(ringStart <= pageAt, storm, pageAt, true, false) == Ring {
		return append(frames, fromRing(l, pageAt, head, skip)...), src
	}
	skip = SkipAfterPage(skip, head, -1)
	return append(frames, send(l.page(pageAt, head), skip, nil)...), src
}

// Every strategy and every source gives the client the view the plain rule
// gives (the state as of the feed's position), and where the ring covers
// what a shared page lacks, the very same frames.
func TestStrategiesGiveThePlainRulesView(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	sources := map[Source]int{}
	for range 5000 {
		l := randomLog(rng)
		head := int64(len(l))
		since := rng.Int64N(head + 1)
		pageAt := since + rng.Int64N(head-since+1)
		ringStart := rng.Int64N(head + 1)
		want := plain(l, since, head)
		if got, want := fmt.Sprint(l.view(since, want)), fmt.Sprint(l.view(head, nil)); got != want {
			t.Fatalf("the plain rule from %d: view %s, the state is %s", since, got, want)
		}
		for _, s := range []Sharing{ShareWhenCrowded, ShareAlways, ShareNever} {
			others, crowded := rng.IntN(2) == 0, rng.IntN(2) == 0
			got, src := served(l, since, pageAt, ringStart, head, s.Storm(others), s.Reuse(crowded, false))
			sources[src]++
			if gv, wv := fmt.Sprint(l.view(since, got)), fmt.Sprint(l.view(since, want)); gv != wv {
				t.Fatalf("log %v from %d, page at %d, ring from %d, %v: view %s, plain %s", l, since, pageAt, ringStart, src, gv, wv)
			}
			if (src == Ring || ringStart <= pageAt) && !slices.EqualFunc(got, want, sameRecord) {
				t.Fatalf("log %v from %d, page at %d, ring from %d, %v:\ngot   %v\nplain %v", l, since, pageAt, ringStart, src, got, want)
			}
		}
	}
	for _, src := range []Source{Ring, SharedPage, OwnPage} {
		if sources[src] == 0 {
			t.Errorf("source %v never chosen", src)
		}
	}
}

func sameRecord(a, b proto.Record) bool {
	return a.Offset == b.Offset && string(a.Key) == string(b.Key) && a.Tombstone == b.Tombstone
}
