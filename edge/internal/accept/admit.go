package accept

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// refuseOverLimit answers conn, over a limit, and closes it: a stream gets
// a refusal (200, a comment, a retry) its EventSource comes back from,
// anything else a 503; with too many being answered already, nothing.
func (s *Server) refuseOverLimit(conn net.Conn, srv *http.Server, why reason.Reason) {
	label := why.Label()
	s.cfg.Metrics.ConnectionsRefused.WithLabelValues(label).Inc()
	ip, _ := tcpAddr(conn.RemoteAddr())
	s.logOverLimit(why, conn.RemoteAddr().String(), ip)
	l := s.limiter
	if l.refusing.Add(1) > maxRefusing {
		l.refusing.Add(-1)
		_ = conn.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		s.answerOverLimit(conn, srv, why)
	}()
}

func (s *Server) answerOverLimit(conn net.Conn, srv *http.Server, why reason.Reason) {
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
	if err == nil && req.ProtoMajor == 1 && req.Method == http.MethodGet && s.handles(srv, req) {
		s.refuseConn(conn, req, why)
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	write503(conn, why)
	_ = conn.Close()
}

// write503 writes a plain 503 with why, for what is not a stream.
func write503(conn net.Conn, why reason.Reason) {
	body := why.String() + "\n"
	_, _ = io.WriteString(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"+body)
}

// ForwardedPeer is the trusted proxy r came from, or false (also when
// addresses are not capped).
func (s *Server) ForwardedPeer(r *http.Request) (netip.Addr, bool) {
	l := s.limiter
	if len(l.trusted) == 0 || l.perIP <= 0 {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false // not TCP: no cap per address
	}
	peer := ap.Addr().Unmap().WithZone("")
	return peer, l.isTrusted(peer)
}

// ForwardedClient is the client address of a request with header h from
// peer, a trusted proxy (see connLimiter.forwardedClient).
func (s *Server) ForwardedClient(peer netip.Addr, h http.Header) netip.Addr {
	return s.limiter.forwardedClient(peer, h)
}

// refuseForwardedEarly refuses a request that came through a trusted proxy
// for a client address already at its cap, before it waits in the setup
// queue, and reports whether it did; a stream's own count is taken by
// AdmitStream.
func (s *Server) refuseForwardedEarly(conn net.Conn, r *http.Request) bool {
	peer, ok := s.ForwardedPeer(r)
	if !ok {
		return false
	}
	l := s.limiter
	client := l.forwardedClient(peer, r.Header)
	l.mu.Lock()
	over := l.byAddr[addrKey(client)] >= l.perIP
	l.mu.Unlock()
	if over {
		s.refusedOverCap(reason.MaxConnectionsPer, r.RemoteAddr, client)
		s.refuseConn(conn, r, reason.MaxConnectionsPer)
	}
	return over
}

// refusedOverCap counts and logs a stream refused over a cap.
func (s *Server) refusedOverCap(why reason.Reason, remote string, client netip.Addr) {
	s.cfg.Metrics.ConnectionsRefused.WithLabelValues(why.Label()).Inc()
	s.logOverLimit(why, remote, client)
}

// AdmitStream counts a stream against the caps until release, or returns
// the reason it is over one (Unknown: admitted). A stream through a
// trusted proxy counts against its client's address (X-Forwarded-For); an
// HTTP/2 stream counts as a connection does, in the total and against its
// address (one HTTP/2 connection must not carry what MaxConnectionsPerIP
// refuses to many), besides its connection. An HTTP/1 stream from any
// other peer is its connection, counted at accept: release is nil. A
// refusal is counted and logged; the caller answers it.
func (s *Server) AdmitStream(r *http.Request) (release func(), refusal reason.Reason) {
	l := s.limiter
	h2 := r.ProtoMajor >= 2
	var client netip.Addr
	keyed := false
	if peer, ok := s.ForwardedPeer(r); ok {
		client, keyed = l.forwardedClient(peer, r.Header), true
		if !h2 {
			release, ok := l.acquireForwarded(client)
			if !ok {
				s.refusedOverCap(reason.MaxConnectionsPer, r.RemoteAddr, client)
				return nil, reason.MaxConnectionsPer
			}
			return release, reason.Unknown
		}
	} else if !h2 {
		return nil, reason.Unknown
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		client = ap.Addr().Unmap().WithZone("")
		keyed = l.perIP > 0 && !l.isTrusted(client)
	}
	var key netip.Prefix
	if keyed {
		key = addrKey(client)
	}
	release, refusal = l.take(key, keyed, h2)
	if refusal != reason.Unknown {
		s.refusedOverCap(refusal, r.RemoteAddr, client)
	}
	return release, refusal
}

// logOverLimit logs (rate-limited) a connection or stream refused over a
// cap. At the per-address cap it names the likely cause: a proxy or load
// balancer not in sse.trustedProxies makes all its clients one address.
func (s *Server) logOverLimit(why reason.Reason, remote string, client netip.Addr) {
	label := why.Label()
	if why == reason.MaxConnectionsPer {
		args := []any{"reason", label, "remote", remote}
		if client.IsValid() {
			args = append(args, "client", client.String())
		}
		args = append(args, "cap", s.limiter.perIP, "hint", hintTrustedProxies)
		s.cfg.Log.Warn("address at its connection cap", args...)
		return
	}
	s.cfg.Log.Warn("connection over limit", "reason", label, "remote", remote)
}

// hintTrustedProxies is logged with a refusal at an address's cap.
const hintTrustedProxies = "if this address is a proxy or load balancer in front of the edge, list it in sse.trustedProxies so that each client behind it counts on its own (X-Forwarded-For)"

// ClientKey is the address r counts against in the setup queue's shares:
// its forwarded client's behind a trusted proxy (whether or not addresses
// are capped), else its peer's; the zero key (not valid) for a peer that
// is not TCP.
func (s *Server) ClientKey(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{}
	}
	ip := ap.Addr().Unmap().WithZone("")
	if l := s.limiter; l.isTrusted(ip) {
		ip = l.forwardedClient(ip, r.Header)
	}
	return addrKey(ip)
}

// AddrKey is the per-address key of ip: itself for IPv4, its /64 for IPv6.
func AddrKey(ip netip.Addr) netip.Prefix { return addrKey(ip) }

// refusePartial answers a connection whose header is refused more memory,
// with what it sent so far: a stream (its complete lines so far make a GET
// that accepts text/event-stream, or carries a long Last-Event-ID) gets a
// refusal it comes back from, anything else a 503; then it is closed.
func (s *Server) refusePartial(conn net.Conn, buffered []byte) {
	why := reason.HeaderMemory
	s.cfg.Metrics.ConnectionsRefused.WithLabelValues(why.Label()).Inc()
	ip, _ := tcpAddr(conn.RemoteAddr())
	s.cfg.Log.Warn("request header refused memory", "reason", why.Label(), "remote", conn.RemoteAddr().String(), "client", ip.String(),
		"edgeBudget", MaxHeaderMemory, "addressBudget", MaxHeaderMemoryPerAddress)
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if i := bytes.LastIndexByte(buffered, '\n'); i >= 0 {
		head := append(bytes.Clone(buffered[:i+1]), "\r\n"...)
		if req, err := parseRequest(head); err == nil && req.Method == http.MethodGet &&
			(strings.Contains(req.Header.Get("Accept"), "text/event-stream") || longHeaderBytes(buffered) > 0) {
			rw := newRawResponse(conn, req)
			s.CORSHeaders(rw.Header(), req)
			s.Refuse(rw, why)
			closeAfterAnswer(conn)
			return
		}
	}
	write503(conn, why)
	closeAfterAnswer(conn)
}
