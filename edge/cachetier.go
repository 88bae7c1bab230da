// The cache-tier client: metadata and state pages over NATS request/reply,
// and how their failures are told apart.

package edge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

var (
	errTopicNotFound = errors.New("topic not found")
	errUnavailable   = errors.New("cache tier unavailable")
)

func (e *Edge) requestMeta(ctx context.Context, topic string) (proto.Meta, error) {
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.Meta(topic), proto.AppendMetaRequest(nil))
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w: %w", topic, errUnavailable, err)
	}
	m, err := proto.DecodeMeta(msg.Data)
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w", topic, err)
	}
	switch m.Status {
	case proto.StatusOK:
		e.lookupAnswered(topic, true)
		return m, nil
	case proto.StatusUnknownTopic:
		e.lookupAnswered(topic, false)
		return m, fmt.Errorf("meta %s: %w", topic, errTopicNotFound)
	}
	return m, fmt.Errorf("meta %s: %s: %s", topic, m.Status, m.Error)
}

// retryPause waits before a request to the cache tier is made again ("no
// responders" answers at once), and reports false if ctx ended first.
func retryPause(ctx context.Context) bool { return pauseFor(ctx, 50*time.Millisecond) }

// pauseFor waits d, and reports false if ctx ended first.
func pauseFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// requestPageRetrying asks for a page, again and again while the cache tier
// does not answer (a node died while answering, or none holds the partition
// for a moment) or answers NotOwner (the node released the partition, or is
// not caught up on it), for up to RequestTimeout.
func (e *Edge) requestPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	deadline := time.Now().Add(e.cfg.RequestTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.PageTimeout)
		page, err := e.requestPage(rctx, topic, epoch, p, since)
		cancel()
		if err == nil || !errors.Is(err, errUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return page, err
		}
		if !retryPause(ctx) {
			return page, ctx.Err()
		}
	}
}

func (e *Edge) requestPage(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	e.metrics.stateRequests.Inc()
	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: since, MaxBytes: e.cfg.PageBytes})
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.State(topic, p), req)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w: %w", topic, p, errUnavailable, err)
	}
	page, err := proto.DecodeStatePage(msg.Data)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w", topic, p, err)
	}
	if page.Status == proto.StatusNotOwner {
		// Released, or not caught up: another holder answers, or soon will.
		return page, fmt.Errorf("fetch state %s/%d: %w: %s", topic, p, errUnavailable, page.Error)
	}
	if page.Status != proto.StatusOK {
		return page, fmt.Errorf("fetch state %s/%d: %s: %s", topic, p, page.Status, page.Error)
	}
	if page.Epoch != epoch {
		return page, fmt.Errorf("fetch state %s/%d: epoch %d, want %d", topic, p, page.Epoch, epoch)
	}
	return e.assembleValues(ctx, topic, epoch, p, page)
}

// assembleValues reads the records the page carries apart (too large for
// one NATS message) from the cache tier, in parts. A record that is gone
// (superseded since the page was read) is left out: its key's newer record
// is later in the partition. Each part has PageTimeout of its own: ctx's
// deadline was the page request's; its cancellation still holds.
func (e *Edge) assembleValues(ctx context.Context, topic string, epoch uint32, p int32, page proto.StatePage) (proto.StatePage, error) {
	if !slices.ContainsFunc(page.Records, func(r proto.Record) bool { return r.Apart }) {
		return page, nil
	}
	vctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	defer stop()
	gone := false
	for i := range page.Records {
		r := &page.Records[i]
		if !r.Apart {
			continue
		}
		whole, err := e.requestApart(vctx, topic, epoch, p, r)
		if errors.Is(err, errValueGone) {
			e.metrics.valuesGone.Inc()
			r.Offset, gone = -1, true
			continue
		}
		if err != nil {
			return page, err
		}
		*r = whole
	}
	if gone {
		page.Records = slices.DeleteFunc(page.Records, func(r proto.Record) bool { return r.Offset < 0 })
	}
	return page, nil
}

