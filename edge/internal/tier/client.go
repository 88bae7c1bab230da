package tier

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

// Counter is a metric Client counts in (a prometheus.Counter); nil: none.
type Counter interface{ Inc() }

func inc(c Counter) {
	if c != nil {
		c.Inc()
	}
}

// Counters are the metrics Client counts in.
type Counters struct {
	StateRequests    Counter // state pages asked for
	ValueRequests    Counter // parts of records apart asked for
	ValuesNotYet     Counter // parts answered by a holder behind the record
	ValuesGone       Counter // records apart left out of a page: superseded
	KeyRepliesBehind Counter // key replies from a holder behind the floor
}

// Config is what Client needs of the edge's configuration.
type Config struct {
	PageTimeout    time.Duration // one ask
	RequestTimeout time.Duration // one request asked again, or a record read in parts
	PageBytes      int           // the bytes a state page is asked to hold
	Clock          Clock         // nil: SystemClock
	Counters       Counters
	// FloorsRefused is told when a cache node refuses a key request's
	// floor (a node of the previous release): key requests go without
	// floors for floorlessFor. nil: not told.
	FloorsRefused func(reply string)
}

// Client asks a Tier as the edge does: it judges the replies, asks again
// under one Retry policy, and reads records apart in parts.
type Client struct {
	t   Tier
	cfg Config
	// The policies: pages and parts within RequestTimeout (parts back off
	// faster and further: a standby a few milliseconds behind has the
	// record by the second ask), keys until their caller's context ends.
	pages, parts, keys Retry
	// floorless is when key requests may carry floors again (Unix
	// nanoseconds on the Clock), after a cache node refused one.
	floorless atomic.Int64
}

// NewClient is a Client of t.
func NewClient(t Tier, cfg Config) *Client {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	return &Client{
		t: t, cfg: cfg,
		pages: Retry{Attempt: cfg.PageTimeout, Budget: cfg.RequestTimeout, Pause: retryPause, MaxPause: retryPause},
		parts: Retry{Attempt: cfg.PageTimeout, Budget: cfg.RequestTimeout, Pause: partFirstPause, MaxPause: partMaxPause},
		keys:  Retry{Attempt: cfg.PageTimeout, Pause: retryPause, MaxPause: retryPause},
	}
}

// The pauses before asking again: "no responders" answers at once.
const (
	retryPause     = 50 * time.Millisecond
	partFirstPause = 5 * time.Millisecond
	partMaxPause   = 200 * time.Millisecond
)

// Meta asks for topic's metadata: ErrTopicNotFound when Kafka has no such
// topic, ErrUnavailable when nobody answered.
func (c *Client) Meta(ctx context.Context, topic string) (proto.Meta, error) {
	m, err := c.t.Meta(ctx, topic)
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w", topic, err)
	}
	switch m.Status {
	case proto.StatusOK:
		return m, nil
	case proto.StatusUnknownTopic:
		return m, fmt.Errorf("meta %s: %w", topic, ErrTopicNotFound)
	}
	return m, fmt.Errorf("meta %s: %s: %s", topic, m.Status, m.Error)
}

// Page asks once for partition p's page since since (math.MaxInt64: its
// head only), under epoch, with its records apart read in parts.
// ErrUnavailable when nobody answered or a holder answered NotOwner
// (released, or not caught up: another holder answers, or soon will).
func (c *Client) Page(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	inc(c.cfg.Counters.StateRequests)
	page, err := c.t.State(ctx, topic, p, proto.StateRequest{Since: since, MaxBytes: c.cfg.PageBytes})
	switch {
	case err != nil:
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w", topic, p, err)
	case page.Status == proto.StatusNotOwner:
		return page, fmt.Errorf("fetch state %s/%d: %w: %s", topic, p, ErrUnavailable, page.Error)
	case page.Status != proto.StatusOK:
		return page, fmt.Errorf("fetch state %s/%d: %s: %s", topic, p, page.Status, page.Error)
	case page.Epoch != epoch:
		return page, fmt.Errorf("fetch state %s/%d: epoch %d, want %d", topic, p, page.Epoch, epoch)
	}
	return c.assembleValues(ctx, topic, epoch, p, page)
}

