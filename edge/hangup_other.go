//go:build !linux

package edge

import (
	"sync"
	"syscall"
)

// hangupWatcher watches nothing here: a client that leaves is noticed when
// a write to it fails (keep-alives).
type hangupWatcher struct {
	mu sync.Mutex
}

func (w *hangupWatcher) watch(*Edge, *connWatch, syscall.RawConn) bool { return false }

func (w *hangupWatcher) unregisterLocked(*connWatch) {}

func (w *hangupWatcher) close() {}
