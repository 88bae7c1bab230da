//go:build !linux

package accept

import (
	"sync"
	"syscall"
)

// hangupWatcher watches nothing here: a client that leaves is noticed when
// a write to it fails (keep-alives).
type hangupWatcher struct {
	mu sync.Mutex
}

func (w *hangupWatcher) watch(*Server, *Watch, syscall.RawConn) bool { return false }

func (w *hangupWatcher) unregisterLocked(*Watch) {}

func (w *hangupWatcher) close() {}