// Head asks once for partition p's head: the holder's next offset (the
// feed's probes, plausibility checks and the ring's head requests ask
// this, today through Page with math.MaxInt64).
func (c *Client) Head(ctx context.Context, topic string, epoch uint32, p int32) (int64, error) {
	page, err := c.Page(ctx, topic, epoch, p, math.MaxInt64)
	return page.Next, err
}

// PageRetrying is Page, each ask within PageTimeout, asked again while
// the answer is ErrUnavailable, for up to RequestTimeout.
func (c *Client) PageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	var page proto.StatePage
	err := c.Retrying(ctx, func(ctx context.Context) error {
		var err error
		page, err = c.Page(ctx, topic, epoch, p, since)
		return err
	})
	return page, err
}

// Retrying calls ask, each within PageTimeout, again while it fails with
// ErrUnavailable, for up to RequestTimeout: the policy of pages.
func (c *Client) Retrying(ctx context.Context, ask func(ctx context.Context) error) error {
	return c.pages.Do(ctx, c.cfg.Clock, ask)
}

// PagePolicy is the policy of pages.
func (c *Client) PagePolicy() Retry { return c.pages }

// PageTimeout bounds one ask.
func (c *Client) PageTimeout() time.Duration { return c.cfg.PageTimeout }

// PageBytes is the bytes a state page is asked to hold.
func (c *Client) PageBytes() int { return c.cfg.PageBytes }

