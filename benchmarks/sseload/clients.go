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
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// conn is one SSE connection, owned by the epoll loop.
type conn struct {
	fd      int
	partial []byte // the unfinished event carried between reads
	ready   bool   // saw event:ready
	lastSeq map[int]int64
	stalled bool // a slow client: never read again
}

// Clients is a set of SSE connections to one URL, read by one epoll loop.
type Clients struct {
	epfd  int
	conns map[int]*conn
	req   []byte
	sa    *unix.SockaddrInet4

	churnPerTick atomic.Int64 // connections replaced every churnTick
	reconnects   atomic.Int64 // connections opened by churn
	churnErrors  atomic.Int64

	mu        sync.Mutex
	latency   *hdrhistogram.Histogram // microseconds, live events only
	delivered atomic.Int64            // live events received
	missed    atomic.Int64            // sequence gaps seen after ready
	readyN    atomic.Int64
	closed    atomic.Int64 // connections the server closed
}

// Dial opens n connections to rawURL (plain http) and sends the request on
// each; stalled of them will never be read (slow clients). Requests are
// HTTP/1.0, so the stream comes unchunked and is read as it is.
func Dial(rawURL string, n, stalled int) (*Clients, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp4", u.Host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", u.Host, err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	c := &Clients{epfd: epfd, conns: make(map[int]*conn, n),
		latency: hdrhistogram.New(1, 60_000_000, 3)}
	req := []byte("GET " + u.RequestURI() + " HTTP/1.0\r\nHost: " + u.Host + "\r\nAccept: text/event-stream\r\n\r\n")
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	c.req, c.sa = req, sa
	for i := range n {
		if err := c.dialOne(i < stalled); err != nil {
			c.Close()
			return nil, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	return c, nil
}

// dialOne opens one connection and sends the request; a stalled one is
// never read.
func (c *Clients) dialOne(stalled bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, c.sa); err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	if _, err := unix.Write(fd, c.req); err != nil {
		unix.Close(fd)
		return fmt.Errorf("request: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return err
	}
	cn := &conn{fd: fd, lastSeq: map[int]int64{}, stalled: stalled}
	c.conns[fd] = cn
	if stalled {
		return nil
	}
	if err := unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// churn closes up to n reading connections and opens as many new ones; it
// runs on the epoll loop.
func (c *Clients) churn(n int) {
	closed := 0
	for fd, cn := range c.conns {
		if closed == n {
			break
		}
		if cn.stalled || !cn.ready {
			continue
		}
		_ = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		unix.Close(fd)
		delete(c.conns, fd)
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
			c.read(cn, buf, now)
		}
	}
}

func (c *Clients) read(cn *conn, buf []byte, now int64) {
	for {
		n, err := unix.Read(cn.fd, buf)
		if n > 0 {
			c.consume(cn, buf[:n], now)
		}
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil || n == 0 {
			_ = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, cn.fd, nil)
			unix.Close(cn.fd)
			delete(c.conns, cn.fd)
			c.closed.Add(1)
			return
		}
	}
}

// consume splits the stream into events at blank lines.
func (c *Clients) consume(cn *conn, data []byte, now int64) {
	if len(cn.partial) > 0 {
		data = append(cn.partial, data...)
		cn.partial = cn.partial[:0]
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

var (
	readyLine = []byte("\nevent:ready\n")
	dataLine  = []byte("\ndata:")
)

func (c *Clients) event(cn *conn, ev []byte, now int64) {
	if !cn.ready {
		if bytes.Contains(ev, readyLine) {
			cn.ready = true
			c.readyN.Add(1)
		}
		return // the state part: old values
	}
	i := bytes.Index(ev, dataLine)
	if i < 0 {
		return
	}
	line := ev[i+len(dataLine):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	p, seq, ts, ok := parsePayload(line)
	if !ok {
		return
	}
	c.delivered.Add(1)
	if last, seen := cn.lastSeq[p]; seen && seq > last+1 {
		c.missed.Add(seq - last - 1)
	}
	if last, seen := cn.lastSeq[p]; !seen || seq > last {
		cn.lastSeq[p] = seq
	}
	c.mu.Lock()
	_ = c.latency.RecordValue(max((now-ts)/1000, 1))
	c.mu.Unlock()
}

// Payload is what Producer writes and Clients parse.
func Payload(partition int, seq, tsNanos int64) []byte {
	return fmt.Appendf(nil, "p=%d seq=%d ts=%d", partition, seq, tsNanos)
}

func parsePayload(b []byte) (partition int, seq, ts int64, ok bool) {
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
	for fd := range c.conns {
		unix.Close(fd)
	}
	c.conns = nil
	unix.Close(c.epfd)
}
