package edge

import (
	"context"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/proto"
)

// HoldFeeds makes every feed of e call hold before it applies a live change
// or a probe tick: a test holds the live feed behind the state pages by
// blocking in hold. Set it before the first stream.
func HoldFeeds(e *Edge, hold func()) { e.holdFeed = hold }

// ShareAlways makes e serve every stream as in a storm: from the resume
// ring and from pages answered lately. Set it before the first stream.
func ShareAlways(e *Edge) { e.streams.sharing = resume.ShareAlways }

// ShareNever makes e serve every stream as a lone one: from state pages of
// its own, never from the resume ring.
func ShareNever(e *Edge) { e.streams.sharing = resume.ShareNever }

// AfterStatePage makes every stream of e call fn after it writes a state
// page of partition p. Set it before the first stream.
func AfterStatePage(e *Edge, fn func(p int32)) { e.streams.afterPage = fn }

// HoldKeyReads makes every shared key lookup of e call hold before it asks
// the cache tier: a test gathers reads of one key behind it.
func HoldKeyReads(e *Edge, hold func()) { e.holdKeyRead = hold }

// HoldStateParts makes every stream of e call hold, with its request's
// context, as its state part begins: a test counts the streams in their
// state part at once, or holds one there. Set it before Serve.
func HoldStateParts(e *Edge, hold func(context.Context)) { e.streams.holdState = hold }

// FailFeeds ends every topic feed of e as a topic change does: their
// clients are disconnected and start again on a new feed.
func FailFeeds(e *Edge) {
	for _, f := range e.feedList() {
		f.fail(reason.FeedEnded)
	}
}

// RequestApart reads the record that stub stands for (one sent apart) in
// parts, as the state path and key reads do.
func RequestApart(e *Edge, ctx context.Context, topic string, epoch uint32, p int32, stub proto.Record) (proto.Record, error) {
	return e.requestApart(ctx, topic, epoch, p, &stub)
}
