// Gap state: what the feed knows of each partition besides its position,
// and the rules that find gaps and fill them from the cache tier (docs/architecture.md
// rules 5 and 10). Only the feed goroutine reads or writes it; what the
// ring must know of it (behind, held) is told to the ring under feed.mu.

package hub

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/tier"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// partGap is what the feed knows of one partition besides its progress.
type partGap struct {
	probeNext  int64 // the cache's next offset at the previous probe
	needFill   bool
	fillTarget int64     // a fill is complete only once the feed reaches this offset
	denied     time.Time // when the cache tier last denied a far live message (see plausible)
	shortAt    time.Time // when a fill last ended short of its target (see fillAllowed)
	doubts     doubts    // far live messages dropped unconfirmed, judged by the next probe
	publisher  string    // who published the last head, and since when primary (see notePublisher)
	generation uint64

	// The ordered applier (apply.go).
	waits    jobKind    // the job p's messages wait for (a check, a record apart, a fill page)
	front    *liveMsg   // the message that waits for it, if one does
	queue    []*liveMsg // messages that came since, in order
	queued   int64      // their bytes, counted in the feed memory
	dropping bool       // the queue passed its bound: messages are dropped until the job ends
	held     bool       // as last told to the ring (ringPart.held)
	fill     fillRun
	refill   bool // needFill was raised while a fill was under way
	probing  bool // the probe's head request is in flight
}

// fillRun is a fill under way.
type fillRun struct {
	since int64 // the next page's position
	short int   // last pages that ended short of the target
}

// fillAllowed reports whether a live message may start a fill of p: not
// within a second of a fill that no holder could complete, so that a run of
// messages whose gaps no holder confirms (stale, or forged) costs one fill
// a second rather than one each, and live changes go on meanwhile. A real
// gap is filled once the second has passed, or by the probe.
func (f *feed) fillAllowed(p int32) bool {
	return time.Since(f.parts[p].shortAt) >= time.Second
}

// markNeedFill notes that p lacks changes: it is filled at the next
// message or probe, or once the fill under way ends.
func (f *feed) markNeedFill(p int32) {
	st := &f.parts[p]
	st.needFill = true
	if st.waits == jobPage {
		st.refill = true
	}
}

// topicCheck is the metadata request a message of another epoch or
// partition starts, and the messages it judges.
type topicCheck struct {
	asking  bool
	at      time.Time // when the last one was answered
	waiting int       // messages judged by the request in flight
	subject string    // the last of them, for the log
	epoch   uint32
	part    int32
}

// check reports whether a live message is of the feed's epoch and
// partitions. One that is not is checked against the topic's metadata
// before the feed acts on it: a topic changed under the feed ends it, a
// message the cache tier does not confirm (stale, or forged by anyone who
// can publish on NATS) is dropped, so that one message cannot disconnect
// every client of a topic.
func (f *feed) check(epoch uint32, partition int32, m *tier.Msg) bool {
	if epoch == f.progress.Epoch && partition >= 0 && int(partition) < len(f.parts) {
		return true
	}
	// At most one metadata request a second for such messages (timed from
	// the answer); a real new epoch meanwhile is found by the next probe,
	// new partitions by their next heads (HeadInterval) once a second has
	// passed. The messages the request judges are counted once it answers
	// that the topic did not change.
	tc := &f.topicCheck
	if tc.asking || time.Since(tc.at) >= time.Second {
		tc.waiting++
		tc.subject, tc.epoch, tc.part = m.Subject, epoch, partition
		f.startTopicCheck()
		return false
	}
	f.foreign(1, m.Subject, epoch, partition)
	return false
}

func (f *feed) foreign(n int, subject string, epoch uint32, partition int32) {
	f.e.metrics.BadChanges.Add(float64(n))
	f.e.log.Warn("live message of another epoch or partition, not confirmed by the cache tier: dropped",
		"topic", f.topic, "subject", subject, "epoch", epoch, "partition", partition, "messages", n)
}

// startTopicCheck asks the cache tier for the topic's metadata (a probe
// failed: nobody holds a partition, or a page came under another epoch; or
// a message of another epoch or partition came); the request also makes
// the cache take up a topic it dropped. PageTimeout, not RequestTimeout:
// while ownership moves no node may answer at all (only holders do).
func (f *feed) startTopicCheck() {
	if f.topicCheck.asking {
		return
	}
	f.topicCheck.asking = true
	f.spawn(jobResult{kind: jobTopic}, f.e.cfg.PageTimeout, 0, func(ctx context.Context, r *jobResult) {
		r.meta, r.err = f.e.cache.requestMeta(ctx, f.topic)
	})
}

