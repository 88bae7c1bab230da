// A stream's state part (docs/architecture.md rule 2), partition by partition, from the
// feed's resume ring or from state pages, as the rules of package resume
// decide.

package hub

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/proto"
)

// statePart is one stream's state part being written.
type statePart struct {
	s       *streamer
	ctx     context.Context
	cw      *connWriter
	f       *feed
	viewKey string
	format  frameFormat
	filters []route.Filter
	joined  proto.Progress // the feed's position when the client joined it
	began   time.Time
	storm   bool // shares work with the streams that began with it

	at   proto.Progress // reached so far
	kind resume.Kind
}

// partState is where a partition's state part stands.
type partState struct {
	p         int32
	since     int64 // the next page (or the ring) from here
	skipBelow int64 // tombstones below it are left out (resume.FirstSkip)
	behind    time.Duration
	paged     bool // a page of it was read
	again     bool // the last page was behind the feed: ask for one of now
}

// writeState writes every current entry at or after start, partition by
// partition in offset order, each with its true progress (docs/architecture.md rule 2),
// and returns the progress reached and how it was served. A partition whose
// position lies in the feed's resume ring is written from it; otherwise
// from state pages (shared with other streams asking for the same, see
// sharedPage) until the ring covers the rest or the pages reach joined, the
// feed's position when the client joined it: what came before that is not
// among the client's pending live frames, so a page from a cache node that
// lags the feed is followed by another until it is covered.
func (s *streamer) writeState(ctx context.Context, cw *connWriter, f *feed, viewKey string, format frameFormat, filters []route.Filter, start, joined proto.Progress) (proto.Progress, resume.Kind, error) {
	sp := &statePart{s: s, ctx: ctx, cw: cw, f: f, viewKey: viewKey, format: format, filters: filters, joined: joined,
		at: start.Clone(), kind: resume.KindRing}
	sp.at.TimeMs = resume.StateTime(start, s.cfg.Now())
	sp.began = time.Now()
	sp.storm = s.sharing.Storm(f.enterState())
	defer f.leaveState()
	if sp.storm {
		// The ring serves a partition only once the tier's word on it came
		// after the stream began: its ready then lacks nothing a holder had.
		f.awaitWord(ctx, sp.began)
	}
	for p := range sp.at.Offsets {
		ps := &partState{p: int32(p), since: start.Offsets[p], skipBelow: resume.FirstSkip(start.Offsets[p])}
		if err := sp.partition(ps); err != nil {
			return sp.at, sp.kind, err
		}
	}
	return sp.at, sp.kind, nil
}

// partition writes one partition's state part, from where the rules say
// (resume.SourceFor), until the ring or the pages cover it.
func (sp *statePart) partition(ps *partState) error {
	for {
		recs, next, ringStart, ok := sp.f.ringFrom(ps.p, ps.since, sp.began)
		reuse := sp.s.sharing.Reuse(sp.f.crowded(), ps.again)
		src := resume.SourceFor(ok, sp.storm, ps.since, ps.paged, reuse)
		if src == resume.Ring {
			return sp.fromRing(ps, recs, next)
		}
		if ps.again {
			if err := sp.waitAgain(ps); err != nil {
				return err
			}
		}
		done, err := sp.fromPage(ps, min(next, ringStart), src == resume.SharedPage)
		if err != nil || done {
			return err
		}
	}
}

// fromRing writes the partition from the ring's records past since, up to
// the feed's position next, as if the client had never left.
func (sp *statePart) fromRing(ps *partState, recs []*proto.Record, next int64) error {
	ps.skipBelow = min(ps.skipBelow, next)
	if len(recs) > 0 {
		// The same records for every stream of the view at this
		// position: encoded once.
		key := encodingKey(sp.viewKey, 'r', ps.p, ps.skipBelow, next, &sp.at)
		enc, shared := sp.f.ringEncoded(key)
		if shared {
			sp.s.metrics.FramesShared.Inc()
			sp.s.metrics.StateEventsWritten.Add(float64(enc.events))
		} else {
			for _, rec := range resume.LatestPerKey(recs) {
				enc = sp.appendRecord(enc, rec, ps.p, ps.skipBelow, nil)
			}
			enc = sp.seal(enc)
			sp.f.keepRingEncoded(key, enc)
		}
		if err := sp.cw.writeChunk(enc.wire()); err != nil {
			return err
		}
	}
	sp.at.Offsets[ps.p] = max(sp.at.Offsets[ps.p], next)
	return nil
}

// waitAgain waits a moment before asking again for a page of a partition
// whose node lagged the live feed; an error once that took RequestTimeout.
func (sp *statePart) waitAgain(ps *partState) error {
	if ps.behind += 10 * time.Millisecond; ps.behind > sp.s.cfg.RequestTimeout {
		return fmt.Errorf("state %s/%d: cache stays at %d, behind the live feed at %d", sp.f.topic, ps.p, sp.at.Offsets[ps.p], sp.joined.Offset(ps.p))
	}
	select {
	case <-sp.ctx.Done():
		return sp.ctx.Err()
	case <-time.After(10 * time.Millisecond):
		return nil
	}
}

