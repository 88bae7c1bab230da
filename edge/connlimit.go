// Connection limits (issue 11): a cap on the connections Serve holds, below
// the open-file limit, so that at the cap a new stream still gets a
// browser-safe refusal and the admin listener, NATS and logs still get a
// file; and a cap per client address, so that one address cannot take them all.

package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
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
// and per client address (an IPv4 address, or an IPv6 /64: one host's). A
// connection from a trusted proxy counts in the total only; each stream
// through it counts against its forwarded client address instead
// (acquireForwarded).
type connLimiter struct {
	max, perIP int            // perIP Off: no cap per address
	trusted    []netip.Prefix // Config.TrustedProxies
	headers    headerMemory   // header buffers past the small one (growHeader)

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]int

	refusing atomic.Int64
}

func newConnLimiter(max, perIP int, trusted []netip.Prefix) *connLimiter {
	return &connLimiter{max: max, perIP: perIP, trusted: trusted, byAddr: make(map[netip.Prefix]int), headers: headerMemory{trusted: trusted}}
}

// tcpAddr is the IP address of a remote address; false for one that is not
// TCP (a Unix socket: no cap per address).
func tcpAddr(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return ta.AddrPort().Addr().Unmap().WithZone(""), true
}

// addrKey is the per-address key of ip: itself for IPv4, its /64 for IPv6.
func addrKey(ip netip.Addr) netip.Prefix {
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64) // cannot fail for a valid IPv6 address
	return p
}

// isTrusted reports whether ip is one of the trusted proxies.
func (l *connLimiter) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// acquire counts a connection from remote, or returns the reason it is over a limit.
func (l *connLimiter) acquire(remote net.Addr) (release func(), reason string) {
	ip, keyed := tcpAddr(remote)
	keyed = keyed && l.perIP != Off && !l.isTrusted(ip) // a proxy's connections carry many clients
	var key netip.Prefix
	if keyed {
		key = addrKey(ip)
	}
	return l.take(key, keyed, true)
}

// take counts one more connection or stream: in the total when total is
// set, against key's cap when keyed; or returns the reason it is over a limit.
func (l *connLimiter) take(key netip.Prefix, keyed, total bool) (release func(), reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total && l.total >= l.max {
		return nil, refuseMaxConnections
	}
	if keyed && l.byAddr[key] >= l.perIP {
		return nil, refuseMaxConnectionsPerIP
	}
	if total {
		l.total++
	}
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
		if total {
			l.total--
		}
		if keyed {
			l.releaseKeyLocked(key)
		}
	}, ""
}

// acquireForwarded counts a stream that came through a trusted proxy
// against the cap of its client's address ip (its connection is in the
// total already); false when that address is at the cap.
func (l *connLimiter) acquireForwarded(ip netip.Addr) (release func(), ok bool) {
	if l.perIP == Off {
		return func() {}, true
	}
	release, reason := l.take(addrKey(ip), true, false)
	return release, reason == ""
}

func (l *connLimiter) releaseKeyLocked(key netip.Prefix) {
	if n := l.byAddr[key] - 1; n > 0 {
		l.byAddr[key] = n
	} else {
		delete(l.byAddr, key)
	}
}

// forwardedClient is the client address of a request from peer, a trusted
// proxy: the rightmost X-Forwarded-For address that is not itself a
// trusted proxy (the leftmost when all are). A missing header is the
// proxy's own request, and a malformed one (an entry that is not an
// address, met before the client's) cannot be told apart from a forgery:
// both count against peer.
func (l *connLimiter) forwardedClient(peer netip.Addr, h http.Header) netip.Addr {
	values := h.Values("X-Forwarded-For")
	var leftmost netip.Addr
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for more := true; more; {
			field := rest
			if j := strings.LastIndexByte(rest, ','); j >= 0 {
				field, rest = rest[j+1:], rest[:j]
			} else {
				more = false
			}
			ip, ok := parseForwardedAddr(strings.TrimSpace(field))
			if !ok {
				return peer
			}
			if !l.isTrusted(ip) {
				return ip
			}
			leftmost = ip
		}
	}
	if leftmost.IsValid() {
		return leftmost
	}
	return peer
}

// parseForwardedAddr reads one X-Forwarded-For entry: an address, or an
// address and port as some proxies write them ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwardedAddr(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		ap, perr := netip.ParseAddrPort(s)
		if perr != nil {
			return netip.Addr{}, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone(""), true
}

