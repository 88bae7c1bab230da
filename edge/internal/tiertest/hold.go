package tiertest

import (
	"context"
	"sync"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// Holding wraps a Tier: BeforeMsg, if set, is called before each live
// message is handed to its subscriber (blocking in it holds the feed
// behind the tier, as a busy feed goroutine would be), BeforeMeta before
// each metadata request (a key lookup's first request; a new feed's), and
// BeforeState before each state request (a stream's state page; a head,
// since math.MaxInt64), with the request's context (the tier's ask: one
// may serve several streams).
type Holding struct {
	tier.Tier
	BeforeMsg   func()
	BeforeMeta  func()
	BeforeState func(ctx context.Context, topic string, p int32, since int64)
}

var _ tier.Tier = (*Holding)(nil)

// Meta calls BeforeMeta, then asks the tier.
func (h *Holding) Meta(ctx context.Context, topic string) (proto.Meta, error) {
	if h.BeforeMeta != nil {
		h.BeforeMeta()
	}
	return h.Tier.Meta(ctx, topic)
}

// State calls BeforeState, then asks the tier.
func (h *Holding) State(ctx context.Context, topic string, p int32, req proto.StateRequest) (proto.StatePage, error) {
	if h.BeforeState != nil {
		h.BeforeState(ctx, topic, p, req.Since)
	}
	return h.Tier.State(ctx, topic, p, req)
}

// Subscribe subscribes a channel of its own as large as msgs, and hands
// each message on to msgs after BeforeMsg, in order, until Unsubscribe.
func (h *Holding) Subscribe(ctx context.Context, topic string, msgs chan *tier.Msg) (tier.Subscription, error) {
	if h.BeforeMsg == nil {
		return h.Tier.Subscribe(ctx, topic, msgs)
	}
	in := make(chan *tier.Msg, cap(msgs))
	sub, err := h.Tier.Subscribe(ctx, topic, in)
	if err != nil {
		return nil, err
	}
	hs := &heldSub{Subscription: sub, done: make(chan struct{})}
	go func() {
		for {
			select {
			case m := <-in:
				h.BeforeMsg()
				select {
				case msgs <- m:
				case <-hs.done:
					return
				}
			case <-hs.done:
				return
			}
		}
	}()
	return hs, nil
}

type heldSub struct {
	tier.Subscription
	once sync.Once
	done chan struct{}
}

func (s *heldSub) Unsubscribe() error {
	s.once.Do(func() { close(s.done) })
	return s.Subscription.Unsubscribe()
}
