package edge

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// feed is one topic's live feed on this edge: one NATS subscription whose
// changes are turned into frames once per view and queued to every client of
// the view. One goroutine (run) processes changes in order and fills gaps
// from the cache tier before anything newer (DESIGN rule 5).
//
// The goroutine boundary: run (and init, before run starts) is the only
// writer of progress, parts, the resume ring (but what streams' pages and
// head requests tell of the tier: known, heard), the slab and the views'
// frames, and it calls the cache tier without holding mu. Everything a
// stream's goroutine touches (join, goLive, waitCovers, awaitWord,
// ringFrom, enterState, leave) is read or changed under mu, but the frames encoded
// from the ring, under encMu; meta and horizonWindow are fixed once init
// returns. The ring's records are never changed once added: a stream may
// read those ringFrom returned without mu.
type feed struct {
	e          *Edge
	topic      string
	ready      chan struct{} // closed when init ends; err says how
	err        error
	done       chan struct{} // closed to stop run
	msgs       chan *tier.Msg
	handling   atomic.Bool // a batch taken from msgs is being applied
	sub        tier.Subscription
	batch      int // changes delivered before clients are written to
	batchBytes int // or bytes of changes, whichever comes first

	meta          proto.Meta
	horizonWindow time.Duration // how far back a position may be and still resume
	topicChecked  time.Time     // the last metadata request for a message of another epoch (see check)

	mu        sync.Mutex // guards everything below, and clients' registration
	progress  proto.Progress
	parts     []partCursor
	views     map[string]*view
	ring      ring      // recent changes, for resumes from memory
	inState   int       // streams in their state part
	lastState time.Time // when the last one began it
	clients   int
	advanced  chan struct{} // closed and replaced when progress moves and waiters > 0
	waiters   int
	dirty     []*client // hijacked clients with frames to flush
	slab      []byte    // frames are carved from it (see encode)
	scratch   []byte    // a frame being encoded
	linger    *time.Timer
	stopped   bool
	asks      []*wordAsk // per partition, awaitWord's last head request

	encMu    sync.Mutex // a leaf; guards the frames encoded from the ring
	enc      map[string]encodedPage
	encOrder []string
	encBytes int

	ringCharged int64 // ring bytes counted in the edge's feed memory; guarded by mu (budget.go)
	encCharged  int64 // encoding bytes counted; guarded by encMu
}

// partCursor is what the feed knows of one partition besides its progress.
type partCursor struct {
	probeNext  int64 // the cache's next offset at the previous probe
	needFill   bool
	fillTarget int64     // a fill is complete only once the feed reaches this offset
	denied     time.Time // when the cache tier last denied a far live message (see plausible)
	shortAt    time.Time // when a fill last ended short of its target (see fillAllowed)
	doubts     doubts    // far live messages dropped unconfirmed, judged by the next probe
	publisher  string    // who published the last head, and since when primary (see notePublisher)
	generation uint64
}

// view is the clients of one (route, filters, id format) on a topic: they
// share every frame.
type view struct {
	filters []filter
	format  proto.IDFormat
	clients map[*client]struct{}
}

func (f *feed) init(ctx context.Context) error {
	e := f.e
	f.msgs = make(chan *tier.Msg, e.cfg.FeedBuffer)
	f.batch = max(1, min(1024, e.cfg.MaxQueue/4))
	f.batchBytes = max(1, e.cfg.MaxQueueBytes/4)
	sub, err := e.client.Subscribe(ctx, f.topic, f.msgs)
	if err != nil {
		return err
	}
	f.sub = sub
	meta, err := e.requestMeta(ctx, f.topic)
	if err != nil {
		_ = sub.Unsubscribe()
		return err
	}
	f.meta = meta
	f.horizonWindow = time.Duration(meta.HorizonMs) * time.Millisecond
	f.progress = proto.Progress{Epoch: meta.Epoch, TimeMs: f.e.cfg.Now().UnixMilli(), Offsets: make([]int64, meta.Partitions)}
	f.parts = make([]partCursor, meta.Partitions)
	for p := range f.parts {
		head, err := e.requestPageRetrying(ctx, f.topic, meta.Epoch, int32(p), math.MaxInt64)
		if err != nil {
			_ = sub.Unsubscribe()
			return err
		}
		f.progress.Offsets[p] = head.Next
		f.parts[p] = partCursor{probeNext: head.Next}
	}
	f.ring = newRing(e.cfg.ResumeRingBytes, e.cfg.ResumeRingAge, f.progress.Offsets)
	go f.run()
	return nil
}

