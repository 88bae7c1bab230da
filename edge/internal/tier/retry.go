package tier

import (
	"context"
	"errors"
	"time"
)

// Retry is the one way the edge asks the cache tier again: each ask within
// Attempt; asked again while the answer is ErrUnavailable (nobody
// answered, NotOwner, a holder behind), after a pause that starts at Pause
// and doubles up to MaxPause, until Budget has passed since the first ask
// (0: until the caller's context ends). What differs between callers is
// the budget and the pauses (Client's policies).
type Retry struct {
	Attempt  time.Duration
	Budget   time.Duration
	Pause    time.Duration
	MaxPause time.Duration
}

// retrying is one request under a Retry.
type retrying struct {
	r        Retry
	clock    Clock
	deadline time.Time // zero: none
	pause    time.Duration
}

func (r Retry) start(c Clock) *retrying {
	t := &retrying{r: r, clock: c, pause: r.Pause}
	if r.Budget > 0 {
		t.deadline = c.Now().Add(r.Budget)
	}
	return t
}

// attempt is the context of one ask.
func (t *retrying) attempt(ctx context.Context) (context.Context, context.CancelFunc) {
	if t.r.Attempt <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, t.r.Attempt)
}

// again reports whether an ask that failed with err is made again: err is
// ErrUnavailable, ctx goes on and the budget is not spent. It pauses first.
func (t *retrying) again(ctx context.Context, err error) bool {
	if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil || t.spent() {
		return false
	}
	if !Pause(ctx, t.clock, t.pause) {
		return false
	}
	t.pause = min(2*t.pause, max(t.r.MaxPause, t.r.Pause))
	return true
}

// spent reports whether the budget has passed.
func (t *retrying) spent() bool { return !t.deadline.IsZero() && t.clock.Now().After(t.deadline) }

// progress notes an ask that moved on (a part read): the next pause is the first again.
func (t *retrying) progress() { t.pause = t.r.Pause }

// Do calls ask under r: each ask within Attempt (0: none), asked again as
// r says. It returns the last ask's error.
func (r Retry) Do(ctx context.Context, c Clock, ask func(ctx context.Context) error) error {
	rt := r.start(c)
	for {
		actx, cancel := rt.attempt(ctx)
		err := ask(actx)
		cancel()
		if err == nil || !rt.again(ctx, err) {
			return err
		}
	}
}