// topicAnswered applies the topic's metadata: a topic that no longer
// exists, or exists under another epoch or with more partitions, ends the
// feed (its clients reconnect and get 404, or event:reset and the new
// state). The cache tier unavailable: asked again at the next probe.
func (f *feed) topicAnswered(r jobResult) {
	tc := &f.topicCheck
	tc.asking, tc.at = false, time.Now()
	n := tc.waiting
	tc.waiting = 0
	why := reason.Unknown
	switch {
	case errors.Is(r.err, errTopicNotFound):
		why = reason.ResetEpoch
	case r.err != nil:
	case r.meta.Epoch != f.progress.Epoch:
		why = reason.ResetEpoch
	case int(r.meta.Partitions) > len(f.parts):
		why = reason.ResetPartitions
	}
	if why != reason.Unknown {
		f.fail(why)
		return
	}
	if n > 0 {
		f.foreign(n, tc.subject, tc.epoch, tc.part)
	}
}

// plausibleJump is how far a live change or head may stand past what the
// cache tier has confirmed (the feed's position, the last probe) before the
// feed asks it to confirm. Changes come in order, each a few offsets past
// the last (transaction markers), and heads on the same subject after them;
// a real jump further (the edge lost changes, an aborted transaction) costs
// one head request. A forger on an unauthenticated NATS can still displace
// this many offsets: authentication keeps it out.
const plausibleJump = 1024

type judgement uint8

const (
	judgedNear judgement = iota // plausible
	judgedFar                   // not, and denied lately: dropped unasked
	judgeAsk                    // a head request decides (startCheck)
)

// plausible judges whether partition p's cache tier may have reached next:
// near what the feed knows, or confirmed by a head request. A far message
// the cache tier does not confirm would otherwise move the feed past every
// real record (a blackhole) or stop the ring serving. After a denial,
// far messages of p are dropped unasked for a second; what was real is
// then found by the probe and filled.
func (f *feed) plausible(p int32, next int64) judgement {
	st := &f.parts[p]
	if next < 0 || next == math.MaxInt64 {
		return judgedFar // an offset no record has (MaxInt64+1 would wrap); 0 is an empty partition's head
	}
	// Not ring.known: heads raise it, and a run of heads each just within
	// reach would ratchet the bound past any limit.
	known := max(f.progress.Offsets[p], st.probeNext)
	if next <= known || next-known <= plausibleJump {
		return judgedNear
	}
	if time.Since(st.denied) < time.Second {
		return judgedFar
	}
	return judgeAsk
}

// startCheck asks for p's head, to confirm next.
func (f *feed) startCheck(p int32, next int64) {
	f.parts[p].waits = jobCheck
	f.spawn(jobResult{kind: jobCheck, p: p, next: next}, f.e.cfg.PageTimeout, 0, f.askHead)
}

// checked applies a head request startCheck made: the message that waited
// for it is judged again (near now, or denied).
func (f *feed) checked(r jobResult) {
	st := &f.parts[r.p]
	st.waits = jobNone
	if r.err != nil || r.page.Next < r.next {
		st.denied = time.Now()
		return
	}
	st.probeNext = max(st.probeNext, r.page.Next)
}

// dropUnconfirmed drops a live message plausible refused: one whose
// offset no record has is counted at once, any other once the next probe
// still finds the cache tier short of it (see doubt).
func (f *feed) dropUnconfirmed(kind string, p int32, offset int64) {
	if offset < 0 || offset == math.MaxInt64 {
		f.e.metrics.BadChanges.Inc()
		f.e.log.Warn("live "+kind+" at an offset no record has: dropped", "topic", f.topic, "partition", p, "offset", offset)
		return
	}
	next := offset // a head's Next
	if kind == "change" {
		next = offset + 1
	}
	f.doubt(p, next)
}

// cacheAt records that the cache tier has applied partition p up to next
// (a head, a state page): until the feed is there, no stream resumes from
// the ring, whose ready would lack it.
func (f *feed) cacheAt(p int32, next int64) {
	f.mu.Lock()
	f.ring.parts[p].known = max(f.ring.parts[p].known, next)
	f.mu.Unlock()
}

