package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/ssetest"
)

// tryStream opens a stream on a connection of its own and reports whether
// it got its state part (false: refused, or ended before event:ready).
func tryStream(t *testing.T, addr, path string) bool {
	t.Helper()
	conn := dial(t, addr)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return false
	}
	if _, err := ssetest.NewReader(resp.Body).Until(ssetest.IsReady); err != nil {
		return false
	}
	_ = conn.SetDeadline(time.Time{})
	return true
}

// connectionsRefused is ssekafka_edge_connections_refused_total{reason} in reg.
func connectionsRefused(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "ssekafka_edge_connections_refused_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// Issue 11: one address held 15,000 slowloris connections, as many as it
// liked. Now the connections of one address are capped from accept to
// close, a silent one included: past the cap a stream is refused the way
// an EventSource comes back from, and once one closes a new one is served.
// (On main the third stream below got its state part: no cap.)
func TestServeMaxConnectionsPerIP(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.MaxConnectionsPerIP = 2 }})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	if !tryStream(t, addr, "/tasks") {
		t.Fatal("first stream refused")
	}
	silent := dial(t, addr)
	fmt.Fprintf(silent, "GET /tasks HTTP/1.1\r\n") // a slowloris client: half a header
	eventually(t, 10*time.Second, "two open connections", func() bool { return s.gauge("ssekafka_edge_open_connections") == 2 })

	conn, br := rawGet(t, s.url, "/tasks")
	readRefusal(t, conn, br, "too many connections from this address", 2000, 4000)
	if n := s.refusals(s.edgeReg, "max_connections_per_ip"); n != 1 {
		t.Fatalf("refusals{max_connections_per_ip} = %v, want 1", n)
	}
	if n := connectionsRefused(t, s.edgeReg, "max_connections_per_ip"); n != 1 {
		t.Fatalf("connections_refused{max_connections_per_ip} = %v, want 1", n)
	}

	_ = silent.Close()
	eventually(t, 10*time.Second, "a stream served once a connection closed", func() bool { return tryStream(t, addr, "/tasks") })
	if g := s.gauge("ssekafka_edge_open_connections"); g != 2 {
		t.Fatalf("open_connections = %v, want 2", g)
	}
}

// Issue 11: at 20,000 files the edge went silent for 40 s, health and
// metrics included. Now the edge's connections are capped below the
// open-file limit: past the cap a stream is refused browser-safe, another
// request gets a 503, a second listener (the admin one) still answers, and
// once a stream closes a new one is served. (On main the third stream got
// its state part: no cap.)
func TestServeMaxConnections(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.MaxConnections, c.MaxConnectionsPerIP = 2, edge.Off }})
	s.produce("tasks", rec(0, "a", "1"))
	addr := serveWithMux(t, s, 10*time.Second)
	admin := httptestAdmin(t)

	first := dial(t, addr)
	fmt.Fprintf(first, "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n")
	if !tryStream(t, addr, "/tasks") {
		t.Fatal("second stream refused")
	}
	eventually(t, 10*time.Second, "two open connections", func() bool { return s.gauge("ssekafka_edge_open_connections") == 2 })

	conn, br := rawGet(t, "http://"+addr, "/tasks")
	readRefusal(t, conn, br, "edge at its connection limit", 2000, 4000)

	health := dial(t, addr)
	fmt.Fprintf(health, "GET /_ssekafka/health HTTP/1.1\r\nHost: edge\r\n\r\n")
	got, _ := io.ReadAll(health)
	if !strings.HasPrefix(string(got), "HTTP/1.1 503 Service Unavailable\r\n") || !strings.Contains(string(got), "\r\nRetry-After: 1\r\n") {
		t.Fatalf("health over the cap: %q, want a 503 with Retry-After", got)
	}
	resp, err := http.Get(admin + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("admin listener at the cap: %d %q", resp.StatusCode, body)
	}
	if n := connectionsRefused(t, s.edgeReg, "max_connections"); n != 2 {
		t.Fatalf("connections_refused{max_connections} = %v, want 2", n)
	}

	_ = first.Close()
	eventually(t, 10*time.Second, "a stream served once one closed", func() bool { return tryStream(t, addr, "/tasks") })
}

