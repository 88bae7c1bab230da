package hub

import "time"

// keepAliveLoop sends a comment to every hijacked connection idle for
// KeepAlive: it keeps proxies from closing the stream, and where no hang-up
// watch runs (hangup.go) a write is how a connection with no reader finds
// out that its peer has gone. The writer goroutines of the other sinks keep
// their own timers.
func (s *streamer) keepAliveLoop() {
	tick := time.NewTicker(min(s.cfg.KeepAlive/2, time.Second))
	defer tick.Stop()
	var idle []*liveConn
	for {
		select {
		case <-s.done:
			return
		case now := <-tick.C:
			idle = s.idleLive(now, idle[:0])
			for _, lc := range idle {
				lc.c.mu.Lock()
				lc.c.appendLocked(lc.c.keepAliveLocked())
				lc.c.mu.Unlock()
				lc.flush()
			}
			clear(idle)
		}
	}
}

// idleLive appends the hijacked connections of every feed that have not
// been written to for KeepAlive.
func (s *streamer) idleLive(now time.Time, idle []*liveConn) []*liveConn {
	for _, f := range s.e.feedList() {
		f.mu.Lock()
		for _, v := range f.views {
			for c := range v.clients {
				c.mu.Lock()
				lc, _ := c.sink.(*liveConn)
				c.mu.Unlock()
				if lc != nil && now.Sub(time.Unix(0, lc.lastWrite.Load())) >= s.cfg.KeepAlive {
					idle = append(idle, lc)
				}
			}
		}
		f.mu.Unlock()
	}
	return idle
}