// cacheKnown is how far the cache tier has applied partition p, as far as
// the feed has heard (heads, state pages).
func (f *feed) cacheKnown(p int32) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ring.parts[p].known
}

// heard records a head or change of partition p from its primary: the
// tier's word on p (see awaitWord). It runs on the feed goroutine.
func (f *feed) heard(p int32) {
	f.mu.Lock()
	f.ring.parts[p].heard = time.Now()
	f.mu.Unlock()
}

// notePublisher notes who published head h (proto.Head: the cache node and
// when it became primary). A new one means the partition's primary changed
// (a crash, a handover, a restart): what the old one published no longer
// tells where the tier stands, and the new one's head has just raised
// ring.known to its position, so the ring serves p again only once the feed
// has filled up to it. Heads from cache nodes that predate publishers
// carry none. It runs on the feed goroutine.
func (f *feed) notePublisher(h *proto.Head) {
	st := &f.parts[h.Partition]
	if h.Publisher == st.publisher && h.Generation == st.generation || h.Publisher == "" && h.Generation == 0 {
		return
	}
	if st.publisher != "" || st.generation != 0 {
		f.e.log.Debug("partition's primary changed", "topic", f.topic, "partition", h.Partition,
			"from", st.publisher, "to", h.Publisher, "generation", h.Generation, "next", h.Next)
	}
	st.publisher, st.generation = h.Publisher, h.Generation
}

// markBehind tells the ring which partitions the feed knows to be behind
// the cache tier (a gap not filled yet): no stream resumes from those.
func (f *feed) markBehind() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p := range f.parts {
		st := &f.parts[p]
		f.ring.parts[p].behind = st.needFill || st.fillTarget > f.progress.Offsets[p] || st.probeNext > f.progress.Offsets[p]
	}
}

// startFill brings partition p up to the cache's head from state pages,
// delivering what the feed missed, a page at a time beside the feed
// goroutine (filled applies each). It completes only when the feed reaches
// target (a change's From, a head's Next, or an earlier fill's target): a
// last page that ends short of it came from a holder that lags, so the fill
// asks again (the queue group may pick another holder) a few times, then
// leaves it to the next message or tick.
func (f *feed) startFill(p int32, target int64) {
	st := &f.parts[p]
	st.fillTarget = max(st.fillTarget, target)
	st.refill = false
	// Behind until the fill is done: a half-filled partition (its pages are
	// compacted) must not serve ring resumes. markBehind sets it right after.
	f.mu.Lock()
	f.ring.parts[p].behind = true
	f.mu.Unlock()
	st.fill = fillRun{since: f.progress.Offsets[p]}
	f.askPage(p, 0)
}

// askPage asks for p's next fill page, after delay.
func (f *feed) askPage(p int32, delay time.Duration) {
	st := &f.parts[p]
	st.waits = jobPage
	since := st.fill.since
	f.spawn(jobResult{kind: jobPage, p: p}, f.e.cfg.PageTimeout, delay, func(ctx context.Context, r *jobResult) {
		r.page, r.err = f.e.cache.requestPage(ctx, f.topic, f.meta.Epoch, p, since)
	})
}

// filled applies a fill page, and asks for the next one or ends the fill.
func (f *feed) filled(r jobResult) {
	p := r.p
	st := &f.parts[p]
	if r.err != nil {
		st.needFill = true
		f.e.log.Warn("fill live gap", "topic", f.topic, "partition", p, "err", r.err)
		f.fillDone(p, false)
		return
	}
	page := &r.page
	f.mu.Lock()
	for i := range page.Records {
		if page.Records[i].Offset >= f.progress.Offsets[p] {
			f.deliver(p, &page.Records[i])
		}
		if i%f.batch == f.batch-1 {
			f.mu.Unlock()
			f.flushDirty()
			f.mu.Lock()
		}
	}
	f.mu.Unlock()
	if !page.More {
		f.filledLast(p, page.Next)
		return
	}
	if page.Cursor <= st.fill.since { // a page that does not move on would never end
		st.needFill = true
		f.e.metrics.BadPages.Inc()
		f.e.log.Warn("fill live gap: state page cursor does not advance", "topic", f.topic, "partition", p, "since", st.fill.since, "cursor", page.Cursor)
		f.fillDone(p, false)
		return
	}
	st.fill.since = page.Cursor
	f.askPage(p, 0)
}

