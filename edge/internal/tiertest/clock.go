package tiertest

import (
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
)

// Clock is a fake tier.Clock: its time moves only by Advance, or, when
// made with Jumping, by every wait (a pause before asking again costs the
// test no time).
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	jumping bool
	waits   []wait
}

type wait struct {
	at time.Time
	ch chan time.Time
}

var _ tier.Clock = (*Clock)(nil)

// NewClock is a fake clock at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Jumping is a fake clock at start whose waits end at once, moving it on.
func Jumping(start time.Time) *Clock { return &Clock{now: start, jumping: true} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that gets the time once the clock passed d from now.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jumping {
		c.now = c.now.Add(max(d, 0))
		ch <- c.now
		return ch
	}
	at := c.now.Add(d)
	if !at.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waits = append(c.waits, wait{at, ch})
	return ch
}

// Advance moves the clock on by d, ending the waits it passes.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waits[:0]
	for _, w := range c.waits {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waits = kept
}

// Waiting is how many waits have not ended.
func (c *Clock) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waits)
}
