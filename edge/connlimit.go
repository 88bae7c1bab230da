// Connection limits (issue 11): a cap on the connections Serve holds, below
// the open-file limit, so that at the cap a new stream still gets a
// browser-safe refusal and the admin listener, NATS and logs still get a
// file; and a cap per client address, so that one address cannot take them all.

package edge

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Refusal reasons of a connection over a limit.
const (
	refuseMaxConnections      = "edge at its connection limit"
	refuseMaxConnectionsPerIP = "too many connections from this address"
)

// maxRefusing bounds the connections over a limit being answered at once
// (each may take refusalReadTimeout to send its request); past it they are
// closed unanswered, so that a flood cannot use up the files the cap keeps.
const maxRefusing = 128

// refusalReadTimeout bounds the wait for the request of a connection over a
// limit: a browser sends it at once; a slowloris client gets no more.
const refusalReadTimeout = time.Second

// defaultMaxConnections is the cap when Config.MaxConnections is 0: the
// open-file limit less a tenth of it, and at least 256, kept for the admin
// listener, NATS, refusals and logs.
func defaultMaxConnections() int {
	limit, ok := openFileLimit()
	if !ok {
		return 10000
	}
	limit = min(limit, 1<<24) // RLIM_INFINITY and other unbounded limits
	headroom := max(limit/10, 256)
	if limit < 2*headroom {
		return int(max(limit/2, 1))
	}
	return int(limit - headroom)
}

// connLimiter counts Serve's connections from accept to close, in total
// and per client address (an IPv4 address, or an IPv6 /64: one host's).
type connLimiter struct {
	max, perIP int // perIP Off: no cap per address

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]int

	refusing atomic.Int64
}

func newConnLimiter(max, perIP int) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, byAddr: make(map[netip.Prefix]int)}
}

// addrKey is the per-address key of a remote address; false for one that
// is not TCP (a Unix socket: no cap per address).
func addrKey(a net.Addr) (netip.Prefix, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, false
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, err := ip.Prefix(64)
	return p, err == nil
}

// acquire counts a connection from remote, or returns the reason it is over a limit.
func (l *connLimiter) acquire(remote net.Addr) (release func(), reason string) {
	key, keyed := addrKey(remote)
	keyed = keyed && l.perIP != Off
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return nil, refuseMaxConnections
	}
	if keyed && l.byAddr[key] >= l.perIP {
		return nil, refuseMaxConnectionsPerIP
	}
	l.total++
	if keyed {
		l.byAddr[key]++
	}
	var once atomic.Bool
	return func() {
		if !once.CompareAndSwap(false, true) {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		if keyed {
			if n := l.byAddr[key] - 1; n > 0 {
				l.byAddr[key] = n
			} else {
				delete(l.byAddr, key)
			}
		}
	}, ""
}

func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// countedConn is a connection counted by a connLimiter until its first Close,
// wherever that happens: in Serve, in net/http, or after a hijack.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	c.release() // first: a client that sees the close may dial again at once
	return c.Conn.Close()
}

// SyscallConn is the connection's own, so that it is written and watched
// for hang-up as one accepted directly.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a syscall.Conn")
	}
	return sc.SyscallConn()
}

// CloseWrite lets net/http half-close before its lingering close.
func (c *countedConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("no CloseWrite")
	}
	return cw.CloseWrite()
}

// refuseOverLimit answers conn, over a limit, and closes it: a stream gets
// a refusal (200, a comment, a retry) its EventSource comes back from,
// anything else a 503; with too many being answered already, nothing.
func (e *Edge) refuseOverLimit(conn net.Conn, srv *http.Server, reason string) {
	label := refusalLabel(reason)
	e.metrics.connectionsRefused.WithLabelValues(label).Inc()
	e.log.Warn("connection over limit", "reason", label, "remote", conn.RemoteAddr().String())
	l := e.limiter
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = conn.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		e.answerOverLimit(conn, srv, reason)
	}()
}

func (e *Edge) answerOverLimit(conn net.Conn, srv *http.Server, reason string) {
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	defer func() {
		br.Reset(nil)
		headerReaders.Put(br)
	}()
	_ = conn.SetReadDeadline(time.Now().Add(refusalReadTimeout))
	head, err := peekHeader(br)
	if err != nil && br.Buffered() == 0 {
		_ = conn.Close() // gone or silent
		return
	}
	var req *http.Request
	if err == nil {
		req, err = parseRequest(head)
	}
	if err == nil && req.ProtoMajor == 1 && req.Method == http.MethodGet && e.handles(srv, req) {
		e.refuseConn(conn, req, reason)
		return
	}
	body := reason + "\n"
	_ = conn.SetWriteDeadline(time.Now().Add(e.cfg.WriteTimeout))
	_, _ = io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"+body)
	_ = conn.Close()
}
