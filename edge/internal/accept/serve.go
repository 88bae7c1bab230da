package accept

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// Serve accepts connections on ln until it fails or is closed. A
// connection whose first request is an HTTP/1.x request that srv would give
// to Config.Handler (srv.Handler is it, or a ServeMux that picks it) is
// read here without net/http and waits in the setup queue, with no
// goroutine, for one of SetupConcurrency workers, which calls the Handler
// with a raw response; nothing but the connection is kept once the stream
// is live. Every other connection (metrics, health, HTTP/2, a body, a JSON
// read) is handed to srv as it arrived. srv must not serve elsewhere; shut
// it down after Serve returns. The queue is shared by every Serve and by
// the streams on net/http's goroutines (AwaitSetup): Close, not Serve's
// return, ends it.
//
// For TLS, ln is a plain listener and srv.TLSConfig the configuration:
// each connection is counted against the caps, then served over TLS, whose
// handshake runs under the header timeout; a connection that negotiates
// "h2" goes to srv as the *tls.Conn itself, which net/http serves as HTTP/2
// when srv.TLSConfig.NextProtos lists "h2"; any other goes on as above,
// over TLS.
func (s *Server) Serve(ln net.Listener, srv *http.Server) error {
	// Read before srv.Serve runs: net/http sets a TLSConfig of its own
	// (for HTTP/2) on a server that has none.
	tlsConfig := srv.TLSConfig
	handoff := &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	go func() { _ = srv.Serve(handoff) }()
	defer handoff.Close()
	headerTimeout := srv.ReadHeaderTimeout
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	queue := s.setups() // shared with the streams on net/http's goroutines
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors or a transient failure: like net/http, wait and retry.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.cfg.Log.Warn("accept", "err", err, "retry in", backoff)
				s.cfg.Metrics.AcceptErrors.Inc()
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("edge accept: %w", err)
		}
		backoff = 0
		release, refusal := s.limiter.acquire(conn.RemoteAddr())
		if refusal != reason.Unknown {
			if tlsConfig != nil {
				conn = tls.Server(conn, tlsConfig) // the refusal is read over TLS
			}
			s.refuseOverLimit(conn, srv, refusal)
			continue
		}
		conn = &countedConn{Conn: conn, release: release}
		if tlsConfig != nil {
			// Counted below TLS, so the count is the TCP connection's; the
			// hang-up watch reads its socket through NetConn.
			conn = tls.Server(conn, tlsConfig)
		}
		go s.serveConn(conn, srv, handoff, headerTimeout, queue)
	}
}

var (
	// headerReaders read a connection's header, and parse it from a copy;
	// a header that does not fit goes on in a large reader.
	headerReaders       = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headerPeekBytes) }}
	mediumHeaderReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, OrdinaryHeaderBytes) }}
	largeHeaderReaders  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, MaxHeaderBytes) }}
	bytesReaders        = sync.Pool{New: func() any { return new(bytes.Reader) }}
)

// headerPeekBytes is the header most requests fit in, read with a small
// pooled buffer; a larger one (big cookies, a long Last-Event-ID) is read
// on in a buffer of MaxHeaderBytes, and takes the same path: the setup
// queue and the hang-up watch.
const headerPeekBytes = 4096

// MaxHeaderBytes bounds a request header; a larger one is answered 431.
// Room for the longest Last-Event-ID the codec reads, and
// OrdinaryHeaderBytes besides.
const MaxHeaderBytes = proto.MaxEventIDLen + OrdinaryHeaderBytes

// OrdinaryHeaderBytes bounds a request header less the values of its
// Last-Event-ID and of its lastEventId query parameter: only those get the
// long budget. A header past it is answered 431 as soon as that is known.
const OrdinaryHeaderBytes = 16 << 10

