//go:build !linux

package edge

import (
	"context"
	"net"
	"sync/atomic"
)

// liveConn is Linux-only (it writes with writev on the raw socket); elsewhere
// every stream keeps the ResponseWriter path.
type liveConn struct {
	c         *client
	lastWrite atomic.Int64
}

func newLiveConn(*feed, string, *client, net.Conn) (*liveConn, bool) { return nil, false }

func (lc *liveConn) flush() {}

func (e *Edge) watchLive(context.Context, *liveConn) {}

func (lc *liveConn) hangup() {}