var (
	errValueGone = errors.New("value gone")
	errNotYet    = errors.New("not applied yet")
)

// The backoff of a part asked again: from apartFirstPause, doubling, up to
// apartMaxPause. A standby a few milliseconds behind has the record by the
// second ask; the queue group may pick another holder at any ask.
const (
	apartFirstPause = 5 * time.Millisecond
	apartMaxPause   = 200 * time.Millisecond
	// maxUnplacedGone bounds the asks answered Gone without a position.
	maxUnplacedGone = 8
)

// partSlack is what a value part's reply needs besides its bytes.
const partSlack = 1 << 10

// requestApart reads the record that stub stands for (one sent apart) in
// parts that fit this edge's NATS messages, and checks it is the record
// stub names. The encoding grows with what the parts carry, never by what a
// reply claims. The parts may come from any holder of the partition (a
// queue group): a part not answered within PageTimeout, answered NotOwner,
// or answered NotYet (a holder behind the record: another has it, or this
// one soon will) is asked again, with backoff, up to RequestTimeout for the
// record; so is Gone from a holder that does not say it is past the record
// (a node older than NotYet answered Gone for what it had not applied).
// Only Gone from a holder past the offset is final (errValueGone). A holder
// that reads the value back from Kafka keeps the record at hand for the
// next ask.
func (e *Edge) requestApart(ctx context.Context, topic string, epoch uint32, p int32, stub *proto.Record) (proto.Record, error) {
	offset := stub.Offset
	fail := func(format string, args ...any) (proto.Record, error) {
		return proto.Record{}, fmt.Errorf("record %s/%d@%d: "+format, append([]any{topic, p, offset}, args...)...)
	}
	room := max(int(e.cfg.NATS.MaxPayload())-partSlack, partSlack)
	deadline := time.Now().Add(e.cfg.RequestTimeout)
	pause, unplaced := apartFirstPause, 0
	var enc []byte
	total, sum := -1, uint32(0)
	for total < 0 || len(enc) < total {
		e.metrics.valueRequests.Inc()
		req := proto.AppendValueRequest(nil, &proto.ValueRequest{Offset: offset, From: len(enc), MaxBytes: room})
		pctx, cancel := context.WithTimeout(ctx, e.cfg.PageTimeout)
		msg, err := e.cfg.NATS.RequestWithContext(pctx, e.subjects.State(topic, p), req)
		cancel()
		var part proto.ValuePart
		if err == nil {
			part, err = proto.DecodeValuePart(msg.Data)
			if err != nil {
				return fail("%w", err)
			}
			switch {
			case part.Status == proto.StatusNotOwner:
				err = errors.New(part.Error)
			case part.Status == proto.StatusNotYet || part.Status == proto.StatusGone && part.Next <= offset:
				e.metrics.valuesNotYet.Inc()
				err = fmt.Errorf("%w: a holder at %d: %s", errNotYet, part.Next, part.Error)
				if part.Status == proto.StatusGone {
					unplaced++
				}
			}
		}
		if err != nil {
			err = fmt.Errorf("record %s/%d@%d: %w: %w", topic, p, offset, errUnavailable, err)
			// Gone from nodes that do not say where they stand, again and
			// again: superseded, most likely. Not skipped on their word:
			// the page that named it is asked again.
			if time.Now().After(deadline) || unplaced >= maxUnplacedGone {
				return proto.Record{}, err
			}
			if !pauseFor(ctx, pause) {
				return proto.Record{}, err
			}
			pause = min(2*pause, apartMaxPause)
			continue
		}
		pause = apartFirstPause
		switch {
		case part.Status == proto.StatusGone:
			return fail("%w: %s", errValueGone, part.Error)
		case part.Status != proto.StatusOK:
			return fail("%s: %s", part.Status, part.Error)
		case part.Epoch != epoch || part.Partition != p || part.Offset != offset || part.From != len(enc) || (total >= 0 && (part.Total != total || part.Sum != sum)):
			return fail("a part of another record (epoch %d, %d@%d, %d bytes from %d): %w",
				part.Epoch, part.Partition, part.Offset, part.Total, part.From, proto.ErrMalformed)
		case len(part.Data) == 0:
			return fail("an empty part at %d of %d: %w", len(enc), part.Total, proto.ErrMalformed)
		}
		total, sum = part.Total, part.Sum
		enc = append(enc, part.Data...)
	}
	if proto.PartSum(enc) != sum {
		return fail("the parts do not make the record they were cut from (two holders' encodings?): %w", proto.ErrMalformed)
	}
	r, err := proto.DecodeRecord(enc)
	if err != nil {
		return fail("%w", err)
	}
	if r.Offset != offset || r.TimeMs != stub.TimeMs || r.Tombstone != stub.Tombstone || r.KeyNull != stub.KeyNull || len(r.Value) != stub.ValueLen {
		return fail("the parts make another record (offset %d, time %d, a %d-byte value): %w", r.Offset, r.TimeMs, len(r.Value), proto.ErrMalformed)
	}
	return r, nil
}