// httptestAdmin serves a health handler on a listener of its own, as the
// binary's admin listener does, and returns its URL.
func httptestAdmin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// Each connection is counted from accept to its one close, whichever path
// it takes (served here, answered raw, handed to net/http, hijacked from
// it, timed out): once every client is gone the count is back at zero,
// never below.
func TestServeCountsEachConnectionUntilClosed(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"))
	addr := serveWithMux(t, s, 300*time.Millisecond)
	send := func(raw string) net.Conn {
		c := dial(t, addr)
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		return c
	}
	readsUntil := func(c net.Conn, want string) {
		t.Helper()
		var got strings.Builder
		br := bufio.NewReader(c)
		for !strings.Contains(got.String(), want) {
			line, err := br.ReadString('\n')
			got.WriteString(line)
			if err != nil {
				t.Fatalf("got %q, %v; want %q", got.String(), err, want)
			}
		}
	}
	var conns []net.Conn
	stream := send("GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n")
	readsUntil(stream, "event:ready\n")
	conns = append(conns, stream)
	health := send("GET /_ssekafka/health HTTP/1.1\r\nHost: edge\r\n\r\n") // kept alive by net/http
	readsUntil(health, "ok\n")
	conns = append(conns, health)
	hijacked := send("GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\nUpgrade: x\r\n\r\n") // an Upgrade header: via net/http
	readsUntil(hijacked, "event:ready\n")
	conns = append(conns, hijacked)
	conns = append(conns,
		send("DELETE /tasks HTTP/1.1\r\nHost: edge\r\n\r\n"),                         // 405, raw
		send("GET /tasks HTTP/1.1\r\nHost: edge\r\nX: "+strings.Repeat("x", 40<<10)), // 431
		send("GET /tasks HTTP/1.1\r\nHost: edge\r\n"),                                // silent: header timeout
		send("GET /ta"), // a partial request line, then nothing
	)
	if g := s.gauge("ssekafka_edge_open_connections"); g < 3 {
		t.Fatalf("open_connections = %v with three open streams or keep-alives", g)
	}
	for _, c := range conns[:3] {
		_ = c.Close()
	}
	eventually(t, 10*time.Second, "no connection counted", func() bool {
		g := s.gauge("ssekafka_edge_open_connections")
		if g < 0 {
			t.Fatalf("open_connections = %v", g)
		}
		return g == 0
	})
}

// With NoHijack every stream goes through net/http; one over a cap is still
// refused the browser-safe way, not with a 503 that ends an EventSource.
func TestServeMaxConnectionsPerIPNoHijack(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.MaxConnectionsPerIP, c.NoHijack = 1, true }})
	s.produce("tasks", rec(0, "a", "1"))
	if !tryStream(t, strings.TrimPrefix(s.url, "http://"), "/tasks") {
		t.Fatal("first stream refused")
	}
	conn, br := rawGet(t, s.url, "/tasks")
	readRefusal(t, conn, br, "too many connections from this address", 2000, 4000)
}

// proxyPeer is the address the tests' "proxy" connects from.
var proxyPeer = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}

// forwardedStream opens a stream from local (nil: the default address)
// with an X-Forwarded-For header (none when xff is ""), and returns its
// connection and whether it got its state part; otherwise its answer, read
// to its end, as "STATUS CONTENT-TYPE\nBODY".
func forwardedStream(t *testing.T, local *net.TCPAddr, addr, xff string) (net.Conn, bool, string) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != nil {
		d.LocalAddr = local
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	header := "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n"
	if xff != "" {
		header += "X-Forwarded-For: " + xff + "\r\n"
	}
	if _, err := io.WriteString(conn, header+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return conn, false, err.Error()
	}
	answer := fmt.Sprintf("%d %s\n", resp.StatusCode, resp.Header.Get("Content-Type"))
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		answer += line
		if line == "event:ready\n" {
			_ = conn.SetDeadline(time.Time{})
			return conn, true, answer
		}
		if err != nil {
			return conn, false, answer
		}
	}
}

var forwardedRefusal = regexp.MustCompile(`^200 text/event-stream\n: too many connections from this address\nretry:\d+\n\n$`)

// checkPerAddressRefusal fails t unless answer (forwardedStream's) is the
// refusal of a stream over its address's cap.
func checkPerAddressRefusal(t *testing.T, answer string) {
	t.Helper()
	if !forwardedRefusal.MatchString(answer) {
		t.Fatalf("answer %q, want the 200 refusal: too many connections from this address", answer)
	}
}

