//go:build !linux

package hub

import (
	"context"
	"net"
	"sync/atomic"
)

// liveConn is Linux-only (it writes with writev on the raw socket); elsewhere
// a hijacked stream gets a goSink.
type liveConn struct {
	c         *client
	lastWrite atomic.Int64
}

func newLiveConn(*streamer, *feed, string, *client, net.Conn) (*liveConn, bool) { return nil, false }

func (lc *liveConn) flush() {}

func (lc *liveConn) live(*liveStream) bool { return false }

func (s *streamer) watchLive(context.Context, *liveConn) {}

func (lc *liveConn) hangup() {}
