//go:build linux

// Package sseload is a load client for SSE servers: many connections read by
// one epoll loop (no goroutine per connection, so the client is not the
// bottleneck), with per-partition sequence checks and a latency histogram.
// Records are expected to carry "p=<partition> seq=<n> ts=<unix nanos>" as
// their data, as Producer writes them.
package sseload

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// conn is one SSE client: a connection owned by the epoll loop and, when
// the client reconnects, what it carries from one connection to the next
// (its last id, its sequence positions), as an EventSource would.
type conn struct {
	fd      int
	partial []byte // the unfinished event carried between reads
	ready   bool   // saw event:ready on this connection
	lastSeq map[int]int64
	stalled bool // a slow client: never read again

	target   int           // index into Clients.targets of this connection
	lastID   []byte        // the last id: line seen, sent as Last-Event-ID on reconnect
	retry    time.Duration // the last retry: the server sent
	downAt   int64         // unix nanos when the last connection ended (0: never)
	due      int64         // unix nanos when a closed client dials again
	stateN   int64         // data events before ready on this connection
	stateSum int64         // sum of p<<40|seq over them
	reset    bool          // saw event:reset on this connection, before ready
	dialing  bool          // a non-blocking reconnect waits for its connect to finish
	tries    int           // targets tried in this round of reconnecting
	source   int           // index of its loopback source address (DialOptions.PerSource); -1: none
	status   []byte        // this connection's HTTP status and text ("200 OK"), once read
	comment  []byte        // the last comment line before ready on this connection

	// Compressed streams (DialOptions.AcceptEncoding; decode.go).
	bodyStarted bool    // the response header was read
	head        []byte  // the response header so far
	coding      string  // the response's Content-Encoding
	gz          *gunzip // decodes a gzip body
	zbuf        []byte  // an unfinished zstd frame
}

// fresh resets what belongs to one connection, for a new one.
func (cn *conn) fresh(fd int) {
	cn.fd, cn.ready, cn.reset, cn.partial, cn.stateN, cn.stateSum = fd, false, false, cn.partial[:0], 0, 0
	cn.status, cn.comment = cn.status[:0], cn.comment[:0]
	cn.bodyStarted, cn.head, cn.coding, cn.zbuf = false, cn.head[:0], "", cn.zbuf[:0]
}

// noteComment keeps the event's comment line, if it has one with text: a
// refused stream's reason.
func (cn *conn) noteComment(ev []byte) {
	if text, ok := field(ev, ":"); ok && len(bytes.TrimSpace(text)) > 0 {
		cn.comment = append(cn.comment[:0], bytes.TrimSpace(text)...)
	}
}

// refusal is why a stream ended before ready: that no response came (an
// edge past its limits with many refusals in flight closes the others
// unanswered); its HTTP status when not 200; else its last comment line
// (a refused edge stream is a comment with the reason, a retry, and its
// end); else that it ended.
func (cn *conn) refusal() string {
	switch {
	case len(cn.status) == 0:
		return "closed with no response"
	case !bytes.HasPrefix(cn.status, []byte("200 ")):
		return "HTTP " + string(cn.status)
	case len(cn.comment) > 0:
		return string(cn.comment)
	default:
		return "stream ended before ready"
	}
}

// target is one server the clients can connect to.
type target struct {
	sa   *unix.SockaddrInet4
	host string
	uri  string
}

// DialOptions describe a set of clients.
type DialOptions struct {
	// URLs are the servers (plain http, same path) a client may use: each
	// starts on the first; a reconnecting client whose server refuses the
	// connection tries the next, as a load balancer fails over.
	URLs    []string
	Clients int
	Stalled int // of Clients, never read (slow clients)
	// Reconnect makes a client whose stream ended connect again after the
	// server's retry: (RetryDefault before one was seen), with its last id
	// as Last-Event-ID, as an EventSource does.
	Reconnect    bool
	RetryDefault time.Duration
	// StateSum, when not 0, is the sum of p<<40|seq over the records a new
	// client's state part must hold (StateN of them): a client whose state
	// part matches is counted by ExactStates.
	StateN, StateSum int64
	// PerSource, when above 0, spreads the connections to a loopback target
	// over loopback source addresses, at most PerSource open on each: an
	// edge caps the connections of one client address
	// (sse.maxConnectionsPerIP), and on Linux every 127/8 address is
	// local. Set s of them is 127.s.0.2, 127.s.0.3, ...: each worker
	// process of a run takes its own set (SourceSet).
	PerSource int
	SourceSet int
	// AcceptEncoding, when set, is sent as the request's Accept-Encoding,
	// and a gzip or zstd response is decoded before its events are read.
	AcceptEncoding string
}