// Behind a proxy every connection comes from the proxy's address, so the
// per-address cap refused the whole site's 1001st client. Connections from
// a trusted proxy are now not capped per address; each stream through one
// counts against its forwarded client address, for as long as it lives:
// one address is capped, another is not capped by it, and a closed stream
// gives its place back. (Without TrustedProxies the fourth stream below,
// from the proxy's one address, was refused at accept.)
func TestTrustedProxyCapsPerForwardedAddress(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) {
			s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
				c.MaxConnectionsPerIP, c.NoHijack = 2, noHijack
				c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
			}})
			s.produce("tasks", rec(0, "a", "1"))
			addr := strings.TrimPrefix(s.url, "http://")

			first, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.7")
			if !ok {
				t.Fatal("first stream of 198.51.100.7 refused")
			}
			// The rightmost address not a trusted proxy is the client.
			if _, ok, _ := forwardedStream(t, proxyPeer, addr, "203.0.113.50, 198.51.100.7, 127.0.0.2"); !ok {
				t.Fatal("second stream of 198.51.100.7 refused")
			}
			_, ok, got := forwardedStream(t, proxyPeer, addr, "198.51.100.7")
			if ok {
				t.Fatal("third stream of 198.51.100.7 served, over its cap of 2")
			}
			checkPerAddressRefusal(t, got)
			for i := range 2 {
				if _, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.8"); !ok {
					t.Fatalf("stream %d of 198.51.100.8 refused: capped by 198.51.100.7's", i+1)
				}
			}
			if n := s.refusals(s.edgeReg, "max_connections_per_ip"); n != 1 {
				t.Fatalf("refusals{max_connections_per_ip} = %v, want 1", n)
			}
			if n := connectionsRefused(t, s.edgeReg, "max_connections_per_ip"); n != 1 {
				t.Fatalf("connections_refused{max_connections_per_ip} = %v, want 1", n)
			}
			if g := s.gauge("ssekafka_edge_open_connections"); g != 4 {
				t.Fatalf("open_connections = %v, want the proxy's 4 streams counted in the total", g)
			}

			_ = first.Close()
			eventually(t, 10*time.Second, "198.51.100.7 served once one of its streams closed", func() bool {
				_, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.7")
				return ok
			})
			// A malformed header counts against the proxy: its own two, then refused.
			for i := range 2 {
				if _, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.7, not-an-address"); !ok {
					t.Fatalf("malformed stream %d refused", i+1)
				}
			}
			if _, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.9, not-an-address"); ok {
				t.Fatal("third malformed stream served: not counted against the proxy")
			}
		})
	}
}

// An untrusted peer's X-Forwarded-For is never read: its connections are
// capped by its own address whatever it claims, and what it claims costs
// the claimed address nothing.
func TestUntrustedForwardedForChangesNothing(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.MaxConnectionsPerIP = 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	}})
	s.produce("tasks", rec(0, "a", "1"))
	addr := strings.TrimPrefix(s.url, "http://")
	for i, forged := range []string{"198.51.100.7", "198.51.100.7, 127.0.0.2"} {
		if _, ok, _ := forwardedStream(t, nil, addr, forged); !ok {
			t.Fatalf("untrusted stream %d refused", i+1)
		}
	}
	_, ok, got := forwardedStream(t, nil, addr, "203.0.113.99")
	if ok {
		t.Fatal("a third stream from 127.0.0.1 served: its forged X-Forwarded-For was believed")
	}
	checkPerAddressRefusal(t, got)
	if n := connectionsRefused(t, s.edgeReg, "max_connections_per_ip"); n != 1 {
		t.Fatalf("connections_refused{max_connections_per_ip} = %v, want 1", n)
	}
	for i := range 2 {
		if _, ok, _ := forwardedStream(t, proxyPeer, addr, "198.51.100.7"); !ok {
			t.Fatalf("stream %d of 198.51.100.7 through the proxy refused: the forgeries were counted against it", i+1)
		}
	}
}

// Through a real reverse proxy (net/http/httputil's, which like nginx
// appends the address it was connected from to any X-Forwarded-For it was
// sent), from two browser addresses: each is capped by its own address, a
// browser that forges the header is still capped by its own, and the
// refusal reaches the browser as the 200 it comes back from.
func TestTrustedReverseProxyCapsEachBrowser(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.MaxConnectionsPerIP = 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	}})
	s.produce("tasks", rec(0, "a", "1"))
	target, _ := url.Parse(s.url)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	proxy.Transport = &http.Transport{DialContext: (&net.Dialer{LocalAddr: proxyPeer}).DialContext}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &http.Server{Handler: proxy}
	go func() { _ = front.Serve(ln) }()
	t.Cleanup(func() { _ = front.Close() })
	proxyAddr := ln.Addr().String()

	browser3 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}
	browser4 := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 4)}
	for i := range 2 {
		if _, ok, got := forwardedStream(t, browser3, proxyAddr, ""); !ok {
			t.Fatalf("stream %d of 127.0.0.3 refused: %q", i+1, got)
		}
	}
	_, ok, got := forwardedStream(t, browser3, proxyAddr, "198.51.100.1")
	if ok {
		t.Fatal("a third stream of 127.0.0.3 served: its forged X-Forwarded-For was believed")
	}
	checkPerAddressRefusal(t, got)
	for i := range 2 {
		if _, ok, got := forwardedStream(t, browser4, proxyAddr, ""); !ok {
			t.Fatalf("stream %d of 127.0.0.4 refused, capped by 127.0.0.3's: %q", i+1, got)
		}
	}
}
