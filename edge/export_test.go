package edge

import (
	"context"
	"math"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
	"github.com/ssekafka/ssekafka/proto"
)

// UseTier makes an edge built from c ask t, not NATS (c.NATS may be nil).
func UseTier(c *Config, t tier.Tier) { c.tier = func(tier.Tier) tier.Tier { return t } }

// UseClock makes an edge built from c time its requests to the cache
// tier, and the answers it keeps, by clock.
func UseClock(c *Config, clock tier.Clock) { c.clock = clock }

// HoldFeeds makes every feed of an edge built from c get its live messages
// through hold: a test holds the live feed behind the state pages by
// blocking in hold (tiertest.Holding).
func HoldFeeds(c *Config, hold func()) { HoldTier(c, &tiertest.Holding{BeforeMsg: hold}) }

// HoldTier makes an edge built from c ask the cache tier through h (its
// Tier set to the one it would ask): a test holds requests of a kind, or
// sees them, in h's hooks. Holds set before it stay, beneath h.
func HoldTier(c *Config, h *tiertest.Holding) {
	under := c.tier
	c.tier = func(t tier.Tier) tier.Tier {
		if under != nil {
			t = under(t)
		}
		h.Tier = t
		return h
	}
}

// HoldStatePages makes every state page request of an edge built from c
// (not a head's) call hold first, with the partition and the offset asked
// from: a test holds a stream in its state part, its setup slot taken
// (a fresh topic's streams ask pages; a resume the ring serves does not),
// or acts between two pages of a stream. One request may serve several
// streams (shared pages). Set it before New.
func HoldStatePages(c *Config, hold func(p int32, since int64)) {
	HoldTier(c, &tiertest.Holding{BeforeState: func(_ context.Context, _ string, p int32, since int64) {
		if since != math.MaxInt64 {
			hold(p, since)
		}
	}})
}

// ShareAlways makes an edge built from c serve every stream as in a storm:
// from the resume ring and from pages answered lately.
func ShareAlways(c *Config) { c.sharing = resume.ShareAlways }

// ShareNever makes an edge built from c serve every stream as a lone one:
// from state pages of its own, never from the resume ring.
func ShareNever(c *Config) { c.sharing = resume.ShareNever }

// HoldKeyReads makes every key lookup of an edge built from c call hold
// before it asks the cache tier (its metadata request; so does a new
// feed): a test gathers reads of one key behind it (tiertest.Holding).
func HoldKeyReads(c *Config, hold func()) { HoldTier(c, &tiertest.Holding{BeforeMeta: hold}) }

// FailFeeds ends every topic feed of e as a topic change does: their
// clients are disconnected and start again on a new feed.
func FailFeeds(e *Edge) { e.hub.CloseFeeds(reason.FeedEnded) }

// RequestApart reads the record that stub stands for (one sent apart) in
// parts over e's NATS connection with a tier.Client of its own: the code
// the state path and key reads run (tier.Client.Apart), not the edge's
// instance of it.
func RequestApart(e *Edge, ctx context.Context, topic string, epoch uint32, p int32, stub proto.Record) (proto.Record, error) {
	c := tier.NewClient(tier.NewNATS(e.cfg.NATS, e.cfg.SubjectPrefix), tier.Config{PageTimeout: e.cfg.PageTimeout,
		RequestTimeout: e.cfg.RequestTimeout, PageBytes: e.cfg.PageBytes, Clock: tier.SystemClock{}})
	return c.Apart(ctx, topic, epoch, p, &stub)
}