// maxSources bounds the source addresses of one set (127.s.0.2 to 127.s.255.255).
const maxSources = 1<<16 - 2

// Clients is a set of SSE connections, read by one epoll loop.
type Clients struct {
	epfd    int
	conns   map[int]*conn
	targets []target
	sa      *unix.SockaddrInet4 // targets[0], for churn
	opts    DialOptions
	down    []*conn // clients waiting to reconnect

	sources    []int // connections open per source address (DialOptions.PerSource)
	freeSource int   // no source address below this index has room

	churnPerTick atomic.Int64 // connections replaced every churnTick
	reconnects   atomic.Int64 // connections opened by churn
	churnErrors  atomic.Int64

	mu        sync.Mutex
	latency   *hdrhistogram.Histogram // microseconds, live events only
	resumedAt []int64                 // unix nanos of each ready after a reconnect
	delivered atomic.Int64            // live events received
	missed    atomic.Int64            // sequence gaps seen after ready (or, on a reconnect, since the last connection)
	dupes     atomic.Int64            // sequence numbers seen twice by one client
	readyN    atomic.Int64
	closed    atomic.Int64     // connections the server closed
	redials   atomic.Int64     // reconnects after a closed stream
	dialFails atomic.Int64     // reconnect attempts refused by every target
	exact     atomic.Int64     // new clients whose state part matched StateN/StateSum
	resets    atomic.Int64     // event:reset received
	refusedN  atomic.Int64     // streams that ended before ready
	refused   map[string]int64 // under mu: refusedN by reason (conn.refusal)

	bytesRead    atomic.Int64 // off the sockets, as they came
	decodeErrors atomic.Int64
	zdec         *zstd.Decoder // the epoll loop's, shared by every zstd stream
	zout         []byte
}

// Dial opens n connections to rawURL (plain http) and sends the request on
// each; stalled of them will never be read (slow clients). Requests are
// HTTP/1.0, so the stream comes unchunked and is read as it is.
func Dial(rawURL string, n, stalled int) (*Clients, error) {
	return DialWith(DialOptions{URLs: []string{rawURL}, Clients: n, Stalled: stalled})
}

// DialWith opens the clients o describes.
func DialWith(o DialOptions) (*Clients, error) {
	if len(o.URLs) == 0 {
		return nil, errors.New("no URL")
	}
	if o.RetryDefault <= 0 {
		o.RetryDefault = 3 * time.Second // EventSource's default
	}
	if o.SourceSet < 0 || o.SourceSet > 255 {
		return nil, fmt.Errorf("source set %d: not in 0..255", o.SourceSet)
	}
	c := &Clients{conns: make(map[int]*conn, o.Clients), opts: o,
		latency: hdrhistogram.New(1, 60_000_000, 3), refused: map[string]int64{}}
	for _, raw := range o.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		addr, err := net.ResolveTCPAddr("tcp4", u.Host)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", u.Host, err)
		}
		sa := &unix.SockaddrInet4{Port: addr.Port}
		copy(sa.Addr[:], addr.IP.To4())
		c.targets = append(c.targets, target{sa: sa, host: u.Host, uri: u.RequestURI()})
	}
	c.sa = c.targets[0].sa
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	c.epfd = epfd
	for i := range o.Clients {
		if err := c.dialOne(i < o.Stalled); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	return c, nil
}