// fromPage writes the partition's next state page (one answered lately
// for another stream if reuse) and reports whether the partition is done.
func (sp *statePart) fromPage(ps *partState, minNext int64, reuse bool) (done bool, err error) {
	f := sp.f
	page, shared, err := sp.s.e.cache.sharedPageRetrying(sp.ctx, f.topic, f.meta.Epoch, ps.p, ps.since, minNext, reuse)
	if err != nil {
		return true, err
	}
	ps.paged = true
	f.cacheAt(ps.p, page.Next)
	sp.kind = sp.kind.AfterPage(shared)
	// A page taken before the feed's last changes (a shared one) leaves
	// out what they superseded: the stream gets those changes from the
	// ring or its live frames, and the page is then as of the feed's
	// position.
	superseded, current := sp.supersededAfter(ps.p, page.Next)
	ps.skipBelow = resume.SkipAfterPage(ps.skipBelow, page.Next, current)
	if err := sp.writePage(page, ps.p, ps.skipBelow, superseded, current); err != nil {
		return true, err
	}
	return sp.nextPage(ps, &page.StatePage)
}

// supersededAfter returns the keys the ring's records past next change, and
// the feed's position they reach (-1 if none).
func (sp *statePart) supersededAfter(p int32, next int64) (map[string]struct{}, int64) {
	newer, current, _, ok := sp.f.ringFrom(p, next, sp.began)
	if !ok || len(newer) == 0 {
		return nil, -1
	}
	return resume.Superseded(newer), current
}

// nextPage moves the partition past page and reports whether it is done:
// the pages reached the feed's position when the client joined.
func (sp *statePart) nextPage(ps *partState, page *proto.StatePage) (bool, error) {
	p := ps.p
	if page.More {
		if page.Cursor <= ps.since { // a page that does not move on would never end
			sp.s.metrics.BadPages.Inc()
			return true, fmt.Errorf("state %s/%d: page cursor %d does not advance past %d", sp.f.topic, p, page.Cursor, ps.since)
		}
		ps.since = page.Cursor
		return false, nil
	}
	sp.at.Offsets[p] = max(sp.at.Offsets[p], page.Next)
	if sp.at.Offsets[p] >= sp.joined.Offset(p) {
		return true, nil
	}
	// Short of the feed (a page shared from before its last changes, or a
	// node that lags): the ring covers the rest, or the cache tier is
	// asked again.
	ps.since, ps.again = sp.at.Offsets[p], true
	return false, nil
}

// writePage writes the frames of a state page of partition p but those of
// the keys superseded (as of the feed's position current), encoded once for
// every stream of the view at the same position, and moves at past it.
func (sp *statePart) writePage(page *sharedPage, p int32, skipBelow int64, superseded map[string]struct{}, current int64) error {
	recs := page.Records
	if len(recs) == 0 {
		return nil
	}
	key := encodingKey(sp.viewKey, 'p', p, skipBelow, current, &sp.at)
	enc, ok := page.encoded(key)
	if ok {
		sp.s.metrics.FramesShared.Inc()
		sp.s.metrics.StateEventsWritten.Add(float64(enc.events))
	} else {
		for i := range recs {
			enc = sp.appendRecord(enc, &recs[i], p, skipBelow, superseded)
		}
		enc = sp.seal(enc)
		page.keep(key, enc)
	}
	sp.at.Offsets[p] = recs[len(recs)-1].Offset + 1
	return sp.cw.writeChunk(enc.wire())
}

// seal makes the frames just encoded into a chunk of the stream's coding:
// compressed once for every stream that shares the encoding (its key has
// the view's, which has the coding), the plain frames let go. An encoding
// over stateCompressMax (a page with values sent apart, megabytes each) is
// stored: a lone stream would compress it for itself (about 8 ms a MiB).
func (sp *statePart) seal(enc encodedPage) encodedPage {
	if sp.format.enc == compress.Identity {
		return enc
	}
	if len(enc.frames) > stateCompressMax {
		enc.chunk = sp.s.e.codings.store(sp.format.enc, enc.frames)
	} else {
		enc.chunk = sp.s.e.codings.compress(sp.format.enc, enc.frames)
	}
	enc.frames = nil
	return enc
}

// stateCompressMax is the largest encoding of a state part compressed:
// state pages (sse.pageBytes) and resumes from the ring (sse.resumeRingBytes,
// 4 MiB by default) are below it.
const stateCompressMax = 4 << 20

// appendRecord appends rec's frame, when the client is to get it
// (resume.Send and the view's filters), with its true progress (at, moved
// past it).
func (sp *statePart) appendRecord(enc encodedPage, rec *proto.Record, p int32, skipBelow int64, superseded map[string]struct{}) encodedPage {
	sp.at.Offsets[p] = rec.Offset + 1
	if !resume.Send(rec, skipBelow, superseded) || !route.Matches(sp.filters, rec) {
		return enc
	}
	enc.frames = sp.format.appendEvent(enc.frames, rec, &sp.at)
	enc.events++
	return enc
}

// encodingKey names the frames of a stretch of state records written for a
// view from position at: whatever else decides them (what the stretch is,
// which deletes are left out) is in tag, p, a and b.
func encodingKey(viewKey string, tag byte, p int32, a, b int64, at *proto.Progress) string {
	key := make([]byte, 0, len(viewKey)+64)
	key = append(key, viewKey...)
	key = append(key, 0, tag)
	key = strconv.AppendInt(key, int64(p), 10)
	key = append(key, 0)
	key = strconv.AppendInt(key, a, 10)
	key = append(key, 0)
	key = strconv.AppendInt(key, b, 10)
	key = append(key, 0)
	return string(proto.AppendProgress(key, at))
}
