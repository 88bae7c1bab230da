// Graceful drain: no new streams, not ready, and the live streams closed
// gradually, so that a load balancer moves them to other edges a few at a
// time (docs/architecture.md rule 8).

package hub

import (
	"context"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// Drain stops admitting streams (each new one is refused as a browser
// survives it, "edge draining"), makes Ready report false, and closes the
// streams it has, spread evenly over window, each after a final "retry:"
// (Retry with its jitter). It returns nil once no stream is left, or ctx's
// error if ctx ends first; the streams not yet closed by then are left to
// Close. A window of 0 or less closes them all at once. Drain may be called
// again; the edge never admits streams again.
func (h *Hub) Drain(ctx context.Context, window time.Duration) error {
	h.draining.Store(true)
	todo := h.streams.list()
	h.log.Info("draining", "streams", len(todo), "window", window)
	closed := make(map[*client]bool, len(todo))
	start := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// The i-th stream is due at start + i*window/n.
		due := len(todo)
		if elapsed := time.Since(start); window > 0 && elapsed < window {
			due = min(len(todo), int(int64(len(todo))*int64(elapsed)/int64(window))+1)
		}
		for _, c := range todo[:due] {
			if !closed[c] {
				closed[c] = true
				h.metrics.DrainClosed.Inc()
				c.closeWith(reason.Drain, appendRetry(nil, h.retryMs()))
			}
		}
		if due == len(todo) {
			// Streams that were starting when the drain began joined since.
			left := h.streams.list()
			if len(left) == 0 {
				h.log.Info("drained", "took", time.Since(start))
				return nil
			}
			todo = todo[:0]
			for _, c := range left {
				if !closed[c] {
					todo = append(todo, c)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// list returns every stream registered with a feed: live, or in its
// state part.
func (s *streamer) list() []*client {
	var cs []*client
	for _, f := range s.e.feedList() {
		f.mu.Lock()
		for _, v := range f.views {
			for c := range v.clients {
				cs = append(cs, c)
			}
		}
		f.mu.Unlock()
	}
	return cs
}
