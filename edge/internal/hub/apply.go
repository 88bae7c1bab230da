// The feed as one topic's ordered applier. Its goroutine (run) never calls
// the cache tier: a fill's pages, the parts of a record sent apart, the
// head requests that confirm a far message or probe a partition, and the
// topic's metadata are jobs that run beside it and post their results
// back. Each partition has at most one job its messages wait for (a check,
// a record apart, a fill page): while it runs, the partition's later
// messages queue behind it, in order, and other partitions go on. A queue
// past its bound (the feed memory budget) is given up, and the fill rules
// take over (docs/architecture.md rule 5: the cache tier has every change it published).

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

// liveMsg is a live change or head being applied, and how far it got.
type liveMsg struct {
	isHead     bool
	head       proto.Head
	change     proto.Change
	size       int64 // the NATS message's bytes
	stage      msgStage
	superseded bool // a change whose record apart a holder past it no longer has
	filled     bool // a change that started a fill of the gap before it
}

type msgStage uint8

const (
	stageNew       msgStage = iota
	stageConfirmed          // plausible: near the feed's position, or confirmed by a head request
	stageRead               // a change: its record apart is read (or superseded)
	stageFilled             // a head: its fill ran (whatever came of it)
	stageDrop               // dropped: its fill failed, or its record apart could not be read
)

func (m *liveMsg) partition() int32 {
	if m.isHead {
		return m.head.Partition
	}
	return m.change.Partition
}

// jobKind names a job run beside the feed goroutine.
type jobKind uint8

const (
	jobNone  jobKind = iota
	jobCheck         // a head request confirming a far live message (plausible)
	jobApart         // the parts of a record sent apart
	jobPage          // one page of a fill
	jobProbe         // the probe's head request
	jobTopic         // the topic's metadata (check)
)

// jobResult is what a job posts back to the feed goroutine.
type jobResult struct {
	kind jobKind
	p    int32
	next int64 // jobCheck: the position to confirm
	page proto.StatePage
	rec  proto.Record
	meta proto.Meta
	err  error
}

// spawn runs do on a goroutine of its own, after delay, with a context that
// ends after timeout or when the feed stops, and posts its result to run.
func (f *feed) spawn(r jobResult, timeout, delay time.Duration, do func(ctx context.Context, r *jobResult)) {
	go func() {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-f.done:
				t.Stop()
				return
			}
		}
		ctx, cancel := context.WithTimeout(f.ctx, timeout)
		do(ctx, &r)
		cancel()
		select {
		case f.results <- r:
		case <-f.done:
		}
	}()
}

// askHead asks for partition r.p's head.
func (f *feed) askHead(ctx context.Context, r *jobResult) {
	r.page, r.err = f.e.cache.requestPage(ctx, f.topic, f.meta.Epoch, r.p, math.MaxInt64)
}

// takeBatch applies m and what else has arrived: batches grow under load,
// up to a quarter of a client's queue (frames or bytes).
func (f *feed) takeBatch(m *tier.Msg) {
	f.take(m)
	size := len(m.Data)
	for range f.batch {
		if size >= f.batchBytes {
			return
		}
		select {
		case m := <-f.msgs:
			f.take(m)
			size += len(m.Data)
		default:
			return
		}
	}
}

// take applies one live message, or queues it behind the job its
// partition waits for.
func (f *feed) take(m *tier.Msg) {
	lm := f.decode(m)
	if lm == nil {
		return
	}
	p := lm.partition()
	if f.parts[p].waits != jobNone {
		f.enqueue(p, lm)
		return
	}
	if f.apply(lm) {
		f.parts[p].front = lm
	}
	f.noteHeld(p)
}

// decode returns m as a live message of this feed's epoch and partitions,
// or nil.
func (f *feed) decode(m *tier.Msg) *liveMsg {
	lm := &liveMsg{size: int64(len(m.Data))}
	if proto.IsHead(m.Data) {
		h, err := proto.DecodeHead(m.Data)
		if err != nil || !f.check(h.Epoch, h.Partition, m) {
			return nil
		}
		lm.isHead, lm.head = true, h
		return lm
	}
	ch, err := proto.DecodeChange(m.Data)
	if err != nil {
		f.e.metrics.BadChanges.Inc()
		f.e.log.Warn("bad live change", "subject", m.Subject, "err", err)
		return nil
	}
	if !f.check(ch.Epoch, ch.Partition, m) {
		return nil
	}
	lm.change = ch
	return lm
}

// apply goes on with m from its stage, and reports whether it now waits
// for a job of its partition. Gaps are found by offsets: a change whose
// publisher stood past this feed's position, or a head past it, means
// changes were lost; they are filled from the cache before anything newer
// is sent.
func (f *feed) apply(m *liveMsg) bool {
	if m.stage == stageDrop {
		return false
	}
	if m.isHead {
		return f.applyHead(m)
	}
	return f.applyChange(m)
}