// growHeader goes on reading conn's header in a reader from pool, of size
// bytes, after what br holds, once that memory is granted from the edge's
// and the client address's budgets (headerMemory); release gives back br
// and what it was granted. Not granted, the connection is answered (a
// refusal a stream comes back from) and closed, and ok is false.
func (s *Server) growHeader(conn net.Conn, br *bufio.Reader, release func(), pool *sync.Pool, size int) (*bufio.Reader, func(), bool) {
	buffered, _ := br.Peek(br.Buffered())
	giveBack, ok := s.limiter.headers.take(conn.RemoteAddr(), size)
	if !ok {
		s.refusePartial(conn, buffered)
		release()
		return nil, nil, false
	}
	start := bytesReaders.Get().(*bytes.Reader)
	start.Reset(bytes.Clone(buffered))
	release()
	next := pool.Get().(*bufio.Reader)
	next.Reset(io.MultiReader(start, conn))
	return next, func() {
		next.Reset(nil)
		start.Reset(nil)
		pool.Put(next)
		bytesReaders.Put(start)
		giveBack()
	}, true
}

const tooLargeBody = "request header too large\n"

var tooLargeAnswer = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
	strconv.Itoa(len(tooLargeBody)) + "\r\nConnection: close\r\n\r\n" + tooLargeBody

// setupRequest is a stream waiting for a setup worker: a request read by
// serveConn, or a stream on net/http's goroutine (direct).
type setupRequest struct {
	key    netip.Prefix // its client's address (clientKey): the queue is fair between them
	conn   net.Conn
	req    *http.Request
	queued time.Time
	watch  *Watch       // hang-up watch (hangup.go), if any
	direct *directSetup // set for a stream on net/http's goroutine, which has none of the above
}

// serveConn reads the first request's header and queues it for a setup
// worker, or hands the connection over to srv. It ends there: a connection
// waiting for its state part costs no goroutine (docs/architecture.md rule 8: new
// connections are admitted at a bounded rate).
func (s *Server) serveConn(conn net.Conn, srv *http.Server, handoff *handoffListener, headerTimeout time.Duration, queue *setupQueue) {
	if tc, ok := conn.(*tls.Conn); ok && !s.handshake(tc, handoff, headerTimeout) {
		return
	}
	br := headerReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	release := func() {
		br.Reset(nil)
		headerReaders.Put(br)
	}
	_ = conn.SetReadDeadline(time.Now().Add(headerTimeout))
	head, err := peekHeader(br)
	if errors.Is(err, errHeaderTooLarge) {
		// Go on in a buffer of OrdinaryHeaderBytes, then, only for a long
		// Last-Event-ID (or lastEventId), in one of MaxHeaderBytes: each
		// taken from the edge's and the address's budgets of header memory.
		var ok bool
		if br, release, ok = s.growHeader(conn, br, release, &mediumHeaderReaders, OrdinaryHeaderBytes); !ok {
			return
		}
		head, err = peekHeader(br)
		if errors.Is(err, errHeaderTooLarge) {
			if buffered, _ := br.Peek(br.Buffered()); longHeaderBytes(buffered) > 0 {
				if br, release, ok = s.growHeader(conn, br, release, &largeHeaderReaders, MaxHeaderBytes); !ok {
					return
				}
				head, err = peekHeader(br)
			}
		}
	}
	if err != nil && !errors.Is(err, errHeaderTooLarge) && br.Buffered() > 0 {
		// Part of a header, then silence or the end: net/http answers what
		// it makes of those bytes (a partial request line is a 400) and then
		// meets the same end, without waiting a header timeout of its own.
		handOverEnded(conn, br, handoff, err)
		release()
		return
	}
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			s.cfg.Metrics.BadRequests.Inc()
			_, _ = io.WriteString(conn, tooLargeAnswer)
			release()
			closeAfterAnswer(conn)
			return
		}
		_ = conn.Close() // gone, or silent past the header timeout
		release()
		return
	}
	req, err := parseRequest(head)
	if err == nil {
		if status, reason := outOfBounds(req, head); status != 0 {
			s.cfg.Metrics.BadRequests.Inc()
			answerAndClose(conn, status, reason)
			release()
			return
		}
	}
	if err != nil || req.ProtoMajor != 1 || refusedByNetHTTP(req, head) || !s.servesRequest(srv, req) {
		handOver(conn, br, handoff)
		release()
		return
	}
	_, _ = br.Discard(len(head))
	release() // an SSE client sends nothing after its GET
	_ = conn.SetReadDeadline(time.Time{})
	req.RemoteAddr = conn.RemoteAddr().String()
	if s.refuseForwardedEarly(conn, req) {
		return
	}

	watch := s.watchConn(conn)
	key := s.ClientKey(req)
	if refusal := queue.push(setupRequest{key: key, conn: conn, req: req, queued: time.Now(), watch: watch}); refusal != reason.Unknown {
		watch.Stop()
		s.setupRefused(refusal, key)
		s.refuseConn(conn, req, refusal)
	}
}