func (f *feed) run() {
	reconnects := f.e.client.Reconnects()
	tick := time.NewTicker(f.e.cfg.ProbeInterval)
	defer tick.Stop()
	for {
		select {
		case <-f.done:
			return
		case m := <-f.msgs:
			f.handling.Store(true) // until the batch is applied: see ringFrom
			f.handle(m)
			// Take what else has arrived before writing: batches grow under
			// load, up to a quarter of a client's queue (frames or bytes).
			size := len(m.Data)
		more:
			for range f.batch {
				if size >= f.batchBytes {
					break
				}
				select {
				case m := <-f.msgs:
					f.handle(m)
					size += len(m.Data)
				default:
					break more
				}
			}
			f.markBehind()
			f.handling.Store(false)
			f.flushDirty()
			f.e.reclaimFeedMemory()
		case <-tick.C:
			if r := f.e.client.Reconnects(); r != reconnects {
				// Anything published while we were away is lost to us.
				reconnects = r
				for p := range f.parts {
					f.parts[p].needFill = true
				}
			}
			if !f.probe() {
				return // the feed ended: the topic is gone or changed
			}
			f.mu.Lock()
			f.ring.trim(time.Now())
			f.chargeRingLocked()
			f.mu.Unlock()
			f.markBehind()
			for p := range f.parts {
				if f.parts[p].needFill {
					f.fill(int32(p), 0)
				}
			}
			f.flushDirty()
			f.e.reclaimFeedMemory()
		}
	}
}

// handle applies one live message; runs on the feed goroutine. Gaps are
// found by offsets: a change whose publisher stood past this feed's
// position, or a head past it, means changes were lost; they are filled from
// the cache before anything newer is sent.
func (f *feed) handle(m *tier.Msg) {
	if proto.IsHead(m.Data) {
		h, err := proto.DecodeHead(m.Data)
		if err != nil || !f.check(h.Epoch, h.Partition, m) {
			return
		}
		if h.Next == 0 && f.progress.Offsets[h.Partition] > 0 {
			return // a holder that has read nothing yet (a new primary catching up): not a word of the partition
		}
		if !f.plausible(h.Partition, h.Next) {
			f.dropUnconfirmed("head", h.Partition, h.Next)
			return
		}
		f.cacheAt(h.Partition, h.Next)
		f.notePublisher(&h)
		if h.Next > f.progress.Offsets[h.Partition] {
			f.e.metrics.gaps.Inc()
			if f.fillAllowed(h.Partition) {
				f.fill(h.Partition, h.Next)
			}
		}
		if f.progress.Offsets[h.Partition] >= h.Next {
			f.heard(h.Partition)
		}
		return
	}
	ch, err := proto.DecodeChange(m.Data)
	if err != nil {
		f.e.metrics.badChanges.Inc()
		f.e.log.Warn("bad live change", "subject", m.Subject, "err", err)
		return
	}
	if !f.check(ch.Epoch, ch.Partition, m) {
		return
	}
	p := ch.Partition
	if ch.Record.Offset < f.progress.Offsets[p] {
		f.heard(p)
		return // already covered
	}
	if ch.Record.Offset < 0 || ch.Record.Offset == math.MaxInt64 || !f.plausible(p, ch.Record.Offset+1) {
		f.dropUnconfirmed("change", p, ch.Record.Offset)
		return
	}
	gap := ch.From > f.progress.Offsets[p]
	superseded := false
	if ch.Record.Apart {
		// Read now, before any fill up to it: then it goes on as an inline
		// change would (a fill would move past the null-key records after
		// it: pages hold none).
		whole, err := f.readApart(p, &ch.Record)
		switch {
		case err == nil:
			ch.Record = whole
		case errors.Is(err, errValueGone) && !ch.Record.KeyNull:
			// Superseded since, where a holder past it says so: its
			// key's newer record follows.
			superseded = true
		default:
			// The record comes from the state pages, which read it in
			// parts, as for a gap up to it.
			if f.fillAllowed(p) {
				f.fill(p, ch.Record.Offset+1)
			} else {
				f.parts[p].needFill = true
			}
			return
		}
	}
	if !f.fillAllowed(p) && (gap || f.parts[p].needFill) {
		if gap {
			f.e.metrics.gaps.Inc()
			return // found again by the next change, head or probe
		}
		// Follows on from the feed's position: nothing is missing before it.
	} else if gap || f.parts[p].needFill {
		f.e.metrics.gaps.Inc()
		// The fill must reach this change's From: a page that ends short
		// (a holder that lags) would otherwise let the change jump a hole.
		if !f.fill(p, ch.From) {
			return // retried on the next message or tick; the cache has this change
		}
		if ch.Record.Offset < f.progress.Offsets[p] {
			return
		}
	}
	f.mu.Lock()
	f.progress.TimeMs = f.e.cfg.Now().UnixMilli()
	if superseded {
		f.e.metrics.valuesGone.Inc()
		f.advance(p, ch.Record.Offset+1)
	} else {
		f.deliver(p, &ch.Record)
	}
	f.ring.parts[p].heard = time.Now()
	f.mu.Unlock()
}