// Shared state pages (DESIGN rule 8). Streams that ask for the same page
// while a request for it is in flight share that request. While other
// streams of the topic are in their state part too, a page answered in the
// last pageShareAge is given again if its Next is at least minNext (the
// feed's position, or the start of its resume ring); writeState leaves out
// the page's records that the feed's later changes superseded, which makes
// it the page the state path would give now. A lone stream gets a page of
// its own. Kept: pages up to pageShare.maxBytes of records (32 pages), each
// with up to maxPageEncodings encodings.

// pageShareAge bounds how long an answered page is given again. Its
// records are never stale (what the feed's changes superseded is left out,
// and its Next must be within the feed's ring): the bound keeps a storm's
// pages from outliving it. A new-client storm of 9,000 clients on 10,000
// keys takes about a minute to be served here, so at 5 s its pages were
// asked again a dozen times (11× one client's requests).
const pageShareAge = 30 * time.Second

type pageKey struct {
	topic    string
	p        int32
	epoch    uint32
	since    int64
	maxBytes int
}

// pageCall is one request to the cache tier and its answer.
type pageCall struct {
	done chan struct{} // closed once page and err are set
	page *sharedPage
	err  error
	at   time.Time // when answered
}

// sharedPage is a state page shared by streams, with the frames encoded
// from it per view and position.
type sharedPage struct {
	proto.StatePage
	size int

	mu       sync.Mutex
	enc      map[string]encodedPage
	mem      *feedMemory // set while the page is among the recent: its encodings count there
	encBytes int         // of enc, counted in mem
}

type encodedPage struct {
	frames []byte
	events int
}

// maxPageEncodings bounds the encodings kept per shared page.
const maxPageEncodings = 4

// encoded returns the frames encoded under key, if any.
func (sp *sharedPage) encoded(key string) (encodedPage, bool) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	ep, ok := sp.enc[key]
	return ep, ok
}

// keep stores frames encoded under key, while there is room.
func (sp *sharedPage) keep(key string, ep encodedPage) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.enc == nil {
		sp.enc = map[string]encodedPage{}
	}
	if len(sp.enc) >= maxPageEncodings {
		return
	}
	if m := sp.mem; m != nil {
		n := int64(len(ep.frames))
		if m.limit > 0 && m.used.Load()+n > m.limit {
			return // the feed memory budget (budget.go)
		}
		m.used.Add(n)
		sp.encBytes += len(ep.frames)
	}
	sp.enc[key] = ep
}

// shared marks the page as kept among the recent: its encodings count in m.
func (sp *sharedPage) shared(m *feedMemory) {
	sp.mu.Lock()
	sp.mem = m
	sp.mu.Unlock()
}

// dropEncodings gives back the page's encodings; unshare, also for good
// (the page left the recent: what is encoded later is not kept).
func (sp *sharedPage) dropEncodings(unshare bool) int {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	freed := sp.encBytes
	if sp.mem != nil {
		sp.mem.used.Add(-int64(freed))
	}
	sp.enc, sp.encBytes = nil, 0
	if unshare {
		sp.mem = nil
	}
	return freed
}

