//go:build !linux

package edge

import (
	"net"
	"sync"
)

// hangupWatcher watches nothing here: a client that leaves is noticed when
// a write to it fails (keep-alives).
type hangupWatcher struct {
	mu sync.Mutex
}

func (w *hangupWatcher) watch(*Edge, net.Conn, func()) *connWatch { return nil }

func (w *hangupWatcher) unregisterLocked(*connWatch) {}

func (w *hangupWatcher) close() {}