// request is the HTTP request of a client on target t.
func (c *Clients) request(t target, lastID []byte) []byte {
	req := "GET " + t.uri + " HTTP/1.0\r\nHost: " + t.host + "\r\nAccept: text/event-stream\r\n"
	if lastID != nil {
		req += "Last-Event-ID: " + string(lastID) + "\r\n"
	}
	if c.opts.AcceptEncoding != "" {
		req += "Accept-Encoding: " + c.opts.AcceptEncoding + "\r\n"
	}
	return []byte(req + "\r\n")
}

// dialOne opens one connection and sends the request; a stalled one is
// never read.
func (c *Clients) dialOne(stalled bool) error {
	cn := &conn{lastSeq: map[int]int64{}, stalled: stalled, retry: c.opts.RetryDefault, source: -1}
	return c.connect(cn)
}

// bindSource binds fd, a socket for cn's target, to a loopback source
// address with room when the target is loopback and PerSource is set.
func (c *Clients) bindSource(fd int, cn *conn) error {
	if c.opts.PerSource <= 0 || c.targets[cn.target].sa.Addr[0] != 127 {
		return nil
	}
	i := c.freeSource
	for i < len(c.sources) && c.sources[i] >= c.opts.PerSource {
		i++
	}
	if i == maxSources {
		return fmt.Errorf("no loopback source address left in 127.%d/16 at %d connections each", c.opts.SourceSet, c.opts.PerSource)
	}
	// The port is chosen at connect, per destination, not at bind: many
	// sockets bound to one address do not use up its ephemeral ports.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1); err != nil {
		return fmt.Errorf("source address: %w", err)
	}
	n := i + 2 // 127.s.0.2 first: 127.0.0.1 is everyone else's
	sa := &unix.SockaddrInet4{Addr: [4]byte{127, byte(c.opts.SourceSet), byte(n >> 8), byte(n)}}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind %d.%d.%d.%d: %w", sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3], err)
	}
	if i == len(c.sources) {
		c.sources = append(c.sources, 0)
	}
	c.sources[i]++
	c.freeSource = i
	cn.source = i
	return nil
}

// releaseSource gives cn's source address its place back.
func (c *Clients) releaseSource(cn *conn) {
	if cn.source < 0 {
		return
	}
	c.sources[cn.source]--
	c.freeSource = min(c.freeSource, cn.source)
	cn.source = -1
}

// drop closes cn's connection and forgets it.
func (c *Clients) drop(cn *conn) {
	cn.endDecoder()
	_ = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, cn.fd, nil)
	unix.Close(cn.fd)
	delete(c.conns, cn.fd)
	c.releaseSource(cn)
}

// connect opens cn's connection to its target and sends its request.
func (c *Clients) connect(cn *conn) error {
	t := c.targets[cn.target]
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	fail := func(err error) error {
		unix.Close(fd)
		c.releaseSource(cn)
		return err
	}
	if err := c.bindSource(fd, cn); err != nil {
		return fail(err)
	}
	if err := unix.Connect(fd, t.sa); err != nil {
		return fail(fmt.Errorf("connect: %w", err))
	}
	if _, err := unix.Write(fd, c.request(t, cn.lastID)); err != nil {
		return fail(fmt.Errorf("request: %w", err))
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(err)
	}
	cn.fresh(fd)
	c.conns[fd] = cn
	if cn.stalled {
		return nil
	}
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// maxDialsPerLoop bounds the reconnects started in one loop iteration, so
// that a storm of them does not stop the loop from reading.
const maxDialsPerLoop = 256

// redial starts reconnecting the clients whose retry delay has passed,
// each to its target; connectDone finishes them.
func (c *Clients) redial(now int64) {
	waiting := c.down[:0]
	started := 0
	for _, cn := range c.down {
		if cn.due > now || started == maxDialsPerLoop {
			waiting = append(waiting, cn)
			continue
		}
		started++
		cn.tries = 0
		c.dialNext(cn, now, false)
	}
	c.down = waiting
}

// dialNext starts a non-blocking connect of cn to its target; after a
// failure (failed) it moves to the next target first, and after every
// target failed this round it waits for its retry delay.
func (c *Clients) dialNext(cn *conn, now int64, failed bool) {
	for {
		if failed {
			cn.tries++
			if cn.tries >= len(c.targets) {
				c.dialFails.Add(1)
				cn.due = now + int64(cn.retry)
				c.down = append(c.down, cn)
				return
			}
			cn.target = (cn.target + 1) % len(c.targets)
		}
		if c.startConnect(cn) == nil {
			return
		}
		failed = true
	}
}

// startConnect opens a non-blocking socket to cn's target and waits for it
// in the epoll set (EPOLLOUT: connected or refused).
func (c *Clients) startConnect(cn *conn) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	if err := c.bindSource(fd, cn); err != nil {
		unix.Close(fd)
		return err
	}
	if err := unix.Connect(fd, c.targets[cn.target].sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		c.releaseSource(cn)
		return err
	}
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		unix.Close(fd)
		c.releaseSource(cn)
		return err
	}
	cn.fd, cn.dialing = fd, true
	c.conns[fd] = cn
	return nil
}

