//go:build linux

package edge

// HangupWakeups is how many times e's hang-up watcher has woken.
func HangupWakeups(e *Edge) uint64 { return e.acc.HangupWakeups() }

// NoHangupWatch turns e's hang-up watch off (benchmarks compare without
// it). Call it before the first stream.
func NoHangupWatch(e *Edge) { e.acc.CloseWatch() }
