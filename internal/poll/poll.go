// Package poll waits for a condition in tests and load tools: it polls with
// a deadline instead of sleeping for a guessed time.
package poll

import (
	"context"
	"testing"
	"time"
)

// Wait polls cond every interval until it holds, or returns ctx's error.
func Wait(ctx context.Context, every time.Duration, cond func() bool) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Until polls cond every 10ms until it holds, and fails tb if it does not
// within timeout.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
