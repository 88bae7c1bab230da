// Package poll waits for a condition in tests: it polls with a deadline
// instead of sleeping for a guessed time.
package poll

import (
	"testing"
	"time"
)

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