// handshake runs a TLS handshake under the header timeout. It reports
// whether serveConn goes on with the connection: not when the handshake
// failed (the connection is closed) or negotiated HTTP/2 (it is handed to
// net/http as the *tls.Conn, which its HTTP/2 server needs).
func (s *Server) handshake(tc *tls.Conn, handoff *handoffListener, headerTimeout time.Duration) bool {
	_ = tc.SetDeadline(time.Now().Add(headerTimeout))
	if err := tc.Handshake(); err != nil {
		s.cfg.Metrics.TLSHandshakeErrors.Inc()
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			// Like net/http: a plain HTTP request to the TLS port gets a reason.
			_, _ = io.WriteString(re.Conn, plainToTLSAnswer)
			_ = re.Conn.Close()
		}
		_ = tc.Close()
		s.cfg.TLSLog.Warn("tls handshake", "remote", tc.RemoteAddr().String(), "err", err)
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if !handoff.offer(tc) {
			_ = tc.Close()
		}
		return false
	}
	return true
}

const plainToTLSBody = "client sent an HTTP request to an HTTPS server\n"

var plainToTLSAnswer = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
	strconv.Itoa(len(plainToTLSBody)) + "\r\nConnection: close\r\n\r\n" + plainToTLSBody

// looksLikeHTTP reports whether a TLS record header is the start of an
// HTTP/1.x request.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// serveRaw serves req under ctx, which the caller cancels once it returns;
// park gives its setup worker back (the stream goes on without it).
func (s *Server) serveRaw(ctx context.Context, conn net.Conn, req *http.Request, park func()) {
	req = req.WithContext(ctx)
	req.RemoteAddr = conn.RemoteAddr().String()
	rw := newRawResponse(conn, req)
	rw.park = park
	s.cfg.Handler.ServeHTTP(rw, req)
	if !rw.hijacked {
		_ = conn.Close()
	}
}

var errHeaderTooLarge = errors.New("request header larger than the peek buffer")

