package edge_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
)

// stalledKeyRead sends a JSON read of path from the loopback address local
// on a connection that never reads its answer.
func (s *stack) stalledKeyRead(local, path string, h http.Header) net.Conn {
	s.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: edge\r\nAccept: application/json\r\n", path)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		s.t.Fatal(err)
	}
	// The status line, and not a byte more: the answer is being written.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line := make([]byte, len("HTTP/1.1 200 OK\r\n"))
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "HTTP/1.1 200 OK\r\n" {
		s.t.Fatalf("stalled read of %s: %q, %v", path, line, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// getJSONFrom is getJSON from the loopback address local.
func (s *stack) getJSONFrom(local, path string, h http.Header) (int, http.Header, string) {
	s.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	defer client.CloseIdleConnections()
	status, header, body, _ := s.getJSONWith(client, http.MethodGet, path, h)
	return status, header, body
}

const keyReadValueSize = 8 << 20 // past the socket buffers of a reader that does not read

// A JSON reader that does not read is cut off by the write deadline
// (WriteTimeout per write), on both of the edge's paths: its connection is
// closed, counted, and the value it held is let go (issue 20.2).
func TestKeyReadCutsOffAReaderThatDoesNotRead(t *testing.T) {
	for _, viaNetHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaNetHTTP=%v", viaNetHTTP), func(t *testing.T) {
			s := newStack(t, stackOptions{viaNetHTTP: viaNetHTTP, edgeCfg: func(c *edge.Config) { c.WriteTimeout = 500 * time.Millisecond }})
			value := bigValue("big", keyReadValueSize)
			s.produceWith(s.bigProducer(), "tasks", rec(1, "big", value))
			c := s.stalledKeyRead("127.0.0.1", "/tasks/big", nil)
			eventually(t, 15*time.Second, "the reader cut off", func() bool {
				return s.edgeCounter("ssekafka_edge_key_reads_cut_off_total") == 1
			})
			eventually(t, 5*time.Second, "its value let go", func() bool {
				return s.gauge("ssekafka_edge_key_read_bytes_held") == 0
			})
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := io.Copy(io.Discard, c)
			if n >= int64(len(value)) || isTimeout(err) {
				t.Fatalf("the reader got %d bytes of %d (%v): not cut off", n, len(value), err)
			}
			// A reader that reads gets the whole value.
			if status, _, body := s.getJSON(http.MethodGet, "/tasks/big", nil); status != 200 || body != value {
				t.Fatalf("a reader that reads: %d, %d bytes", status, len(body))
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A reader that reads, but slower than sse.keyReads.minRate, is cut off
// once the value's time is up (WriteTimeout plus its size at that rate),
// though each write is within WriteTimeout (issue 20.2).
func TestKeyReadCutsOffAReaderSlowerThanTheMinimumRate(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.WriteTimeout = time.Second
		c.KeyReads.MinRate = 4 << 20 // the whole 8 MiB within 1s + 2s
	}})
	value := bigValue("big", keyReadValueSize)
	s.produceWith(s.bigProducer(), "tasks", rec(1, "big", value))
	c := s.stalledKeyRead("127.0.0.1", "/tasks/big", nil)
	// 32 KiB every 50 ms: 640 KiB/s, a write of 64 KiB never waits a
	// second, but the value's 3 s are up long before it is read.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 32<<10)
	total, start := 0, time.Now()
	for time.Since(start) < 15*time.Second {
		<-tick.C
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.ReadFull(c, buf)
		total += n
		if err != nil {
			break
		}
	}
	if total >= len(value) {
		t.Fatalf("a reader at 640 KiB/s got the whole value (%d bytes) in %v", total, time.Since(start))
	}
	if n := s.edgeCounter("ssekafka_edge_key_reads_cut_off_total"); n != 1 {
		t.Fatalf("cut off: %v", n)
	}
	t.Logf("cut off after %d bytes in %v", total, time.Since(start))
}

// Reads of one value at once write it from one shared buffer, however far
// apart they started (not only those that joined one lookup): four readers
// that do not read hold one 8 MiB value between them (issue 20.2).
func TestConcurrentKeyReadsShareOneValueBuffer(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.WriteTimeout = 30 * time.Second }})
	value := bigValue("big", keyReadValueSize)
	s.produceWith(s.bigProducer(), "tasks", rec(1, "big", value))
	for i := 1; i <= 4; i++ {
		s.stalledKeyRead(fmt.Sprintf("127.0.0.%d", i), "/tasks/big", nil)
		eventually(t, 10*time.Second, fmt.Sprintf("reader %d writing", i), func() bool {
			_, refs := edge.KeyReadValuesHeld(s.edge)
			return refs == i && s.gauge("ssekafka_edge_key_read_bytes_held") > 0
		})
	}
	if values, refs := edge.KeyReadValuesHeld(s.edge); values != 1 || refs != 4 {
		t.Fatalf("%d values with %d references for 4 readers of one value, want 1 with 4", values, refs)
	}
	if held := s.gauge("ssekafka_edge_key_read_bytes_held"); held != keyReadValueSize {
		t.Fatalf("%v bytes held for 4 readers of one %d-byte value", held, keyReadValueSize)
	}
	if n := s.edgeCounter("ssekafka_edge_key_read_values_shared_total"); n != 3 {
		t.Fatalf("%v reads shared a held value, want 3", n)
	}
}

