//go:build linux

package accept

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// hangupEvents is what a watched socket is registered for: the peer's FIN
// (EPOLLRDHUP: closed, or half-closed, which an SSE client never does while
// it reads; net/http also takes it as gone), a reset or an error. Not
// EPOLLIN: bytes a client sends after its request are left unread in the
// socket (TCP flow control bounds them), as net/http leaves them under a
// hijacked handler, and wake nothing. One-shot: a socket is reported once
// and is not rearmed, since it is released.
const hangupEvents = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR | unix.EPOLLONESHOT

// hangupWatcher is an edge's epoll instance for hang-ups, started on first
// use, and the goroutine that waits on it (in epoll_wait, so one thread). Sockets are registered with an
// id of their own, never looked up by descriptor number: a number may be
// reused once its connection is closed. A socket is unregistered only
// through its RawConn (which keeps the number valid meanwhile), and the
// kernel drops the registration of a socket when it is closed.
type hangupWatcher struct {
	once sync.Once

	mu      sync.Mutex // a leaf; guards the fields below and every Watch's state
	running bool       // epfd and wakefd are open
	epfd    int
	wakefd  int // an eventfd that wakes the loop to stop
	closed  bool
	next    uint64
	watches map[uint64]*Watch

	wakeups atomic.Uint64 // epoll_wait returns (tests check nothing spins)
}

// watch registers cw (whose setup or lc is set) for raw's socket, and
// reports whether it could: not when epoll is unavailable or the
// connection is closed already.
func (w *hangupWatcher) watch(s *Server, cw *Watch, raw syscall.RawConn) bool {
	w.once.Do(func() { w.start(s) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || !w.running {
		return false
	}
	w.next++
	cw.w, cw.id = w, w.next
	ev := unix.EpollEvent{Events: hangupEvents, Fd: int32(uint32(cw.id)), Pad: int32(uint32(cw.id >> 32))}
	var ctlErr error
	if err := raw.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || ctlErr != nil {
		return false // keep-alives remain
	}
	w.watches[cw.id] = cw
	return true
}

// unregisterLocked forgets cw and takes its socket out of the epoll set.
// The caller holds w.mu.
func (w *hangupWatcher) unregisterLocked(cw *Watch) {
	delete(w.watches, cw.id)
	if w.closed || !w.running {
		return
	}
	var raw syscall.RawConn
	if cw.setup != nil {
		raw = cw.setup.raw
	} else {
		raw = cw.lc.RawConn()
	}
	// Control fails, calling nothing, once the connection is closed: then
	// the kernel drops the registration with the socket.
	_ = raw.Control(func(fd uintptr) {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

func (w *hangupWatcher) start(s *Server) {
	log := s.cfg.Log
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		log.Warn("no hang-up watch: clients that leave are noticed by keep-alives only", "err", err)
		return
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		log.Warn("no hang-up watch: clients that leave are noticed by keep-alives only", "err", err)
		return
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil { // id 0
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		log.Warn("no hang-up watch: clients that leave are noticed by keep-alives only", "err", err)
		return
	}
	w.epfd, w.wakefd, w.running = epfd, wakefd, true
	w.watches = make(map[uint64]*Watch)
	go w.loop(s)
}

// loop waits for hang-ups and releases their connections, until close.
func (w *hangupWatcher) loop(s *Server) {
	events := make([]unix.EpollEvent, 256)
	var release []*Watch
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		w.wakeups.Add(1)
		w.mu.Lock()
		if w.closed || err != nil {
			if err != nil {
				s.cfg.Log.Error("hang-up watch ended: clients that leave are noticed by keep-alives only", "err", err)
			}
			w.shutdownLocked()
			w.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			cw := w.watches[id]
			if cw == nil {
				continue // unregistered after the event was queued
			}
			delete(w.watches, id) // one-shot: no other event comes
			cw.fired = true
			release = append(release, cw)
		}
		w.mu.Unlock()
		// Read without w.mu: fired is set, so no GoLive changes them now.
		for i, cw := range release {
			s.hungUp(cw)
			release[i] = nil
		}
		release = release[:0]
	}
}

// hungUp releases cw's connection, whose client has gone.
func (s *Server) hungUp(cw *Watch) {
	switch {
	case cw.lc != nil:
		s.cfg.Metrics.HangupsLive.Inc()
		cw.lc.Hangup()
	case cw.end != nil:
		s.cfg.Metrics.HangupsLive.Inc()
		cw.end()
	default:
		s.cfg.Metrics.HangupsSetup.Inc()
		cw.setup.cancel()
		_ = cw.setup.conn.Close()
	}
}

// shutdownLocked closes the epoll set; watches still registered are
// forgotten (their connections end by their own means). The caller holds w.mu.
func (w *hangupWatcher) shutdownLocked() {
	w.closed, w.running = true, false
	_ = unix.Close(w.epfd)
	_ = unix.Close(w.wakefd)
	w.watches = nil
}

// close stops the watcher.
func (w *hangupWatcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.running {
		_, _ = unix.Write(w.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) // any count but 0 wakes
	}
}

// HangupWakeups is how many times the hang-up watcher has woken (tests
// check that nothing spins).
func (s *Server) HangupWakeups() uint64 { return s.hangups.wakeups.Load() }