type recentPage struct {
	key pageKey
	c   *pageCall
}

// pageShare is the edge's in-flight and recent state requests. mu is a leaf.
type pageShare struct {
	mu       sync.Mutex
	inflight map[pageKey]*pageCall
	recent   map[pageKey]*pageCall
	order    []recentPage // recent, oldest first (with stale duplicates)
	bytes    int          // of recent pages
	maxBytes int
	mem      *feedMemory // where recent pages' encodings count
}

// sharedPage returns the page of (topic, p, since) under epoch: one
// answered lately (when reuse is set, and only if its Next is at least
// minNext), one being asked for, or a new request's. shared says it was not
// this call's own request. The request is made with a context of its own, so that a
// stream that leaves does not fail the others waiting for it.
func (e *Edge) sharedPage(ctx context.Context, topic string, epoch uint32, p int32, since, minNext int64, reuse bool) (sp *sharedPage, shared bool, err error) {
	s := &e.pages
	key := pageKey{topic: topic, p: p, epoch: epoch, since: since, maxBytes: e.cfg.PageBytes}
	s.mu.Lock()
	s.trimLocked(time.Now())
	if c := s.recent[key]; c != nil && time.Since(c.at) <= pageShareAge && reuse && c.page.Next >= minNext {
		s.mu.Unlock()
		e.metrics.pagesShared.Inc()
		return c.page, true, nil
	}
	c := s.inflight[key]
	if c != nil {
		shared = true
	} else {
		c = &pageCall{done: make(chan struct{})}
		if s.inflight == nil {
			s.inflight = map[pageKey]*pageCall{}
		}
		s.inflight[key] = c
		go e.askPage(key, c)
	}
	s.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	if shared && c.err == nil {
		e.metrics.pagesShared.Inc()
	}
	return c.page, shared, c.err
}

// askPage makes c's request and shares its answer.
func (e *Edge) askPage(key pageKey, c *pageCall) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.PageTimeout)
	page, err := e.requestPage(ctx, key.topic, key.epoch, key.p, key.since)
	cancel()
	sp := &sharedPage{StatePage: page}
	for i := range page.Records {
		sp.size += page.Records[i].Size()
	}
	c.page, c.err, c.at = sp, err, time.Now()
	s := &e.pages
	s.mu.Lock()
	delete(s.inflight, key)
	if err == nil && sp.size <= s.maxBytes {
		sp.shared(s.mem)
		if old := s.recent[key]; old != nil {
			s.bytes -= old.page.size
			old.page.dropEncodings(true)
		}
		s.order = append(s.order, recentPage{key, c})
		if s.recent == nil {
			s.recent = map[pageKey]*pageCall{}
		}
		s.recent[key] = c
		s.bytes += sp.size
		s.trimLocked(c.at)
	}
	s.mu.Unlock()
	close(c.done)
}

// trimLocked drops recent pages that are too old, then the oldest until
// they fit in maxBytes. The caller holds s.mu.
func (s *pageShare) trimLocked(now time.Time) {
	n := 0
	for _, r := range s.order {
		if s.recent[r.key] != r.c { // replaced by a newer answer
			n++
			continue
		}
		if now.Sub(r.c.at) <= pageShareAge && s.bytes <= s.maxBytes {
			break
		}
		s.bytes -= r.c.page.size
		r.c.page.dropEncodings(true)
		delete(s.recent, r.key)
		n++
	}
	s.order = append(s.order[:0], s.order[n:]...)
}

// sharedPageRetrying is sharedPage, asked again while the cache tier does
// not answer, as requestPageRetrying.
func (e *Edge) sharedPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since, minNext int64, reuse bool) (*sharedPage, bool, error) {
	deadline := time.Now().Add(e.cfg.RequestTimeout)
	for {
		page, shared, err := e.sharedPage(ctx, topic, epoch, p, since, minNext, reuse)
		if err == nil || !errors.Is(err, errUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return page, shared, err
		}
		if !retryPause(ctx) {
			return page, shared, ctx.Err()
		}
	}
}