// assembleValues reads the records the page carries apart (too large for
// one NATS message) from the cache tier, in parts. A record that is gone
// (superseded since the page was read) is left out: its key's newer record
// is later in the partition. Each part has PageTimeout of its own: ctx's
// deadline was the page request's; its cancellation still holds.
func (c *Client) assembleValues(ctx context.Context, topic string, epoch uint32, p int32, page proto.StatePage) (proto.StatePage, error) {
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
		whole, err := c.Apart(vctx, topic, epoch, p, r)
		if errors.Is(err, ErrValueGone) {
			inc(c.cfg.Counters.ValuesGone)
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

// maxUnplacedGone bounds the asks answered Gone without a position.
const maxUnplacedGone = 8

// partSlack is what a value part's reply needs besides its bytes.
const partSlack = 1 << 10

// apartRead is one record read in parts.
type apartRead struct {
	topic    string
	epoch    uint32
	p        int32
	stub     *proto.Record
	enc      []byte
	total    int // -1 until the first part
	sum      uint32
	unplaced int // Gone answers without a position
}

func (a *apartRead) fail(format string, args ...any) error {
	return fmt.Errorf("record %s/%d@%d: "+format, append([]any{a.topic, a.p, a.stub.Offset}, args...)...)
}

// Apart reads the record that stub stands for (one sent apart) in parts
// that fit the tier's messages, and checks it is the record stub names.
// The encoding grows with what the parts carry, never by what a reply
// claims. The parts may come from any holder of the partition (a queue
// group): a part not answered within PageTimeout, answered NotOwner, or
// answered NotYet (a holder behind the record: another has it, or this one
// soon will) is asked again, with backoff, up to RequestTimeout for the
// record; so is Gone from a holder that does not say it is past the record
// (a node older than NotYet answered Gone for what it had not applied).
// Only Gone from a holder past the offset is final (ErrValueGone).
func (c *Client) Apart(ctx context.Context, topic string, epoch uint32, p int32, stub *proto.Record) (proto.Record, error) {
	a := &apartRead{topic: topic, epoch: epoch, p: p, stub: stub, total: -1}
	room := max(c.t.MaxPayload()-partSlack, partSlack)
	rt := c.parts.start(c.cfg.Clock)
	for a.total < 0 || len(a.enc) < a.total {
		part, err := c.askPart(ctx, rt, a, room)
		if err != nil {
			err = fmt.Errorf("record %s/%d@%d: %w", topic, p, stub.Offset, err)
			// Gone from nodes that do not say where they stand, again and
			// again: superseded, most likely. Not skipped on their word:
			// the page that named it is asked again.
			if a.unplaced >= maxUnplacedGone || !rt.again(ctx, err) {
				return proto.Record{}, err
			}
			continue
		}
		rt.progress()
		if err := a.add(&part); err != nil {
			return proto.Record{}, err
		}
	}
	return a.record()
}

// askPart asks for the next part once. An error that wraps ErrUnavailable
// is worth asking again.
func (c *Client) askPart(ctx context.Context, rt *retrying, a *apartRead, room int) (proto.ValuePart, error) {
	inc(c.cfg.Counters.ValueRequests)
	pctx, cancel := rt.attempt(ctx)
	part, err := c.t.Value(pctx, a.topic, a.p, proto.ValueRequest{Offset: a.stub.Offset, From: len(a.enc), MaxBytes: room})
	cancel()
	switch {
	case errors.Is(err, ErrUnavailable):
		return part, err
	case err != nil:
		return part, fmt.Errorf("%w", err) // does not decode: final
	case part.Status == proto.StatusNotOwner:
		return part, fmt.Errorf("%w: %s", ErrUnavailable, part.Error)
	case part.Status == proto.StatusNotYet || part.Status == proto.StatusGone && part.Next <= a.stub.Offset:
		inc(c.cfg.Counters.ValuesNotYet)
		if part.Status == proto.StatusGone {
			a.unplaced++
		}
		return part, fmt.Errorf("%w: %w: a holder at %d: %s", ErrUnavailable, ErrNotYet, part.Next, part.Error)
	}
	return part, nil
}

// add checks a part answered and adds its bytes.
func (a *apartRead) add(part *proto.ValuePart) error {
	switch {
	case part.Status == proto.StatusGone:
		return a.fail("%w: %s", ErrValueGone, part.Error)
	case part.Status != proto.StatusOK:
		return a.fail("%s: %s", part.Status, part.Error)
	case part.Epoch != a.epoch || part.Partition != a.p || part.Offset != a.stub.Offset || part.From != len(a.enc) ||
		(a.total >= 0 && (part.Total != a.total || part.Sum != a.sum)):
		return a.fail("a part of another record (epoch %d, %d@%d, %d bytes from %d): %w",
			part.Epoch, part.Partition, part.Offset, part.Total, part.From, proto.ErrMalformed)
	case len(part.Data) == 0:
		return a.fail("an empty part at %d of %d: %w", len(a.enc), part.Total, proto.ErrMalformed)
	}
	a.total, a.sum = part.Total, part.Sum
	a.enc = append(a.enc, part.Data...)
	return nil
}

// record decodes the parts and checks they make the record the stub names.
func (a *apartRead) record() (proto.Record, error) {
	if proto.PartSum(a.enc) != a.sum {
		return proto.Record{}, a.fail("the parts do not make the record they were cut from (two holders' encodings?): %w", proto.ErrMalformed)
	}
	r, err := proto.DecodeRecord(a.enc)
	if err != nil {
		return proto.Record{}, a.fail("%w", err)
	}
	s := a.stub
	if r.Offset != s.Offset || r.TimeMs != s.TimeMs || r.Tombstone != s.Tombstone || r.KeyNull != s.KeyNull || len(r.Value) != s.ValueLen {
		return proto.Record{}, a.fail("the parts make another record (offset %d, time %d, a %d-byte value): %w", r.Offset, r.TimeMs, len(r.Value), proto.ErrMalformed)
	}
	return r, nil
}

// floorlessFor is how long key requests go without floors after a cache
// node refused one: a rolling upgrade's mixed window, asked again after it.
const floorlessFor = time.Minute

// keyFloor is floor, or 0 while cache nodes refuse floors.
func (c *Client) keyFloor(floor int64) int64 {
	if floor > 0 && c.cfg.Clock.Now().UnixNano() < c.floorless.Load() {
		return 0
	}
	return floor
}

// floorRefused notes that a cache node refused a floor (k says so): the
// requests go without one for floorlessFor, and each refusal is told (the
// edge's log is rate-limited): one that comes again and again, forged or
// not, is seen.
func (c *Client) floorRefused(k *proto.KeyReply) {
	now := c.cfg.Clock.Now().UnixNano()
	was := c.floorless.Load()
	if c.floorless.CompareAndSwap(was, now+int64(floorlessFor)) && c.cfg.FloorsRefused != nil {
		c.cfg.FloorsRefused(k.Error)
	}
}

// keyBehindBudget bounds how long a partition is asked again while the
// holders that answer are behind what the edge has delivered.
const keyBehindBudget = 2 * time.Second

// Key asks partition p for key, again while its holders do not answer or
// answer NotOwner, until ctx ends; and again, for up to keyBehindBudget,
// while the holder that answers is behind floor (a standby a moment
// behind: its answer may be older than what a reader saw). A cache node
// that refuses the floor (of the previous release) is asked again at once
// without it, and so are all for floorlessFor: such a read may answer
// from a holder behind floor, as a read without a feed may.
func (c *Client) Key(ctx context.Context, topic string, epoch uint32, p int32, key []byte, floor int64) (proto.KeyReply, error) {
	floor = c.keyFloor(floor)
	req := proto.KeyRequest{Key: key, Floor: floor}
	rt := c.keys.start(c.cfg.Clock)
	var behindSince time.Time
	for {
		actx, cancel := rt.attempt(ctx)
		k, err := c.t.Key(actx, topic, p, req)
		cancel()
		switch {
		case err != nil: // a reply that does not decode too: another holder may answer
			err = fmt.Errorf("key %s/%d: %w: %w", topic, p, ErrUnavailable, err)
		case k.Status == proto.StatusNotOwner:
			err = fmt.Errorf("key %s/%d: %w: %s", topic, p, ErrUnavailable, k.Error)
		case floor > 0 && proto.RefusesFloor(&k):
			c.floorRefused(&k)
			floor, req.Floor = 0, 0
			continue // at once: this is no failure of the node
		case k.Status != proto.StatusOK:
			return k, fmt.Errorf("key %s/%d: %s: %s", topic, p, k.Status, k.Error)
		case k.Epoch != epoch || k.Partition != p:
			return k, fmt.Errorf("key %s/%d: a reply of epoch %d, partition %d: %w", topic, p, k.Epoch, k.Partition, proto.ErrMalformed)
		case k.Next < floor:
			inc(c.cfg.Counters.KeyRepliesBehind)
			if behindSince.IsZero() {
				behindSince = c.cfg.Clock.Now()
			}
			err = fmt.Errorf("key %s/%d: %w: the holder that answers is at %d, behind %d delivered", topic, p, ErrUnavailable, k.Next, floor)
			if Since(c.cfg.Clock, behindSince) > keyBehindBudget {
				return k, err
			}
		default:
			return k, nil
		}
		if !rt.again(ctx, err) {
			return k, err
		}
	}
}

// Subscribe subscribes msgs to topic's live messages (Tier.Subscribe).
func (c *Client) Subscribe(ctx context.Context, topic string, msgs chan *Msg) (Subscription, error) {
	return c.t.Subscribe(ctx, topic, msgs)
}

// Reconnects is the tier's reconnect count (Tier.Reconnects).
func (c *Client) Reconnects() uint64 { return c.t.Reconnects() }