// readApart reads the record a live change carries apart. Every holder
// that has applied it answers for it (requestApart asks again while the one
// asked is behind), a null-key one too (no state page holds it, so a fill
// would skip it). When a null-key record cannot be read within
// RequestTimeout (the fill then moves past it, as past any null-key record
// in a gap), the live streams that could have got it are reset first,
// never left with a silent gap.
func (f *feed) readApart(p int32, stub *proto.Record) (proto.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.RequestTimeout)
	defer cancel()
	whole, err := f.e.requestApart(ctx, f.topic, f.progress.Epoch, p, stub)
	select {
	case <-f.done:
		return whole, err // the feed is stopping: its streams end anyway
	default:
	}
	if err != nil && stub.KeyNull {
		n := f.resetLive(resetLost)
		f.e.log.Warn("null-key record apart not read: its live streams reset", "topic", f.topic, "partition", p, "offset", stub.Offset, "streams", n, "err", err)
	} else if err != nil && !errors.Is(err, errValueGone) {
		f.e.log.Warn("record apart not read: filled from the state pages", "topic", f.topic, "partition", p, "offset", stub.Offset, "err", err)
	}
	return whole, err
}

// resetLive ends the live streams of the views a null-key record may match
// (those without a key filter) with event:reset and an id at the start, so
// that their clients come back for the full state (DESIGN rule 3), and
// returns how many. Streams in their state part are left: like a resume,
// they hold no null-key record from before their ready.
func (f *feed) resetLive(reason string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	zero := proto.Progress{Epoch: f.progress.Epoch, TimeMs: f.e.cfg.Now().UnixMilli(), Offsets: make([]int64, len(f.progress.Offsets))}
	n := 0
	for _, v := range f.views {
		if !slices.ContainsFunc(v.filters, func(fl filter) bool { return fl.key == nil }) && len(v.filters) > 0 {
			continue
		}
		final := append([]byte("id:"), proto.AppendEventID(nil, v.format, nil, true, &zero, "")...)
		final = appendReset(append(final, '\n'), reason)
		for c := range v.clients {
			c.mu.Lock()
			live := c.live
			c.mu.Unlock()
			if live {
				c.closeWith(reason, final)
				n++
			}
		}
	}
	f.e.metrics.resets.WithLabelValues(reason).Add(float64(n))
	return n
}

