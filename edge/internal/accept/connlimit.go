// Connection limits (issue 11): a cap on the connections Serve holds, below
// the open-file limit, so that at the cap a new stream still gets a
// browser-safe refusal and the admin listener, NATS and logs still get a
// file; and a cap per client address, so that one address cannot take them all.

package accept

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// maxRefusing bounds the connections over a limit being answered at once
// (each may take refusalReadTimeout to send its request); past it they are
// closed unanswered, so that a flood cannot use up the files the cap keeps.
const maxRefusing = 128

// refusalReadTimeout bounds the wait for the request of a connection over a
// limit: a browser sends it at once; a slowloris client gets no more.
const refusalReadTimeout = time.Second

// DefaultMaxConnections is the edge's default connection cap: the
// open-file limit less a tenth of it, and at least 256, kept for the admin
// listener, NATS, refusals and logs.
func DefaultMaxConnections() int {
	limit, ok := OpenFileLimit()
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
	max, perIP int            // perIP 0 or less: no cap per address
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

// acquire counts a connection from remote, or returns the reason it is
// over a limit (Unknown: counted).
func (l *connLimiter) acquire(remote net.Addr) (release func(), refusal reason.Reason) {
	ip, keyed := tcpAddr(remote)
	keyed = keyed && l.perIP > 0 && !l.isTrusted(ip) // a proxy's connections carry many clients
	var key netip.Prefix
	if keyed {
		key = addrKey(ip)
	}
	return l.take(key, keyed, true)
}

// take counts one more connection or stream: in the total when total is
// set, against key's cap when keyed; or returns the reason it is over a
// limit (Unknown: counted).
func (l *connLimiter) take(key netip.Prefix, keyed, total bool) (release func(), refusal reason.Reason) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if total && l.total >= l.max {
		return nil, reason.MaxConnections
	}
	if keyed && l.byAddr[key] >= l.perIP {
		return nil, reason.MaxConnectionsPer
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
	}, reason.Unknown
}

// acquireForwarded counts a stream that came through a trusted proxy
// against the cap of its client's address ip (its connection is in the
// total already); false when that address is at the cap.
func (l *connLimiter) acquireForwarded(ip netip.Addr) (release func(), ok bool) {
	if l.perIP <= 0 {
		return func() {}, true
	}
	release, refusal := l.take(addrKey(ip), true, false)
	return release, refusal == reason.Unknown
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

// Counted is conn counted until its first Close, which calls release: a
// stream hijacked with a count of its own (AdmitStream) keeps it while its
// connection lives.
func Counted(conn net.Conn, release func()) net.Conn {
	return &countedConn{Conn: conn, release: release}
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