func (f *feed) applyHead(m *liveMsg) bool {
	h := &m.head
	p := h.Partition
	if m.stage == stageNew {
		if h.Next == 0 && f.progress.Offsets[p] > 0 {
			return false // a holder that has read nothing yet (a new primary catching up): not a word of the partition
		}
		switch f.plausible(p, h.Next) {
		case judgedFar:
			f.dropUnconfirmed("head", p, h.Next)
			return false
		case judgeAsk:
			f.startCheck(p, h.Next)
			return true
		}
		m.stage = stageConfirmed
	}
	if m.stage == stageConfirmed {
		m.stage = stageFilled
		f.cacheAt(p, h.Next)
		f.notePublisher(h)
		if h.Next > f.progress.Offsets[p] {
			f.e.metrics.Gaps.Inc()
			if f.fillAllowed(p) {
				f.startFill(p, h.Next)
				return true
			}
		}
	}
	if f.progress.Offsets[p] >= h.Next {
		f.heard(p)
	}
	return false
}

func (f *feed) applyChange(m *liveMsg) bool {
	ch := &m.change
	p := ch.Partition
	if ch.Record.Offset < f.progress.Offsets[p] {
		f.heard(p)
		if m.filled {
			f.lostNullKey(m, "its gap's fill ran past it")
		}
		return false // already covered
	}
	if m.stage == stageNew {
		if ch.Record.Offset < 0 || ch.Record.Offset == math.MaxInt64 {
			f.dropUnconfirmed("change", p, ch.Record.Offset)
			return false
		}
		switch f.plausible(p, ch.Record.Offset+1) {
		case judgedFar:
			f.dropUnconfirmed("change", p, ch.Record.Offset)
			return false
		case judgeAsk:
			f.startCheck(p, ch.Record.Offset+1)
			return true
		}
		m.stage = stageConfirmed
	}
	if ch.Record.Apart && m.stage == stageConfirmed {
		// Read now, before any fill up to it: then it goes on as an inline
		// change would (a fill would move past the null-key records after
		// it: pages hold none).
		f.startApart(p, ch.Record)
		return true
	}
	return f.fillOrDeliver(m)
}

// fillOrDeliver fills the gap before change m, if any, or delivers it.
func (f *feed) fillOrDeliver(m *liveMsg) bool {
	ch := &m.change
	p := ch.Partition
	gap := ch.From > f.progress.Offsets[p]
	if gap || f.parts[p].needFill {
		if f.fillAllowed(p) {
			f.e.metrics.Gaps.Inc()
			// The fill must reach this change's From: a page that ends
			// short (a holder that lags) would otherwise let the change
			// jump a hole. It is applied again once the fill ends.
			f.startFill(p, ch.From)
			m.filled = true
			return true
		}
		if gap {
			f.e.metrics.Gaps.Inc()
			f.lostNullKey(m, "dropped with its gap, to be filled later")
			return false // found again by the next change, head or probe
		}
		// Follows on from the feed's position: nothing is missing before it.
	}
	f.mu.Lock()
	f.progress.TimeMs = f.e.cfg.Now().UnixMilli()
	if m.superseded {
		f.e.metrics.ValuesGone.Inc()
		f.advance(p, ch.Record.Offset+1)
	} else {
		f.deliver(p, &ch.Record)
	}
	f.ring.parts[p].heard = time.Now()
	f.mu.Unlock()
	return false
}

// settle applies a job's result, then goes on with the messages of its
// partition that waited for it.
func (f *feed) settle(r jobResult) {
	select {
	case <-f.done:
		return // the feed stopped (its requests were cancelled)
	default:
	}
	switch r.kind {
	case jobTopic:
		f.topicAnswered(r)
		return
	case jobProbe:
		f.probed(r)
		return
	case jobCheck:
		f.checked(r)
	case jobApart:
		f.apartRead(r)
	case jobPage:
		f.filled(r)
	}
	f.resume(r.p)
	f.noteHeld(r.p)
}

// resume applies p's messages in order once nothing of p is in flight,
// until one waits for a job again.
func (f *feed) resume(p int32) {
	st := &f.parts[p]
	for st.waits == jobNone {
		m := st.front
		st.front = nil
		if m == nil {
			if len(st.queue) == 0 {
				break
			}
			m = st.queue[0]
			st.queue[0] = nil
			st.queue = st.queue[1:]
			f.unchargeQueue(st, m.size)
		}
		if f.apply(m) {
			st.front = m
		}
	}
	if st.waits != jobNone {
		return
	}
	st.queue = nil
	if st.dropping {
		// What was dropped is filled now, rather than at the next message
		// or probe.
		st.dropping = false
		st.needFill = true
		f.startFill(p, 0)
	}
}

// noteHeld tells the ring whether p's messages wait for a job: the cache
// tier has applied them, so no stream resumes from the ring meanwhile.
func (f *feed) noteHeld(p int32) {
	st := &f.parts[p]
	held := st.waits != jobNone || len(st.queue) > 0
	if held == st.held {
		return
	}
	st.held = held
	f.mu.Lock()
	f.ring.parts[p].held = held
	f.mu.Unlock()
}

