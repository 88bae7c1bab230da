// The edge's use of the cache tier (edge/internal/tier): requests judged
// and asked again by tier.Client, and state pages shared among streams.

package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

var (
	errTopicNotFound = tier.ErrTopicNotFound
	errValueGone     = tier.ErrValueGone
)

// cacheTier is what the hub asks of the cache tier, for its feeds, streams
// and key reads (Hub.cache).
type cacheTier struct {
	client  *tier.Client
	clock   tier.Clock
	metrics *metrics.Edge
	lookups *topicLookups // told of every metadata answer
	pages   pageShare     // state requests in flight and answered lately
}

// setUp makes ct the hub's use of the cache tier cfg.Tier.
func (ct *cacheTier) setUp(cfg *Config, clock tier.Clock, m *metrics.Edge, lookups *topicLookups) {
	t := cfg.Tier
	ct.metrics, ct.lookups, ct.clock = m, lookups, clock
	ct.client = tier.NewClient(t, tier.Config{
		PageTimeout: cfg.PageTimeout, RequestTimeout: cfg.RequestTimeout, PageBytes: cfg.PageBytes, Clock: clock,
		Counters: tier.Counters{StateRequests: m.StateRequests, ValueRequests: m.ValueRequests,
			ValuesNotYet: m.ValuesNotYet, ValuesGone: m.ValuesGone, KeyRepliesBehind: m.KeyRepliesBehind},
		FloorsRefused: func(reply string) {
			cfg.Log.Warn("a cache node of the previous release refuses key read floors: key reads go without them for a minute (docs/upgrading.md)", "reply", reply)
		},
	})
	ct.pages.share = tier.Share[pageKey, *sharedPage]{
		Age: func(_ *sharedPage, err error) time.Duration {
			if err != nil {
				return 0
			}
			return pageShareAge
		},
		Cost:    func(sp *sharedPage) int { return sp.size },
		MaxCost: 32 * cfg.PageBytes,
		Keep:    func(sp *sharedPage) { sp.shared(ct.pages.mem) },
		Leave:   func(sp *sharedPage) { sp.dropEncodings(true) },
		Clock:   clock,
	}
}

// requestMeta asks for topic's metadata, and tells the topic lookups.
func (ct *cacheTier) requestMeta(ctx context.Context, topic string) (proto.Meta, error) {
	m, err := ct.client.Meta(ctx, topic)
	switch {
	case err == nil:
		ct.lookups.answered(topic, true)
	case errors.Is(err, errTopicNotFound):
		ct.lookups.answered(topic, false)
	}
	return m, err
}

// requestPage asks once for a state page (math.MaxInt64: the head), its
// records apart read in parts.
func (ct *cacheTier) requestPage(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	return ct.client.Page(ctx, topic, epoch, p, since)
}

// requestPageRetrying asks for a page, again and again while the cache tier
// does not answer (a node died while answering, or none holds the partition
// for a moment) or answers NotOwner (the node released the partition, or is
// not caught up on it), for up to RequestTimeout.
func (ct *cacheTier) requestPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	return ct.client.PageRetrying(ctx, topic, epoch, p, since)
}

// requestApart reads the record that stub stands for (one sent apart) in
// parts (tier.Client.Apart).
func (ct *cacheTier) requestApart(ctx context.Context, topic string, epoch uint32, p int32, stub *proto.Record) (proto.Record, error) {
	return ct.client.Apart(ctx, topic, epoch, p, stub)
}

// Shared state pages (docs/architecture.md rule 8, tier.Share). Streams that ask for the same page
// while a request for it is in flight share that request. While other
// streams of the topic are in their state part too, a page answered in the
// last pageShareAge is given again if its Next is at least minNext (the
// feed's position, or the start of its resume ring); writeState leaves out
// the page's records that the feed's later changes superseded, which makes
// it the page the state path would give now. A lone stream gets a page of
// its own. Kept: pages up to the share's MaxCost in records (32 pages), each
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
	frames []byte // identity, or while being encoded: the plain frames
	events int
	chunk  compress.Chunk // sealed in a coding (statePart.seal): what is sent
}

// size is the bytes it holds.
func (ep *encodedPage) size() int { return len(ep.frames) + len(ep.chunk.Data) }

// wire is what is sent of it, as a chunk.
func (ep *encodedPage) wire() compress.Chunk {
	if ep.chunk.Enc != compress.Identity {
		return ep.chunk
	}
	return compress.Chunk{Data: ep.frames, Len: len(ep.frames)}
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
		n := int64(ep.size())
		if m.limit > 0 && m.used.Load()+n > m.limit {
			return // the feed memory budget (budget.go)
		}
		m.used.Add(n)
		sp.encBytes += ep.size()
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

// pageShare is the edge's in-flight and recent state requests
// (tier.Share); mem is where recent pages' encodings count.
type pageShare struct {
	share tier.Share[pageKey, *sharedPage]
	mem   *feedMemory
}

// sharedPage returns the page of (topic, p, since) under epoch: one
// answered lately (when reuse is set, and only if its Next is at least
// minNext), one being asked for, or a new request's. shared says it was not
// this call's own request. The request is made with a context of its own, so that a
// stream that leaves does not fail the others waiting for it.
func (ct *cacheTier) sharedPage(ctx context.Context, topic string, epoch uint32, p int32, since, minNext int64, reuse bool) (sp *sharedPage, shared bool, err error) {
	key := pageKey{topic: topic, p: p, epoch: epoch, since: since, maxBytes: ct.client.PageBytes()}
	ask := tier.Ask[*sharedPage]{Do: func(ctx context.Context) (*sharedPage, error) {
		return ct.askPage(ctx, key)
	}}
	if reuse {
		ask.Reuse = func(sp *sharedPage) bool { return sp.Next >= minNext }
	}
	sp, shared, err = ct.pages.share.Do(ctx, key, ask)
	if shared && err == nil {
		ct.metrics.PagesShared.Inc()
	}
	return sp, shared, err
}

// askPage makes a shared page's request; its encodings count in the feed
// memory while it is among the recent.
func (ct *cacheTier) askPage(ctx context.Context, key pageKey) (*sharedPage, error) {
	ctx, cancel := context.WithTimeout(ctx, ct.client.PageTimeout())
	defer cancel()
	page, err := ct.requestPage(ctx, key.topic, key.epoch, key.p, key.since)
	sp := &sharedPage{StatePage: page}
	for i := range page.Records {
		sp.size += page.Records[i].Size()
	}
	return sp, err
}

// sharedPageRetrying is sharedPage, asked again while the cache tier does
// not answer, as requestPageRetrying (without a timeout of each ask: the
// shared request has its own).
func (ct *cacheTier) sharedPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since, minNext int64, reuse bool) (*sharedPage, bool, error) {
	var sp *sharedPage
	var shared bool
	policy := ct.client.PagePolicy()
	policy.Attempt = 0
	err := policy.Do(ctx, ct.clock, func(ctx context.Context) error {
		var err error
		sp, shared, err = ct.sharedPage(ctx, topic, epoch, p, since, minNext, reuse)
		return err
	})
	return sp, shared, err
}