// peekHeader returns the buffered bytes of a request header up to and
// including its blank line, without consuming them.
func peekHeader(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n = br.Buffered() + 1 {
		if n > br.Size() {
			return nil, errHeaderTooLarge
		}
		_, err := br.Peek(n) // waits for one more byte than was buffered
		buf, _ := br.Peek(br.Buffered())
		if n := headerEndIndex(buf); n >= 0 {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// parseRequest parses a complete request header with net/http's parser.
func parseRequest(head []byte) (*http.Request, error) {
	r := bytesReaders.Get().(*bytes.Reader)
	r.Reset(head)
	hr := headerReaders.Get().(*bufio.Reader)
	hr.Reset(r)
	req, err := http.ReadRequest(hr)
	hr.Reset(nil)
	headerReaders.Put(hr)
	r.Reset(nil)
	bytesReaders.Put(r)
	return req, err
}

// servesRequest reports whether srv would give req to the edge, with no
// body to read.
func (s *Server) servesRequest(srv *http.Server, req *http.Request) bool {
	if s.cfg.NoHijack || req.ContentLength != 0 || len(req.TransferEncoding) > 0 || req.Header.Get("Upgrade") != "" ||
		req.Method == http.MethodPost || req.Method == http.MethodOptions || // renewals and preflights do not wait behind state parts
		s.cfg.Bypass != nil && s.cfg.Bypass(req) { // nor do JSON reads, answered like any request (keep-alive, Content-Length)
		return false
	}
	return s.handles(srv, req)
}

// handles reports whether srv gives req to the edge (Config.Handler).
func (s *Server) handles(srv *http.Server, req *http.Request) bool {
	if srv.Handler == s.cfg.Handler {
		return true
	}
	if mux, ok := srv.Handler.(*http.ServeMux); ok {
		picked, _ := mux.Handler(req)
		return picked == s.cfg.Handler
	}
	return false
}

// handOver gives conn to srv, with the bytes already read from it first.
func handOver(conn net.Conn, br *bufio.Reader, handoff *handoffListener) {
	handOverEnded(conn, br, handoff, nil)
}

// handOverEnded hands conn over with what br buffered; when end is not nil,
// reads past those bytes return end rather than wait on conn.
func handOverEnded(conn net.Conn, br *bufio.Reader, handoff *handoffListener, end error) {
	var buffered []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		buffered = bytes.Clone(b)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if !handoff.offer(&prefixedConn{Conn: conn, prefix: buffered, end: end}) {
		_ = conn.Close()
	}
}

// prefixedConn is a connection whose first bytes were already read.
type prefixedConn struct {
	net.Conn
	prefix []byte
	end    error // returned once prefix is read, when not nil
}

// SyscallConn is the connection's own: a stream hijacked from net/http is
// then written and watched for hang-up as one accepted directly.
func (c *prefixedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a syscall.Conn")
	}
	return sc.SyscallConn()
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	if c.end != nil {
		return 0, c.end
	}
	return c.Conn.Read(p)
}

// handoffListener is the listener srv serves: the connections Serve hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *handoffListener) offer(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// rawResponse is the http.ResponseWriter of a request served without
// net/http: unbuffered, delimited by closing the connection. Hijack hands
// the connection to the edge (with no bufio.ReadWriter: the edge reads
// nothing more).
type rawResponse struct {
	conn        net.Conn
	header      http.Header
	proto       string
	head        bool // a HEAD request: no body
	wroteHeader bool
	hijacked    bool
	park        func() // gives the setup worker back
}

// Park returns the release of the setup worker serving w, if w is the raw
// response of a request Serve read: the worker goes back to the queue
// (another takes its place) while the stream goes on. onWorker is false
// for any other ResponseWriter (net/http's, whose stream waits in
// AwaitSetup instead).
func Park(w http.ResponseWriter) (park func(), onWorker bool) {
	rw, ok := w.(*rawResponse)
	if !ok {
		return nil, false
	}
	return rw.park, true
}

func newRawResponse(conn net.Conn, req *http.Request) *rawResponse {
	return &rawResponse{conn: conn, header: make(http.Header, 4), proto: StatusLineProto(req), head: req.Method == http.MethodHead}
}

func (w *rawResponse) Header() http.Header { return w.header }

func (w *rawResponse) WriteHeader(status int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	var b bytes.Buffer
	b.WriteString(w.proto + " " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	w.header.Del("Content-Length")
	w.header.Set("Connection", "close")
	_ = w.header.Write(&b)
	b.WriteString("\r\n")
	_, _ = w.conn.Write(b.Bytes())
}

func (w *rawResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.head {
		return len(p), nil
	}
	return w.conn.Write(p)
}

func (w *rawResponse) Flush() {}

func (w *rawResponse) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

func (w *rawResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.conn, nil, nil
}

var _ http.ResponseWriter = (*rawResponse)(nil)