// connectDone finishes a reconnect whose socket became writable: refused,
// it tries the next target; connected, it sends the request and reads.
func (c *Clients) connectDone(cn *conn, now int64) {
	soErr, err := unix.GetsockoptInt(cn.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soErr == 0 {
		_, err = unix.Write(cn.fd, c.request(c.targets[cn.target], cn.lastID))
	}
	if err == nil && soErr == 0 {
		err = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_MOD, cn.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(cn.fd)})
	}
	if err != nil || soErr != 0 {
		c.drop(cn)
		cn.dialing = false
		c.dialNext(cn, now, true)
		return
	}
	cn.dialing = false
	cn.fresh(cn.fd)
	c.redials.Add(1)
}

// churn closes up to n reading connections and opens as many new ones; it
// runs on the epoll loop.
func (c *Clients) churn(n int) {
	closed := 0
	for _, cn := range c.conns {
		if closed == n {
			break
		}
		if cn.stalled || !cn.ready {
			continue
		}
		c.drop(cn)
		closed++
	}
	for range closed {
		if err := c.dialOne(false); err != nil {
			c.churnErrors.Add(1)
			continue
		}
		c.reconnects.Add(1)
	}
}

const churnTick = 100 * time.Millisecond

// SetChurn makes Run replace perSecond ready connections with new ones each
// second (in tenths); 0 stops it.
func (c *Clients) SetChurn(perSecond int) {
	c.churnPerTick.Store(int64((perSecond + 9) / 10))
}

// Run reads until stop is closed, and churns connections as SetChurn says.
func (c *Clients) Run(stop <-chan struct{}) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	nextChurn := time.Now().Add(churnTick)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if n := c.churnPerTick.Load(); n > 0 && time.Now().After(nextChurn) {
			c.churn(int(n))
			nextChurn = time.Now().Add(churnTick)
		}
		if len(c.down) > 0 {
			c.redial(time.Now().UnixNano())
		}
		n, err := unix.EpollWait(c.epfd, events, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		now := time.Now().UnixNano()
		for _, ev := range events[:max(n, 0)] {
			cn := c.conns[int(ev.Fd)]
			if cn == nil {
				continue
			}
			if cn.dialing {
				c.connectDone(cn, now)
				continue
			}
			c.read(cn, buf, now)
		}
	}
}

func (c *Clients) read(cn *conn, buf []byte, now int64) {
	for {
		n, err := unix.Read(cn.fd, buf)
		if n > 0 {
			c.bytesRead.Add(int64(n))
			c.receive(cn, buf[:n], now)
		}
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil || n == 0 {
			c.drop(cn)
			c.closed.Add(1)
			if !cn.ready {
				c.refuse(cn.refusal())
			}
			if c.opts.Reconnect {
				cn.downAt = now
				cn.due = now + int64(cn.retry)
				c.down = append(c.down, cn)
			}
			return
		}
	}
}

// refuse counts a stream that ended before ready, by why.
func (c *Clients) refuse(why string) {
	c.mu.Lock()
	c.refused[why]++
	c.mu.Unlock()
	c.refusedN.Add(1)
}

