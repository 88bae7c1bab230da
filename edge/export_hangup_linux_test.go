//go:build linux

package edge

// HangupWakeups is how many times e's hang-up watcher has woken.
func HangupWakeups(e *Edge) uint64 { return e.hangups.wakeups.Load() }