// fillAllowed reports whether a live message may start a fill of p: not
// within a second of a fill that no holder could complete, so that a run of
// messages whose gaps no holder confirms (stale, or forged) costs one fill
// a second rather than one each, and live changes go on meanwhile. A real
// gap is filled once the second has passed, or by the probe.
func (f *feed) fillAllowed(p int32) bool {
	return time.Since(f.parts[p].shortAt) >= time.Second
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
	// At most one metadata request a second for such messages; a real new
	// epoch meanwhile is found by the next probe, new partitions by their
	// next heads (HeadInterval) once a second has passed.
	// Timed from the answer: requests that time out (PageTimeout) cannot
	// keep the feed goroutine busy.
	if time.Since(f.topicChecked) >= time.Second {
		ok := f.checkTopic()
		f.topicChecked = time.Now()
		if !ok {
			return false // the topic did change: the feed ended
		}
	}
	select {
	case <-f.done: // the rest of a batch after the topic changed
		return false
	default:
	}
	f.e.metrics.badChanges.Inc()
	f.e.log.Warn("live message of another epoch or partition, not confirmed by the cache tier: dropped",
		"topic", f.topic, "subject", m.Subject, "epoch", epoch, "partition", partition)
	return false
}

// plausibleJump is how far a live change or head may stand past what the
// cache tier has confirmed (the feed's position, the last probe) before the
// feed asks it to confirm. Changes come in order, each a few offsets past
// the last (transaction markers), and heads on the same subject after them;
// a real jump further (the edge lost changes, an aborted transaction) costs
// one head request. A forger on an unauthenticated NATS can still displace
// this many offsets: authentication keeps it out.
const plausibleJump = 1024

// plausible reports whether partition p's cache tier may have reached next:
// near what the feed knows, or confirmed by a head request. A far message
// the cache tier does not confirm would otherwise move the feed past every
// real record (a blackhole) or stop the ring serving. After a denial,
// far messages of p are dropped unasked for a second; what was real is
// then found by the probe and filled.
func (f *feed) plausible(p int32, next int64) bool {
	st := &f.parts[p]
	if next < 0 || next == math.MaxInt64 {
		return false // an offset no record has (MaxInt64+1 would wrap); 0 is an empty partition's head
	}
	// Not ring.known: heads raise it, and a run of heads each just within
	// reach would ratchet the bound past any limit.
	known := max(f.progress.Offsets[p], st.probeNext)
	if next <= known || next-known <= plausibleJump {
		return true
	}
	if time.Since(st.denied) < time.Second {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.PageTimeout)
	head, err := f.e.requestPage(ctx, f.topic, f.progress.Epoch, p, math.MaxInt64)
	cancel()
	if err != nil || head.Next < next {
		st.denied = time.Now()
		return false
	}
	st.probeNext = max(st.probeNext, head.Next)
	return true
}