// filledLast applies the end of a fill's last page: the answering node has
// applied everything below next.
func (f *feed) filledLast(p int32, next int64) {
	st := &f.parts[p]
	f.mu.Lock()
	if next > f.progress.Offsets[p] {
		f.advance(p, next)
	}
	reached := f.progress.Offsets[p] >= st.fillTarget
	if reached {
		f.progress.TimeMs = f.e.cfg.Now().UnixMilli()
	}
	f.mu.Unlock()
	if reached {
		st.needFill = st.refill
		f.e.metrics.Fills.Inc()
		f.fillDone(p, true)
		return
	}
	if st.fill.short++; st.fill.short >= 5 {
		// No holder reaches the target: it came from a head or change
		// that no node confirms (stale, or hostile). Lower it to what the
		// holders have, so that changes flow again; a later change, head
		// or probe that is really ahead raises it once more.
		st.needFill = true
		f.e.log.Warn("fill short of its target: lowered to what the cache tier holds", "topic", f.topic, "partition", p, "at", f.progress.Offsets[p], "target", st.fillTarget)
		st.fillTarget = f.progress.Offsets[p]
		st.shortAt = time.Now()
		// Nor does the ring wait for a head no holder confirms.
		f.mu.Lock()
		f.ring.parts[p].known = min(f.ring.parts[p].known, f.progress.Offsets[p])
		f.mu.Unlock()
		f.fillDone(p, false)
		return
	}
	st.fill.since = f.progress.Offsets[p]
	f.askPage(p, 10*time.Millisecond) // then ask again, maybe another holder
}

// fillDone ends p's fill: a change that waited for a fill that did not
// complete is dropped (the cache has it: filled at the next message or
// tick); a head goes on either way.
func (f *feed) fillDone(p int32, ok bool) {
	st := &f.parts[p]
	st.waits = jobNone
	st.refill = false
	if m := st.front; !ok && m != nil && !m.isHead {
		m.stage = stageDrop
		f.lostNullKey(m, "its gap's fill failed")
	}
}

// probe asks the cache for each partition's head, beside the feed
// goroutine. A position the cache had reached by the previous probe that
// the feed still has not heard of: changes were lost and no head said so (a
// backstop for heads).
func (f *feed) probe() {
	for p := range f.parts {
		st := &f.parts[p]
		if f.heardTo(int32(p)) < st.probeNext {
			f.markNeedFill(int32(p))
			st.fillTarget = max(st.fillTarget, st.probeNext)
		}
		if !st.probing {
			st.probing = true
			f.spawn(jobResult{kind: jobProbe, p: int32(p)}, f.e.cfg.PageTimeout, 0, f.askHead)
		}
	}
}

// heardTo is the position past p's last change the feed has: applied, or
// waiting behind a job.
func (f *feed) heardTo(p int32) int64 {
	st := &f.parts[p]
	next := f.progress.Offsets[p]
	for i := len(st.queue) - 1; i >= -1; i-- {
		m := st.front
		if i >= 0 {
			m = st.queue[i]
		}
		if m != nil && !m.isHead {
			return max(next, m.change.Record.Offset+1)
		}
	}
	return next
}

// probed applies a probe's head. When a partition cannot be asked, the
// topic's metadata is: a topic deleted (or recreated under a new epoch)
// ends the feed.
func (f *feed) probed(r jobResult) {
	st := &f.parts[r.p]
	st.probing = false
	if r.err != nil {
		f.startTopicCheck()
		return
	}
	st.probeNext = r.page.Next
	f.judgeDoubts(r.p, r.page.Next)
}

// onTick probes, trims the ring, and fills the partitions known to lack
// changes that wait for no job.
func (f *feed) onTick() {
	f.probe()
	f.mu.Lock()
	f.ring.trim(time.Now())
	f.chargeRingLocked()
	f.mu.Unlock()
	f.markBehind()
	for p := range f.parts {
		if st := &f.parts[p]; st.needFill && st.waits == jobNone {
			f.startFill(int32(p), 0)
			f.noteHeld(int32(p))
		}
	}
}

// lostInTransit marks every partition as lacking changes: anything
// published while the NATS connection was away is lost to the feed.
func (f *feed) lostInTransit() {
	for p := range f.parts {
		f.markNeedFill(int32(p))
	}
}
