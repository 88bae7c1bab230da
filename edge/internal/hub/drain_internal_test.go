package hub

import (
	"context"
	"testing"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// A drain that closes a live stream on a ResponseWriter (no hijack) leaves
// its writer to send the final retry: it must not also cancel the stream's
// context, which the writer's select may take first and end the stream
// without the retry (TestDrainClosesWithRetryAndRefuses/ResponseWriter
// failed about 2 in 60 runs under -race). A stream still in its setup is
// cancelled, as before.
func TestDrainOfALiveStreamLeavesTheRetryToItsWriter(t *testing.T) {
	for _, live := range []bool{true, false} {
		ctx, cancel := context.WithCancelCause(context.Background())
		c := newClient(16, 1<<20)
		c.cancelSetup = cancel
		c.live = live
		c.closeWith(reason.Drain, appendRetry(nil, 500))
		if canceled := ctx.Err() != nil; canceled == live {
			t.Fatalf("live %v: the stream's context cancelled: %v, want %v", live, canceled, !live)
		}
		frames, _, closing := c.take()
		if frames == nil || string(frames.bufs[0]) != "retry:500\n\n" || closing != reason.Drain {
			t.Fatalf("live %v: the writer takes %v, closing %q; want the final retry", live, frames, closing)
		}
	}
}