// dropUnconfirmed drops a live message plausible refused: one whose
// offset no record has is counted at once, any other once the next probe
// still finds the cache tier short of it (see doubt).
func (f *feed) dropUnconfirmed(kind string, p int32, offset int64) {
	if offset < 0 || offset == math.MaxInt64 {
		f.e.metrics.badChanges.Inc()
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

// fill brings partition p up to the cache's head from state pages,
// delivering what the feed missed. It completes only when the feed reaches
// target (a change's From, a head's Next, or an earlier fill's target): a
// last page that ends short of it came from a holder that lags, so the fill
// asks again (the queue group may pick another holder) a few times, then
// leaves it to the next message or tick. It reports whether it completed.
func (f *feed) fill(p int32, target int64) bool {
	st := &f.parts[p]
	st.fillTarget = max(st.fillTarget, target)
	// Behind until the fill is done: a half-filled partition (its pages are
	// compacted) must not serve ring resumes. markBehind sets it right after.
	f.mu.Lock()
	f.ring.parts[p].behind = true
	f.mu.Unlock()
	since := f.progress.Offsets[p]
	for short := 0; ; {
		ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.PageTimeout)
		page, err := f.e.requestPage(ctx, f.topic, f.progress.Epoch, p, since)
		cancel()
		if err != nil {
			st.needFill = true
			select {
			case <-f.done:
				return false // the feed is stopping (the NATS connection may be closed first)
			default:
			}
			f.e.log.Warn("fill live gap", "topic", f.topic, "partition", p, "err", err)
			return false
		}
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
		if page.More {
			f.mu.Unlock()
			if page.Cursor <= since { // a page that does not move on would never end
				st.needFill = true
				f.e.metrics.badPages.Inc()
				f.e.log.Warn("fill live gap: state page cursor does not advance", "topic", f.topic, "partition", p, "since", since, "cursor", page.Cursor)
				return false
			}
			since = page.Cursor
			continue
		}
		// The answering node has applied everything below page.Next.
		if page.Next > f.progress.Offsets[p] {
			f.advance(p, page.Next)
		}
		reached := f.progress.Offsets[p] >= st.fillTarget
		if reached {
			f.progress.TimeMs = f.e.cfg.Now().UnixMilli()
		}
		f.mu.Unlock()
		if reached {
			st.needFill = false
			f.e.metrics.fills.Inc()
			return true
		}
		if short++; short >= 5 {
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
			return false
		}
		time.Sleep(10 * time.Millisecond) // then ask again, maybe another holder
		since = f.progress.Offsets[p]
	}
}

// probe asks the cache for each partition's head. A position the cache had
// reached by the previous probe that the feed still has not: changes were
// lost and no head said so (a backstop for heads). When a partition cannot
// be asked, the topic's metadata is: a topic deleted (or recreated under a
// new epoch) ends the feed. It reports whether the feed goes on.
func (f *feed) probe() bool {
	failed := false
	for p := range f.parts {
		st := &f.parts[p]
		if f.progress.Offsets[p] < st.probeNext {
			st.needFill = true
			st.fillTarget = max(st.fillTarget, st.probeNext)
		}
		ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.PageTimeout)
		head, err := f.e.requestPage(ctx, f.topic, f.progress.Epoch, int32(p), math.MaxInt64)
		cancel()
		if err != nil {
			failed = true
			continue
		}
		st.probeNext = head.Next
		f.judgeDoubts(int32(p), head.Next)
	}
	if !failed {
		return true
	}
	return f.checkTopic()
}

// checkTopic asks the cache tier for the topic's metadata after a probe
// failed (nobody holds a partition, or a page came under another epoch);
// the request also makes the cache take up a topic it dropped. A topic that
// no longer exists, or exists under another epoch, ends the feed: its
// clients reconnect and get 404, or event:reset and the new state. It
// reports whether the feed goes on.
func (f *feed) checkTopic() bool {
	// PageTimeout, not RequestTimeout: this runs on the feed goroutine, and
	// while ownership moves no node may answer at all (only holders do);
	// waiting longer would hold back every live change of the topic.
	ctx, cancel := context.WithTimeout(context.Background(), f.e.cfg.PageTimeout)
	defer cancel()
	meta, err := f.e.requestMeta(ctx, f.topic)
	switch {
	case errors.Is(err, errTopicNotFound):
		f.fail(resetEpoch)
		return false
	case err != nil:
		return true // the cache tier is unavailable: ask again at the next probe
	case meta.Epoch != f.progress.Epoch:
		f.fail(resetEpoch)
		return false
	case int(meta.Partitions) > len(f.parts):
		f.fail(resetPartitions)
		return false
	}
	return true
}

// deliver advances the feed past rec and queues its frame to every view it
// matches. The caller holds f.mu.
func (f *feed) deliver(p int32, rec *proto.Record) {
	f.advance(p, rec.Offset+1)
	f.ring.add(p, rec, time.Now())
	f.chargeRingLocked()
	if rec.KeyNull && rec.Tombstone {
		return
	}
	for _, v := range f.views {
		if len(v.clients) == 0 || !matches(v.filters, rec) {
			continue
		}
		q := f.encode(v.format, rec)
		conflated := 0
		for c := range v.clients {
			n, dirty := c.push(p, rec.Offset, q)
			conflated += n
			if dirty {
				f.dirty = append(f.dirty, c)
			}
		}
		f.e.metrics.framesQueued.Add(float64(len(v.clients)))
		if conflated > 0 {
			f.e.metrics.conflated.Add(float64(conflated))
		}
	}
}

// frameSlabBytes is the size of the blocks frames are carved from: encoding
// an event allocates nothing but, now and then, a new block.
const frameSlabBytes = 64 << 10

