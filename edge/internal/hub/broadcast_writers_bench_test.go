//go:build linux

package hub

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/proto"
)

// BenchmarkBroadcastWriters is BenchmarkBroadcast with the flushes timed:
// after every 16 events the feed flushes its dirty clients over its
// writers (writers.go), each client's sink doing one writev of its frames
// to /dev/null (a system call per client per batch, as a liveConn's,
// without a socket's cost). With 1 writer the feed writes every client
// itself. "pipelined" lets the feed deliver the next batch while the
// writer goroutines still write the last: the alternative to waiting.
func BenchmarkBroadcastWriters(b *testing.B) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	for _, subscribers := range []int{100, 10_000} {
		for _, writers := range []int{1, 2, 4} {
			for _, pipelined := range []bool{false, true} {
				if pipelined && writers == 1 {
					continue
				}
				name := fmt.Sprintf("subscribers-%d/writers-%d", subscribers, writers)
				if pipelined {
					name += "/pipelined"
				}
				b.Run(name, func(b *testing.B) {
					bb := newBenchBroadcast(b, writers, subscribers, func(c *client, _ int) sink {
						return &nullSink{c: c, fd: int(null.Fd())}
					})
					bb.run(b, pipelined)
				})
			}
		}
	}
}

// BenchmarkBroadcastWritersTCP is BenchmarkBroadcastWriters with real
// hijacked connections (liveConn over loopback TCP), their peers read with
// the timer stopped. "goroutine-per-client" is a sink written by a
// goroutine of its own (one writev per wake), as TLS, HTTP/2 and
// ResponseWriter streams are (goSink, responseSink): the feed only wakes
// it, and a batch ends when every goroutine has written its frames.
func BenchmarkBroadcastWritersTCP(b *testing.B) {
	for _, subscribers := range []int{10, 100, 1000} {
		for _, kind := range []string{"writers-1", "writers-2", "writers-4", "goroutine-per-client"} {
			b.Run(fmt.Sprintf("subscribers-%d/%s", subscribers, kind), func(b *testing.B) {
				broadcastTCP(b, subscribers, kind)
			})
		}
	}
}

func broadcastTCP(b *testing.B, subscribers int, kind string) {
	writers := 1
	_, _ = fmt.Sscanf(kind, "writers-%d", &writers)
	servers, peers := tcpPairs(b, subscribers)
	var written atomic.Int64 // frames the goroutines wrote
	st := &streamer{log: slog.New(slog.DiscardHandler), metrics: metrics.New(nil)}
	bb := newBenchBroadcast(b, writers, subscribers, func(c *client, i int) sink {
		raw, err := servers[i].(syscall.Conn).SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		if kind == "goroutine-per-client" {
			return newGoWriter(b, c, raw, &written)
		}
		return &liveConn{s: st, c: c, conn: servers[i], raw: raw}
	})
	bb.afterFlush = func(events int) {
		if kind == "goroutine-per-client" {
			for written.Load() < int64(events*subscribers) {
				runtime.Gosched()
			}
		}
		b.StopTimer()
		for _, p := range peers {
			readAvailable(b, p)
		}
		b.StartTimer()
	}
	bb.run(b, false)
}

// benchBroadcast is a feed of live clients for the broadcast benchmarks.
type benchBroadcast struct {
	f          *feed
	clients    []*client
	afterFlush func(events int) // after each batch's flush, with the events delivered so far; timer running
}

func newBenchBroadcast(b *testing.B, writers, subscribers int, sinkFor func(c *client, i int) sink) *benchBroadcast {
	e := &Hub{metrics: metrics.New(nil), done: make(chan struct{})}
	e.cfg.Now = fixedClock
	e.writers.init(writers, e.done)
	b.Cleanup(func() { close(e.done) })
	f := &feed{e: e, views: map[string]*view{}}
	f.progress = proto.Progress{Epoch: 1, Offsets: make([]int64, 3)}
	bb := &benchBroadcast{f: f, clients: make([]*client, subscribers)}
	for i := range bb.clients {
		c := newClient(1<<20, math.MaxInt)
		if _, ok := f.join("v", nil, frameFormat{id: proto.IDEtag}, c); !ok {
			b.Fatal("join")
		}
		c.sink, c.live = sinkFor(c, i), true
		bb.clients[i] = c
	}
	return bb
}

