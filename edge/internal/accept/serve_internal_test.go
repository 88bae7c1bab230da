package accept

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// FuzzPeekHeader: whatever arrives, peekHeader returns the input up to its
// first empty line (CRLF or bare LF, as net/textproto reads lines), or an
// error, and consumes nothing.
func FuzzPeekHeader(f *testing.F) {
	f.Add([]byte("GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("\r\n\r"))
	f.Add([]byte("GET / HTTP/1.1\nHost: x\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: x\n\r\n"))
	f.Add(bytes.Repeat([]byte("a"), headerPeekBytes+3))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(&oneByteReader{in}, headerPeekBytes)
		head, err := peekHeader(br)
		end := firstEmptyLine(in)
		switch {
		case err == nil:
			if end < 0 || !bytes.Equal(head, in[:end]) {
				t.Fatalf("header %q from %q", head, in)
			}
			if rest, _ := br.Peek(br.Buffered()); !bytes.HasPrefix(rest, head) {
				t.Fatal("peekHeader consumed input")
			}
			_, _ = parseRequest(head) // must not panic on anything
		case errors.Is(err, errHeaderTooLarge):
			if end >= 0 && end <= headerPeekBytes {
				t.Fatalf("too large, but the header ends at %d", end)
			}
		default:
			if end >= 0 && end <= headerPeekBytes {
				t.Fatalf("error %v, but the header ends at %d", err, end)
			}
		}
	})
}

// firstEmptyLine is headerEndIndex written the slow way: the end of the
// first line that is empty once a CR before its LF is dropped, past the first line.
func firstEmptyLine(in []byte) int {
	start := 0
	for i, b := range in {
		if b != '\n' {
			continue
		}
		if line := bytes.TrimSuffix(in[start:i], []byte("\r")); len(line) == 0 && start > 0 {
			return i + 1
		}
		start = i + 1
	}
	return -1
}

// oneByteReader returns its input a byte per Read, the worst a network does.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("eof")
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

// The setup queue refuses past its bound, hands out in order, and reports idle.
func TestSetupQueue(t *testing.T) {
	q := newSetupQueue(2, 2, 2)
	a, b := &net.TCPConn{}, &net.TCPConn{}
	if q.push(setupRequest{conn: a}) != reason.Unknown || q.push(setupRequest{conn: b}) != reason.Unknown || q.push(setupRequest{conn: a}) != reason.QueueFull {
		t.Fatal("want two accepted, the third refused")
	}
	if r, ok := q.pop(); !ok || r.conn != a {
		t.Fatalf("first pop %v %v", r.conn, ok)
	}
	if started, idle := q.stats(); started != 1 || idle {
		t.Fatalf("stats %d %v, want 1 started, busy", started, idle)
	}
	q.done(netip.Prefix{}, time.Millisecond)
	if r, ok := q.pop(); !ok || r.conn != b {
		t.Fatalf("second pop %v %v", r.conn, ok)
	}
	q.done(netip.Prefix{}, time.Millisecond)
	if started, idle := q.stats(); started != 2 || !idle {
		t.Fatalf("stats %d %v, want 2 started, idle", started, idle)
	}
	go q.close()
	if _, ok := q.pop(); ok {
		t.Fatal("pop after close")
	}
}

// A direct stream whose client goes while it waits leaves the queue at
// once (it no longer counts as waiting, nor against the bound); a worker
// skips its entry, and one taken by a worker cannot leave.
func TestSetupQueueLeave(t *testing.T) {
	q := newSetupQueue(3, 3, 3)
	direct := func() *directSetup {
		d := &directSetup{ctx: context.Background(), granted: make(chan struct{}), ended: make(chan struct{})}
		if q.push(setupRequest{direct: d}) != reason.Unknown {
			t.Fatal("refused")
		}
		return d
	}
	a, b, c := direct(), direct(), direct()
	if !q.leave(b) {
		t.Fatal("a waiting stream could not leave")
	}
	if n, _ := q.load(); n != 2 {
		t.Fatalf("%d waiting, want 2", n)
	}
	d := direct() // b's place counts no more
	if r, ok := q.pop(); !ok || r.direct != a {
		t.Fatal("first pop is not a")
	}
	if q.leave(a) {
		t.Fatal("a stream a worker took left the queue")
	}
	if r, ok := q.pop(); !ok || r.direct != c {
		t.Fatal("second pop did not skip b for c")
	}
	if !q.leave(d) {
		t.Fatal("d could not leave")
	}
	if n, _ := q.load(); n != 0 || q.entries() != 0 {
		t.Fatalf("%d waiting in %d entries, want none", n, q.entries())
	}
	q.done(netip.Prefix{}, time.Millisecond)
	q.done(netip.Prefix{}, time.Millisecond)
	if _, idle := q.stats(); !idle {
		t.Fatal("not idle")
	}
	// Many gone in a long queue: their entries are dropped with the rest
	// kept in order, not when a worker reaches them.
	q = newSetupQueue(100, 100, 100)
	var all []*directSetup
	for range 100 {
		all = append(all, direct())
	}
	for i, d := range all {
		if i%3 != 0 && !q.leave(d) {
			t.Fatalf("stream %d could not leave", i)
		}
	}
	if n, _ := q.load(); n != 34 || q.entries() > 2*34 {
		t.Fatalf("%d waiting in %d entries, want 34 in at most 68", n, q.entries())
	}
	for i := 0; i < 100; i += 3 {
		if r, ok := q.pop(); !ok || r.direct != all[i] {
			t.Fatalf("pop: not stream %d", i)
		}
	}
	q.close()
	if _, ok := q.pop(); ok {
		t.Fatal("pop after close")
	}
}

// entries is how many requests the queue holds in its lines.
func (q *setupQueue) entries() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, a := range q.addrs {
		n += len(a.waiting)
	}
	return n
}