// consume splits the stream into events at blank lines.
func (c *Clients) consume(cn *conn, data []byte, now int64) {
	if len(cn.partial) > 0 {
		data = append(cn.partial, data...)
		cn.partial = cn.partial[:0]
	}
	if len(cn.status) == 0 {
		// Until the first event is split off, data starts with the response.
		if line, _, ok := bytes.Cut(data, []byte("\n")); ok {
			cn.status = append(cn.status, statusOf(line)...)
		}
	}
	for {
		i := bytes.Index(data, []byte("\n\n"))
		if i < 0 {
			cn.partial = append(cn.partial[:0], data...)
			return
		}
		c.event(cn, data[:i+1], now)
		data = data[i+2:]
	}
}

// statusOf is the status and text of an HTTP status line ("200 OK").
func statusOf(line []byte) []byte {
	line = bytes.TrimRight(line, "\r")
	if _, rest, ok := bytes.Cut(line, []byte(" ")); ok && bytes.HasPrefix(line, []byte("HTTP/")) {
		return rest
	}
	return []byte("not an HTTP response")
}

var readyLine = []byte("\nevent:ready\n")

// field is the value of the event's first line that starts with name.
func field(ev []byte, name string) ([]byte, bool) {
	for len(ev) > 0 {
		line := ev
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			ev = nil
		}
		if v, ok := bytes.CutPrefix(line, []byte(name)); ok {
			return v, true
		}
	}
	return nil, false
}

func (c *Clients) event(cn *conn, ev []byte, now int64) {
	if id, ok := field(ev, "id:"); ok {
		cn.lastID = append(cn.lastID[:0], id...)
	}
	if r, ok := field(ev, "retry:"); ok {
		if ms, err := strconv.Atoi(string(r)); err == nil && ms >= 0 {
			cn.retry = time.Duration(ms) * time.Millisecond
		}
	}
	if kind, ok := field(ev, "event:"); ok && string(kind) == "reset" {
		// Start over: the whole state follows, compacted, so no sequence
		// can be checked until ready.
		c.resets.Add(1)
		cn.reset = true
		clear(cn.lastSeq)
		return
	}
	if !cn.ready {
		cn.noteComment(ev)
		if bytes.Contains(ev, readyLine) || bytes.HasPrefix(ev, readyLine[1:]) {
			cn.ready, cn.reset = true, false
			c.readyN.Add(1)
			c.checkState(cn, now)
			return
		}
		if cn.downAt == 0 {
			// A new client's state part: old values, summed for ExactStates.
			if p, seq, _, ok := payloadOf(ev); ok {
				cn.stateN++
				cn.stateSum += int64(p)<<40 | seq
			}
			return
		}
		// A resumed client's state part is what it missed: sequence checked
		// (unless it was reset).
		if p, seq, _, ok := payloadOf(ev); ok {
			if cn.reset {
				cn.lastSeq[p] = max(cn.lastSeq[p], seq)
			} else {
				c.sequence(cn, p, seq)
			}
		}
		return
	}
	p, seq, ts, ok := payloadOf(ev)
	if !ok {
		return
	}
	c.delivered.Add(1)
	c.sequence(cn, p, seq)
	c.mu.Lock()
	_ = c.latency.RecordValue(max((now-ts)/1000, 1))
	c.mu.Unlock()
}

// checkState runs at a connection's ready: a resumed client's time to be
// current again is kept; a new one's state part is checked.
func (c *Clients) checkState(cn *conn, now int64) {
	if cn.downAt != 0 {
		c.mu.Lock()
		c.resumedAt = append(c.resumedAt, now)
		c.mu.Unlock()
		return
	}
	if c.opts.StateSum != 0 && cn.stateN == c.opts.StateN && cn.stateSum == c.opts.StateSum {
		c.exact.Add(1)
	}
}

// sequence counts gaps and repeats in a client's records of partition p.
func (c *Clients) sequence(cn *conn, p int, seq int64) {
	last, seen := cn.lastSeq[p]
	switch {
	case seen && seq > last+1:
		c.missed.Add(seq - last - 1)
	case seen && seq <= last:
		c.dupes.Add(1)
		return
	}
	cn.lastSeq[p] = seq
}