// Past the bytes in flight for JSON reads, per client address (the
// forwarded one behind a trusted proxy) and per edge, a read is answered
// 503 with Retry-After; a read of a value already held costs the edge
// nothing more (issue 20.2).
func TestKeyReadsPastTheBytesInFlightAreRefused(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.WriteTimeout = 30 * time.Second
		c.KeyReads.MaxBytesPerIP = keyReadValueSize * 3 / 2
		c.KeyReads.MaxBytes = keyReadValueSize * 5 / 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	}})
	values := map[string]string{}
	big := s.bigProducer()
	for _, k := range []string{"a", "b", "c"} {
		values[k] = bigValue(k, keyReadValueSize)
		s.produceWith(big, "tasks", rec(1, k, values[k]))
	}
	held := func(n int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d values held", n), func() bool {
			return s.gauge("ssekafka_edge_key_read_bytes_held") == float64(n*keyReadValueSize)
		})
	}
	refused := func(what string, status int, h http.Header) {
		t.Helper()
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("%s: %d (Retry-After %q), want 503 with Retry-After", what, status, h.Get("Retry-After"))
		}
	}
	s.stalledKeyRead("127.0.0.1", "/tasks/a", nil)
	held(1)
	status, h, _ := s.getJSONFrom("127.0.0.1", "/tasks/b", nil)
	refused("a second value to 127.0.0.1", status, h)

	s.stalledKeyRead("127.0.0.2", "/tasks/b", nil)
	held(2)
	status, h, _ = s.getJSONFrom("127.0.0.3", "/tasks/c", nil)
	refused("a third value on the edge", status, h)
	if status, _, body := s.getJSONFrom("127.0.0.3", "/tasks/a", nil); status != 200 || body != values["a"] {
		t.Fatalf("a value held already: %d, %d bytes", status, len(body))
	}

	// Behind a trusted proxy, each forwarded address has its own bound.
	s.stalledKeyRead("127.0.0.9", "/tasks/a", http.Header{"X-Forwarded-For": {"192.0.2.1"}})
	eventually(t, 10*time.Second, "the proxied reader counted against its forwarded address", func() bool {
		return edge.KeyReadBytesOf(s.edge, "192.0.2.1") == keyReadValueSize && edge.KeyReadBytesOf(s.edge, "127.0.0.9") == 0
	})
	status, h, _ = s.getJSONFrom("127.0.0.9", "/tasks/b", http.Header{"X-Forwarded-For": {"192.0.2.1"}})
	refused("a second value to 192.0.2.1 through the proxy", status, h)
	if status, _, body := s.getJSONFrom("127.0.0.9", "/tasks/b", http.Header{"X-Forwarded-For": {"192.0.2.2"}}); status != 200 || body != values["b"] {
		t.Fatalf("another address through the proxy: %d, %d bytes", status, len(body))
	}
	if n := s.counter(s.edgeReg, "ssekafka_edge_key_reads_total"); n == 0 {
		t.Fatal("no key reads counted")
	}
}

// JSON reads are rate-limited per client address (the forwarded one behind
// a trusted proxy): past the rate, 429 with Retry-After; and so are the
// cache-tier requests they cause, which a read of a new key multiplies by
// the partition count (issue 20.6).
func TestKeyReadsRateLimitedPerAddress(t *testing.T) {
	quick := func(s *stack, n int, local string, h http.Header, key func(i int) string) (ok, limited int) {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer client.CloseIdleConnections()
		for i := range n {
			status, hdr, _, _ := s.getJSONWith(client, http.MethodGet, "/tasks/"+key(i), h)
			switch status {
			case 200, 404:
				ok++
			case http.StatusTooManyRequests:
				if hdr.Get("Retry-After") == "" {
					t.Fatal("429 without Retry-After")
				}
				limited++
			default:
				t.Fatalf("read %d: %d", i, status)
			}
		}
		return ok, limited
	}
	sameKey := func(int) string { return "k" }
	t.Run("reads", func(t *testing.T) {
		s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
			c.KeyReads.RatePerIP = 1
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
		}})
		s.produce("tasks", rec(0, "k", `"v"`))
		start := time.Now()
		ok, limited := quick(s, 40, "127.0.0.1", nil, sameKey)
		if limit := 2 + time.Since(start).Seconds() + 1; limited == 0 || float64(ok) > limit {
			t.Fatalf("40 reads from one address at 1/s (burst 2): %d answered, %d limited", ok, limited)
		}
		if ok, _ := quick(s, 1, "127.0.0.2", nil, sameKey); ok != 1 {
			t.Fatal("another address was limited")
		}
		if _, limited := quick(s, 40, "127.0.0.9", http.Header{"X-Forwarded-For": {"192.0.2.1"}}, sameKey); limited == 0 {
			t.Fatal("40 reads for one forwarded address: none limited")
		}
		if ok, _ := quick(s, 1, "127.0.0.9", http.Header{"X-Forwarded-For": {"192.0.2.2"}}, sameKey); ok != 1 {
			t.Fatal("another forwarded address through the same proxy was limited")
		}
	})
	t.Run("cacheRequests", func(t *testing.T) {
		s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
			c.KeyReads.RatePerIP = edge.Off
			c.KeyReads.CacheRequestsPerIP = 2 // bursts of 4: one lookup of 3 partitions
		}})
		s.produce("tasks", rec(0, "k", `"v"`))
		before := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total")
		start := time.Now()
		ok, limited := quick(s, 60, "127.0.0.1", nil, func(i int) string { return fmt.Sprintf("random-%d", i) })
		asked := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total") - before
		limit := 3 * (4 + 2*time.Since(start).Seconds() + 4) / 2 // the first lookup costs 2
		t.Logf("60 reads of new keys: %d answered, %d limited, %v key requests in %v", ok, limited, asked, time.Since(start))
		if limited == 0 || asked > limit {
			t.Fatalf("%v key requests (at most %.0f), %d limited", asked, limit, limited)
		}
	})
}
