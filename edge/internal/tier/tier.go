// Package tier is the edge's side of the cache tier: the Tier interface (the
// requests an edge makes of cache nodes, and the topic's live messages), its
// NATS implementation, Client, which asks a Tier under one retry policy
// (Retry), and Share, the one layer the edge shares answers through (asks
// in flight, recent answers, one eviction rule). An in-memory Tier for
// tests is in tiertest.
//
// Contract of a Tier: every method may be called from any goroutine, at
// once, and with no edge lock held; a request blocks until it is answered
// or its ctx ends. A request is asked once: Client asks again. A request
// nobody answered (no holder, a node that died, a timeout) returns an error
// that wraps ErrUnavailable; a reply that does not decode returns an error
// that does not. Replies are returned as the holder answered them (a
// NotOwner, NotYet or Gone status is Client's to judge).
package tier

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// Tier is what an edge asks of the cache tier.
type Tier interface {
	// Meta asks for topic's metadata; the first ask for a topic nobody
	// consumes makes its owners take it up.
	Meta(ctx context.Context, topic string) (proto.Meta, error)
	// State asks partition p's holders for one state page.
	State(ctx context.Context, topic string, p int32, req proto.StateRequest) (proto.StatePage, error)
	// Value asks partition p's holders for a part of a record sent apart.
	Value(ctx context.Context, topic string, p int32, req proto.ValueRequest) (proto.ValuePart, error)
	// Key asks partition p's holders for a key's latest record.
	Key(ctx context.Context, topic string, p int32, req proto.KeyRequest) (proto.KeyReply, error)
	// Subscribe delivers topic's live messages (changes and heads of every
	// partition) into msgs, in the order they came, without blocking: a
	// message that finds msgs full is dropped (the feed finds the gap by
	// offsets). When it returns, the tier has the subscription: a message
	// published after it is delivered. Anyone able to publish can send on
	// it: what comes is not trusted.
	Subscribe(ctx context.Context, topic string, msgs chan *Msg) (Subscription, error)
	// MaxPayload is the largest message the tier carries: parts are asked
	// to fit it.
	MaxPayload() int
	// Reconnects counts the times the tier's connection was lost and made
	// again: live messages sent meanwhile were lost.
	Reconnects() uint64
}

// Msg is one live message of a topic: Data is an encoded proto.Change or
// proto.Head, Subject where it came (for logs); nothing else of it is read.
// It is NATS's message type, so that the NATS tier hands messages to the
// feed as NATS delivers them (no copy, no goroutine between); another tier
// makes them as plain structs.
type Msg = nats.Msg

// Subscription is a topic's live messages, delivered until Unsubscribe.
type Subscription interface {
	Unsubscribe() error
}

var (
	// ErrUnavailable: nobody answered, or the node asked does not hold the
	// partition (NotOwner): another holder answers, or soon will.
	ErrUnavailable = errors.New("cache tier unavailable")
	// ErrTopicNotFound: the topic does not exist in Kafka.
	ErrTopicNotFound = errors.New("topic not found")
	// ErrValueGone: the record asked for was superseded, said a holder past it.
	ErrValueGone = errors.New("value gone")
	// ErrNotYet: the holder asked has not applied the record yet.
	ErrNotYet = errors.New("not applied yet")
)

// Clock is the time as the tier's callers see it; tests use a fake one.
type Clock interface {
	Now() time.Time
	// After returns a channel that gets the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real time.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Since is the time passed since t on c.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Pause waits d on c, and reports false if ctx ended first.
func Pause(ctx context.Context, c Clock, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-c.After(d):
		return true
	}
}