// encode returns rec's frame in format, with its key, carved from the
// feed's current slab. Frames are immutable and shared by every client of
// a view; a slab lives while any client still queues one of its frames.
// The caller holds f.mu.
func (f *feed) encode(format proto.IDFormat, rec *proto.Record) queued {
	f.scratch = appendRecordFrame(f.scratch[:0], format, rec, &f.progress)
	need := len(f.scratch) + len(rec.Key)
	if cap(f.slab)-len(f.slab) < need {
		f.slab = make([]byte, 0, max(frameSlabBytes, need))
	}
	start := len(f.slab)
	f.slab = append(f.slab, f.scratch...)
	f.slab = append(f.slab, rec.Key...)
	return queued{buf: f.slab[start:len(f.slab):len(f.slab)], frameLen: uint32(len(f.scratch)), keyed: !rec.KeyNull}
}

// flushDirty writes the frames queued to hijacked clients since the last
// flush, each with one non-blocking writev.
func (f *feed) flushDirty() {
	f.mu.Lock()
	dirty := f.dirty
	f.dirty = nil
	f.mu.Unlock()
	for _, c := range dirty {
		c.lc.flush()
	}
	clear(dirty)
}

// advance moves the feed's position in p and wakes clients waiting for it.
// The caller holds f.mu.
func (f *feed) advance(p int32, next int64) {
	f.progress.Offsets[p] = next
	if f.waiters > 0 {
		close(f.advanced)
		f.advanced = make(chan struct{})
		f.waiters = 0
	}
}

// join registers c with the view named key. The client receives every change
// the feed applies from now on (in pending until goLive).
func (f *feed) join(key string, filters []filter, format proto.IDFormat, c *client) (current proto.Progress, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return proto.Progress{}, false
	}
	v := f.views[key]
	if v == nil {
		v = &view{filters: filters, format: format, clients: map[*client]struct{}{}}
		f.views[key] = v
	}
	v.clients[c] = struct{}{}
	f.clients++
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	return f.progress.Clone(), true
}

// goLive ends c's state part, which reached progress at. The state pages
// may be ahead of the live feed (the cache applies a change before the feed
// hears of it), so it first waits, up to timeout, until the feed has caught
// up with at: from then on every shared frame's id covers all the client
// holds. Pending frames already covered are dropped, the rest queued, then
// the ready marker with the feed's progress.
func (f *feed) goLive(ctx context.Context, c *client, format proto.IDFormat, at proto.Progress, timeout time.Duration) {
	if !f.waitCovers(ctx, at, timeout) && ctx.Err() == nil {
		f.e.log.Warn("live feed behind state at ready", "topic", f.topic)
	}
	defer f.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, pf := range c.pending {
		if pf.offset >= at.Offset(pf.partition) {
			c.appendLocked(pf.queued)
		}
	}
	c.pending, c.pendingBytes, c.pendingLargest = nil, 0, 0
	for p, o := range f.progress.Offsets {
		if p < len(at.Offsets) {
			at.Offsets[p] = max(at.Offsets[p], o)
		}
	}
	at.TimeMs = min(at.TimeMs, f.progress.TimeMs)
	if !f.e.cfg.NoReady {
		c.appendLocked(marker(appendReady(nil, format, &at)))
	}
	c.live = true
	c.signalLocked()
}

// waitCovers waits, up to timeout, until the feed has delivered everything
// below at, and reports whether it has. It returns with f.mu held.
func (f *feed) waitCovers(ctx context.Context, at proto.Progress, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	f.mu.Lock()
	for !f.covers(at) {
		if f.advanced == nil {
			f.advanced = make(chan struct{})
		}
		f.waiters++
		ch := f.advanced
		f.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			f.mu.Lock()
			return f.covers(at)
		case <-ctx.Done():
			f.mu.Lock()
			return f.covers(at)
		}
		f.mu.Lock()
	}
	return true
}