func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// countedConn is a connection counted by a connLimiter until its first Close,
// wherever that happens: in Serve, in net/http, or after a hijack (a
// stream through a trusted proxy: counted again, against its client).
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
	ip, _ := tcpAddr(conn.RemoteAddr())
	e.logOverLimit(label, conn.RemoteAddr().String(), ip)
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

// forwardedPeer is the trusted proxy r came from, or false.
func (e *Edge) forwardedPeer(r *http.Request) (netip.Addr, bool) {
	l := e.limiter
	if len(l.trusted) == 0 || l.perIP == Off {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false // not TCP: no cap per address
	}
	peer := ap.Addr().Unmap().WithZone("")
	return peer, l.isTrusted(peer)
}

// refuseForwardedEarly refuses a request that came through a trusted proxy
// for a client address already at its cap, before it waits in the setup
// queue, and reports whether it did; a stream's own count is taken by
// admitForwarded.
func (e *Edge) refuseForwardedEarly(conn net.Conn, r *http.Request) bool {
	peer, ok := e.forwardedPeer(r)
	if !ok {
		return false
	}
	l := e.limiter
	client := l.forwardedClient(peer, r.Header)
	l.mu.Lock()
	over := l.byAddr[addrKey(client)] >= l.perIP
	l.mu.Unlock()
	if over {
		e.refusedForwarded(r, client)
		e.refuseConn(conn, r, refuseMaxConnectionsPerIP)
	}
	return over
}

// refusedForwarded counts and logs a stream refused at its forwarded
// client address's cap.
func (e *Edge) refusedForwarded(r *http.Request, client netip.Addr) {
	label := refusalLabel(refuseMaxConnectionsPerIP)
	e.metrics.connectionsRefused.WithLabelValues(label).Inc()
	e.logOverLimit(label, r.RemoteAddr, client)
}

// admitForwarded counts a stream that came through a trusted proxy against
// its client's address (forwardedClient) until release; a stream from any
// other peer gets a nil release: its connection was counted at accept, and
// its X-Forwarded-For is never read. ok is false over the cap.
func (e *Edge) admitForwarded(r *http.Request) (release func(), ok bool) {
	peer, ok := e.forwardedPeer(r)
	if !ok {
		return nil, true
	}
	client := e.limiter.forwardedClient(peer, r.Header)
	release, ok = e.limiter.acquireForwarded(client)
	if !ok {
		e.refusedForwarded(r, client)
	}
	return release, ok
}

// admitStream counts a stream against the caps until release, or returns
// the reason it is over one. A stream through a trusted proxy counts
// against its client's address (admitForwarded); an HTTP/2 stream counts
// as a connection does, in the total and against its address (one HTTP/2
// connection must not carry what MaxConnectionsPerIP refuses to many),
// besides its connection. An HTTP/1 stream from any other peer is its
// connection, counted at accept: release is nil.
func (e *Edge) admitStream(r *http.Request) (release func(), reason string) {
	l := e.limiter
	h2 := r.ProtoMajor >= 2
	var client netip.Addr
	keyed := false
	if peer, ok := e.forwardedPeer(r); ok {
		if !h2 {
			if release, ok := e.admitForwarded(r); ok {
				return release, ""
			}
			return nil, refuseMaxConnectionsPerIP
		}
		client, keyed = l.forwardedClient(peer, r.Header), true
	} else if !h2 {
		return nil, ""
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap().WithZone("")
		keyed = l.perIP != Off && !l.isTrusted(client)
	}
	var key netip.Prefix
	if keyed {
		key = addrKey(client)
	}
	release, reason = l.take(key, keyed, h2)
	if reason != "" {
		label := refusalLabel(reason)
		e.metrics.connectionsRefused.WithLabelValues(label).Inc()
		e.logOverLimit(label, r.RemoteAddr, client)
	}
	return release, reason
}

// logOverLimit logs (rate-limited) a connection or stream refused over a
// cap. At the per-address cap it names the likely cause: a proxy or load
// balancer not in sse.trustedProxies makes all its clients one address.
func (e *Edge) logOverLimit(label, remote string, client netip.Addr) {
	if label == refusalLabel(refuseMaxConnectionsPerIP) {
		args := []any{"reason", label, "remote", remote}
		if client.IsValid() {
			args = append(args, "client", client.String())
		}
		args = append(args, "cap", e.limiter.perIP, "hint", hintTrustedProxies)
		e.log.Warn("address at its connection cap", args...)
		return
	}
	e.log.Warn("connection over limit", "reason", label, "remote", remote)
}