// payloadOf parses the event's data line as Payload wrote it.
func payloadOf(ev []byte) (partition int, seq, ts int64, ok bool) {
	line, found := field(ev, "data:")
	if !found {
		return 0, 0, 0, false
	}
	return parsePayload(line)
}

// Payload is what Producer writes and Clients parse.
func Payload(partition int, seq, tsNanos int64) []byte {
	return fmt.Appendf(nil, "p=%d seq=%d ts=%d", partition, seq, tsNanos)
}

func parsePayload(b []byte) (partition int, seq, ts int64, ok bool) {
	if len(b) > 0 && b[0] == '{' {
		return parseJSONPayload(b)
	}
	f := bytes.Fields(b)
	if len(f) != 3 {
		return 0, 0, 0, false
	}
	get := func(field []byte, name string) (int64, bool) {
		v, found := bytes.CutPrefix(field, []byte(name+"="))
		if !found {
			return 0, false
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		return n, err == nil
	}
	p, ok1 := get(f[0], "p")
	seq, ok2 := get(f[1], "seq")
	ts, ok3 := get(f[2], "ts")
	return int(p), seq, ts, ok1 && ok2 && ok3
}

// Ready is how many connections have received event:ready.
func (c *Clients) Ready() int64 { return c.readyN.Load() }

// Delivered is how many live events arrived, across connections.
func (c *Clients) Delivered() int64 { return c.delivered.Load() }

// Missed is how many sequence numbers were skipped, across connections.
func (c *Clients) Missed() int64 { return c.missed.Load() }

// Redials is how many streams were opened again after they ended.
func (c *Clients) Redials() int64 { return c.redials.Load() }

// DialFails is how many reconnect attempts every target refused.
func (c *Clients) DialFails() int64 { return c.dialFails.Load() }

// Duplicates is how many records a client received twice.
func (c *Clients) Duplicates() int64 { return c.dupes.Load() }

// ExactStates is how many new clients' state parts matched DialOptions.
func (c *Clients) ExactStates() int64 { return c.exact.Load() }

// Resets is how many event:reset the clients received.
func (c *Clients) Resets() int64 { return c.resets.Load() }

// Refused is how many streams ended before ready, by why (conn.refusal):
// "closed with no response", the HTTP status ("HTTP 404 Not Found"), the
// reason a refusal's comment line gives ("too many connections from this
// address"), or "stream ended before ready".
func (c *Clients) Refused() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.refused)
}

// RefusedTotal is the sum of Refused.
func (c *Clients) RefusedTotal() int64 { return c.refusedN.Load() }

// Behind counts the clients (connected or waiting to reconnect) whose last
// record of some partition p is below final[p]. Call it after Run returned.
func (c *Clients) Behind(final map[int]int64) int {
	behind := 0
	check := func(cn *conn) {
		if cn.stalled {
			return
		}
		for p, seq := range final {
			if cn.lastSeq[p] < seq {
				behind++
				return
			}
		}
	}
	for _, cn := range c.conns {
		check(cn)
	}
	for _, cn := range c.down {
		check(cn)
	}
	return behind
}

// ResumedAt returns when each reconnected client was ready again (unix nanos).
func (c *Clients) ResumedAt() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.resumedAt)
}

// ResetLatency starts the latency histogram afresh (to measure a window).
func (c *Clients) ResetLatency() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency.Reset()
}

// Reconnects is how many connections churn opened.
func (c *Clients) Reconnects() int64 { return c.reconnects.Load() }

// Closed is how many connections the server closed.
func (c *Clients) Closed() int64 { return c.closed.Load() }

// Latency returns a copy of the latency histogram (microseconds).
func (c *Clients) Latency() *hdrhistogram.Histogram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return hdrhistogram.Import(c.latency.Export())
}

// Close closes every connection. Call it after Run returned.
func (c *Clients) Close() {
	for fd, cn := range c.conns {
		cn.endDecoder()
		unix.Close(fd)
	}
	if c.zdec != nil {
		c.zdec.Close()
	}
	c.conns = nil
	unix.Close(c.epfd)
}