// ringFrom returns partition p's records at or after since, from the
// resume ring in offset order (latestPerKey makes them what the state path
// gives), and the feed's position in p; ok is false when since lies outside the ring (before start, its first
// offset, or past the feed's position), the feed is behind in p, or the
// tier's word on p has not come since began, the start of the stream asking
// (see awaitWord).
func (f *feed) ringFrom(p int32, since int64, began time.Time) (recs []*proto.Record, next, start int64, ok bool) {
	f.mu.Lock()
	next, start = f.progress.Offsets[p], f.ring.parts[p].start
	// Not while changes wait for the feed goroutine: the cache tier has
	// applied them, so a ready from the ring would lack them.
	fresh := !f.ring.parts[p].heard.Before(began) && len(f.msgs) == 0 && !f.handling.Load() && next >= f.ring.parts[p].known
	if since <= next && !f.ring.parts[p].behind && fresh {
		recs, ok = f.ring.from(p, since)
	}
	f.mu.Unlock()
	return recs, next, start, ok
}

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
	if m := &f.e.feedMem; len(enc.frames) > maxBytes || m.limit > 0 && m.used.Load()+int64(len(enc.frames)) > m.limit {
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
	f.encBytes += len(enc.frames)
	for len(f.encOrder) > maxRingEncodings || f.encBytes > maxBytes {
		f.encBytes -= len(f.enc[f.encOrder[0]].frames)
		delete(f.enc, f.encOrder[0])
		f.encOrder = f.encOrder[1:]
	}
}

// maxRingEncodings bounds the encodings kept per feed.
const maxRingEncodings = 64

// enterState and leaveState count the streams in their state part;
// crowded reports whether there is more than one. enterState reports
// whether another stream began its state part less than stormWindow ago
// (streams arriving together: a storm).
func (f *feed) enterState() (storm bool) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inState++
	storm = !f.lastState.IsZero() && now.Sub(f.lastState) < stormWindow
	f.lastState = now
	return storm
}

// stormWindow: streams starting closer together than this are a storm.
const stormWindow = time.Second

func (f *feed) leaveState() {
	f.mu.Lock()
	f.inState--
	f.mu.Unlock()
}

func (f *feed) crowded() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inState > 1
}

// covers reports whether the feed has delivered everything below at. The
// caller holds f.mu.
func (f *feed) covers(at proto.Progress) bool {
	for p, o := range at.Offsets {
		if p < len(f.progress.Offsets) && f.progress.Offsets[p] < o {
			return false
		}
	}
	return true
}

// leave unregisters c; the feed stops after FeedLinger without clients.
func (f *feed) leave(key string, c *client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.views[key]
	if v == nil {
		return
	}
	if _, ok := v.clients[c]; !ok {
		return
	}
	delete(v.clients, c)
	f.e.auth.forget(c)
	if len(v.clients) == 0 {
		delete(f.views, key)
	}
	f.clients--
	if f.clients == 0 && !f.stopped {
		f.linger = time.AfterFunc(f.e.cfg.FeedLinger, f.stopIfIdle)
	}
}

func (f *feed) stopIfIdle() {
	f.e.mu.Lock()
	defer f.e.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clients != 0 || f.stopped {
		return
	}
	f.stopLocked()
}

// stopLocked ends the feed; the caller holds e.mu and f.mu.
func (f *feed) stopLocked() {
	f.stopped = true
	f.releaseMemLocked()
	if f.e.feeds[f.topic] == f {
		delete(f.e.feeds, f.topic)
	}
	close(f.done)
	_ = f.sub.Unsubscribe()
}

// fail ends the feed because the topic changed under it (a new epoch, more
// partitions): every client is disconnected and, reconnecting, resumes or is
// reset against the new metadata.
func (f *feed) fail(reason string) {
	if reason == reasonShutdown {
		f.e.log.Debug("topic feed closed", "topic", f.topic)
	} else {
		f.e.metrics.feedFailures.Inc()
		f.e.log.Warn("topic feed ended", "topic", f.topic, "reason", reason)
	}
	f.e.mu.Lock()
	f.mu.Lock()
	if !f.stopped {
		f.stopLocked()
	}
	for _, v := range f.views {
		for c := range v.clients {
			c.close(reason)
		}
	}
	f.mu.Unlock()
	f.e.mu.Unlock()
}