// hintTrustedProxies is logged with a refusal at an address's cap.
const hintTrustedProxies = "if this address is a proxy or load balancer in front of the edge, list it in sse.trustedProxies so that each client behind it counts on its own (X-Forwarded-For)"

// clientKey is the address r counts against in the setup queue's shares:
// its forwarded client's behind a trusted proxy (whether or not addresses
// are capped), else its peer's; the zero key for a peer that is not TCP.
func (e *Edge) clientKey(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if l := e.limiter; l.isTrusted(ip) {
		ip = l.forwardedClient(ip, r.Header)
	}
	return addrKey(ip)
}

// Header memory: a request header past the small pooled buffer is read on
// in a buffer of OrdinaryHeaderBytes, and one with a long Last-Event-ID in
// one of MaxHeaderBytes, held until the header is complete or its timeout
// passes. Those buffers are bounded per edge and per client address, so
// that connections sending headers slowly cannot take the edge's memory.
const (
	// MaxHeaderMemory bounds the header buffers held at once by an edge
	// (about 117 long ones, or 2,048 of OrdinaryHeaderBytes).
	MaxHeaderMemory = 32 << 20
	// MaxHeaderMemoryPerAddress bounds those of one client address (its
	// peer's: the header is not read yet), a trusted proxy's aside: three
	// long ones, or 64 of OrdinaryHeaderBytes.
	MaxHeaderMemoryPerAddress = 1 << 20
)

// headerMemory counts the header buffers held, in all and per address.
type headerMemory struct {
	trusted []netip.Prefix

	mu     sync.Mutex
	total  int
	byAddr map[netip.Prefix]int
}

// take reserves n bytes for a header from remote; false past a budget.
func (h *headerMemory) take(remote net.Addr, n int) (release func(), ok bool) {
	ip, keyed := tcpAddr(remote)
	var key netip.Prefix
	if keyed {
		for _, p := range h.trusted {
			if p.Contains(ip) {
				keyed = false // a proxy's connections carry many clients
			}
		}
		key = addrKey(ip)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total+n > MaxHeaderMemory || keyed && h.byAddr[key]+n > MaxHeaderMemoryPerAddress {
		return nil, false
	}
	h.total += n
	if keyed {
		if h.byAddr == nil {
			h.byAddr = make(map[netip.Prefix]int)
		}
		h.byAddr[key] += n
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.total -= n
			if keyed {
				if left := h.byAddr[key] - n; left > 0 {
					h.byAddr[key] = left
				} else {
					delete(h.byAddr, key)
				}
			}
		})
	}, true
}

// refusePartial answers a connection whose header is refused more memory,
// with what it sent so far: a stream (its complete lines so far make a GET
// that accepts text/event-stream, or carries a long Last-Event-ID) gets a
// refusal it comes back from, anything else a 503; then it is closed.
func (e *Edge) refusePartial(conn net.Conn, buffered []byte) {
	label := refusalLabel(refuseHeaderMemory)
	e.metrics.connectionsRefused.WithLabelValues(label).Inc()
	ip, _ := tcpAddr(conn.RemoteAddr())
	e.log.Warn("request header refused memory", "reason", label, "remote", conn.RemoteAddr().String(), "client", ip.String(),
		"edgeBudget", MaxHeaderMemory, "addressBudget", MaxHeaderMemoryPerAddress)
	_ = conn.SetWriteDeadline(time.Now().Add(e.cfg.WriteTimeout))
	if i := bytes.LastIndexByte(buffered, '\n'); i >= 0 {
		head := append(bytes.Clone(buffered[:i+1]), "\r\n"...)
		if req, err := parseRequest(head); err == nil && req.Method == http.MethodGet &&
			(strings.Contains(req.Header.Get("Accept"), "text/event-stream") || longHeaderBytes(buffered) > 0) {
			rw := newRawResponse(conn, req)
			e.corsHeaders(rw.Header(), req)
			e.refuse(rw, refuseHeaderMemory)
			closeAfterAnswer(conn)
			return
		}
	}
	body := refuseHeaderMemory + "\n"
	_, _ = io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"+body)
	closeAfterAnswer(conn)
}