// enqueue queues m behind the job p waits for, within the feed memory
// budget and FeedBuffer messages; past either, p's queue is given up.
func (f *feed) enqueue(p int32, m *liveMsg) {
	st := &f.parts[p]
	mem := &f.e.feedMem
	if st.dropping || len(st.queue) >= cap(f.msgs) || mem.limit > 0 && mem.used.Load()+m.size > mem.limit {
		f.overflow(p, m)
		return
	}
	mem.used.Add(m.size)
	st.queued += m.size
	st.queue = append(st.queue, m)
}

func (f *feed) unchargeQueue(st *partGap, n int64) {
	st.queued -= n
	f.e.feedMem.used.Add(-n)
}

// overflow gives up p's queue and m: p is filled from the cache tier once
// its job ends (resume); the ring does not serve it meanwhile (held). A null-key record among them (no state page holds one)
// resets the live streams it may reach, as one that cannot be read does.
func (f *feed) overflow(p int32, m *liveMsg) {
	st := &f.parts[p]
	lost := false
	for _, q := range append(st.queue, m) {
		lost = f.forget(st, q) || lost
	}
	f.unchargeQueue(st, st.queued)
	clear(st.queue)
	st.queue = st.queue[:0]
	if !st.dropping {
		st.dropping = true
		f.e.metrics.Gaps.Inc()
		f.e.log.Warn("live changes waiting behind a job of their partition passed the feed's bound: dropped, filled from the cache tier",
			"topic", f.topic, "partition", p)
	}
	if lost {
		n := f.resetLive(reason.ResetLost)
		f.e.log.Warn("null-key record dropped from a full queue: its live streams reset", "topic", f.topic, "partition", p, "streams", n)
	}
}

// forget notes what a dropped message told of p: the fill must reach a
// plausible change or head. It reports whether it was a null-key record.
func (f *feed) forget(st *partGap, m *liveMsg) bool {
	next := m.head.Next
	if !m.isHead {
		next = m.change.Record.Offset + 1
	}
	if next > 0 && next-max(f.progress.Offsets[m.partition()], st.probeNext) <= plausibleJump {
		st.fillTarget = max(st.fillTarget, next)
	}
	return !m.isHead && m.change.Record.KeyNull && !m.change.Record.Tombstone
}

// lostNullKey resets the live streams a null-key change may reach when it
// is dropped (why): no state page holds such a record, so the fill of its
// partition cannot bring it, and a stream must not go on without it
// unaware (docs/architecture.md rule 3). Other changes are left to the
// fill: their key's latest record is in its pages.
func (f *feed) lostNullKey(m *liveMsg, why string) {
	r := &m.change.Record
	if m.isHead || !r.KeyNull || r.Tombstone {
		return
	}
	n := f.resetLive(reason.ResetLost)
	f.e.log.Warn("null-key change not delivered: its live streams reset", "topic", f.topic, "partition", m.change.Partition,
		"offset", r.Offset, "why", why, "streams", n)
}

// dropQueues gives back what the queues hold: the feed stopped.
func (f *feed) dropQueues() {
	for p := range f.parts {
		st := &f.parts[p]
		f.unchargeQueue(st, st.queued)
		st.queue, st.front = nil, nil
	}
}

// startApart reads the record stub stands for beside the feed goroutine.
func (f *feed) startApart(p int32, stub proto.Record) {
	f.parts[p].waits = jobApart
	f.spawn(jobResult{kind: jobApart, p: p}, f.e.cfg.RequestTimeout, 0, func(ctx context.Context, r *jobResult) {
		r.rec, r.err = f.e.cache.requestApart(ctx, f.topic, f.meta.Epoch, p, &stub)
	})
}

// apartRead applies the read of the record apart that p's first message
// carries. Every holder that has applied it answers for it (requestApart
// asks again while the one asked is behind), a null-key one too (no state
// page holds it, so a fill would skip it). When a null-key record cannot
// be read within RequestTimeout (the fill then moves past it, as past any
// null-key record in a gap), the live streams that could have got it are
// reset first, never left with a silent gap.
func (f *feed) apartRead(r jobResult) {
	p := r.p
	st := &f.parts[p]
	st.waits = jobNone
	m := st.front
	stub := &m.change.Record
	switch {
	case r.err == nil:
		m.change.Record, m.stage = r.rec, stageRead
		return
	case errors.Is(r.err, errValueGone) && !stub.KeyNull:
		// Superseded since, where a holder past it says so: its key's
		// newer record follows.
		m.superseded, m.stage = true, stageRead
		return
	case stub.KeyNull:
		n := f.resetLive(reason.ResetLost)
		f.e.log.Warn("null-key record apart not read: its live streams reset", "topic", f.topic, "partition", p, "offset", stub.Offset, "streams", n, "err", r.err)
	default:
		f.e.log.Warn("record apart not read: filled from the state pages", "topic", f.topic, "partition", p, "offset", stub.Offset, "err", r.err)
	}
	// The record comes from the state pages, which read it in parts, as
	// for a gap up to it.
	m.stage = stageDrop
	if f.fillAllowed(p) {
		f.startFill(p, stub.Offset+1)
	} else {
		f.markNeedFill(p)
	}
}