// run delivers b.N events, flushing after every 16, and reports the time
// per delivery.
func (bb *benchBroadcast) run(b *testing.B, pipelined bool) {
	f := bb.f
	rec := proto.Record{Key: []byte("task-17"), Value: []byte(`{"id":"task-17","status":"doing","rev":12345}`)}
	var shares [2]feedShards
	events, batches := 0, 0
	flush := func() {
		if !pipelined {
			f.flushDirty()
		} else {
			f.mu.Lock()
			dirty := f.dirty
			f.dirty = nil
			f.mu.Unlock()
			shares[(batches+1)%2].wait() // the batch before: at most one is written beside the feed
			f.e.writers.handOut(&shares[batches%2], dirty)
			batches++
			clear(dirty)
			f.mu.Lock()
			f.dirty = dirty[:0]
			f.mu.Unlock()
		}
		if bb.afterFlush != nil {
			bb.afterFlush(events)
		}
	}
	deliver := func(n int) {
		for range n {
			rec.Offset = int64(events)
			f.mu.Lock()
			f.deliver(int32(events%3), &rec)
			f.mu.Unlock()
			events++
			if events%16 == 0 { // the feed flushes after each batch it has: a few events, at most 1024
				flush()
			}
		}
	}
	deliver(64) // warm up: pooled queue arrays, the writer goroutines
	b.ReportAllocs()
	b.ResetTimer()
	deliver(b.N)
	if events%16 != 0 {
		flush()
	}
	shares[0].wait()
	shares[1].wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(bb.clients)), "ns/delivery")
}

// nullSink writes a client's frames to /dev/null, one writev per flush.
type nullSink struct {
	c  *client
	fd int
}

func (s *nullSink) flush() {
	iv, _, _ := s.c.take()
	if iv == nil {
		return
	}
	_, _ = unix.Writev(s.fd, iv.bufs)
	putIovecs(iv)
}

func (s *nullSink) live(*liveStream) bool { return true }

// goWriter is a sink with a goroutine of its own that a flush wakes; it
// counts the frames it wrote.
type goWriter struct {
	c       *client
	wake    <-chan struct{}
	raw     syscall.RawConn
	written *atomic.Int64
}

func newGoWriter(b *testing.B, c *client, raw syscall.RawConn, written *atomic.Int64) *goWriter {
	g := &goWriter{c: c, wake: c.wakeChan(), raw: raw, written: written}
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-done:
				return
			case <-g.wake:
			}
			iv, _, _ := c.take()
			if iv == nil {
				continue
			}
			n := len(iv.bufs)
			_ = raw.Write(func(fd uintptr) bool {
				_, _ = unix.Writev(int(fd), iv.bufs)
				return true
			})
			putIovecs(iv)
			written.Add(int64(n))
		}
	}()
	return g
}

func (g *goWriter) flush() {
	g.c.mu.Lock()
	g.c.signalLocked()
	g.c.mu.Unlock()
}

func (g *goWriter) live(*liveStream) bool { return true }

// tcpPairs returns n loopback TCP connections: the edge's ends and their peers'.
func tcpPairs(b *testing.B, n int) (servers, peers []net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	for range n {
		p, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		servers, peers = append(servers, s), append(peers, p)
	}
	b.Cleanup(func() {
		for i := range servers {
			_ = servers[i].Close()
			_ = peers[i].Close()
		}
	})
	return servers, peers
}

var readBuf = make([]byte, 64<<10)

// readAvailable reads what c's socket holds, without waiting.
func readAvailable(b *testing.B, c net.Conn) {
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	_ = raw.Read(func(fd uintptr) bool {
		for {
			if n, err := unix.Read(int(fd), readBuf); n <= 0 || err != nil {
				return true
			}
		}
	})
}
