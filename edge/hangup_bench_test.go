//go:build linux

package edge_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/teststack"
)

// BenchmarkHangupWave: a wave of 1,000 live clients closes at once; how
// long until the edge has closed their sockets, and how many are still
// open 100 ms after the wave. "no-watch" is the edge without its hang-up
// watch, left to find out by keep-alive writes (every 2 s here; 15 s by
// default, never with keep-alives off).
//
//	go test -run '^$' -bench HangupWave -benchtime 3x ./edge/
func BenchmarkHangupWave(b *testing.B) {
	for _, watch := range []bool{true, false} {
		name := "watch"
		if !watch {
			name = "no-watch"
		}
		b.Run(name, func(b *testing.B) { benchHangupWave(b, watch) })
	}
}

func benchHangupWave(b *testing.B, watch bool) {
	const n = 1000
	addr := benchEdge(b, 2*time.Second, watch)
	var total time.Duration
	openAt100ms := 0
	for b.Loop() {
		conns := make([]net.Conn, n)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range conns {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				conns[i] = conn
				fmt.Fprintf(conn, "GET /t HTTP/1.1\r\nHost: edge\r\n\r\n")
				if _, err := readUntilErr(bufio.NewReader(conn), "event:ready\n"); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		sockets := edgeSockets(b, addr, n)
		t0 := time.Now()
		for _, c := range conns {
			_ = c.Close()
		}
		sampled := false
		for open := n; open > 0; open = openSockets(b, sockets) {
			if !sampled && time.Since(t0) >= 100*time.Millisecond {
				openAt100ms += open
				sampled = true
			}
			if time.Since(t0) > time.Minute {
				b.Fatalf("%d sockets still open after a minute", open)
			}
			time.Sleep(5 * time.Millisecond) // the sampling interval of a measurement
		}
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-release")
	b.ReportMetric(float64(openAt100ms)/float64(b.N), "open-after-100ms")
}

// benchEdge starts kfake, nats-server, a cache node and an edge (Serve) with
// a route /t on an empty topic of 3 partitions; it returns the edge's address.
func benchEdge(b testing.TB, keepAlive time.Duration, watch bool) string {
	b.Helper()
	tiers := teststack.Start(b, "t")
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/t"}, Topic: "t"})
	if err != nil {
		b.Fatal(err)
	}
	e, err := edge.New(edge.Config{NATS: tiers.Connect(), Routes: []*edge.Route{route}, KeepAlive: keepAlive,
		MaxConnectionsPerIP: edge.Off}) // every wave dials from 127.0.0.1
	if err != nil {
		b.Fatal(err)
	}
	if !watch {
		edge.NoHangupWatch(e)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = e.Serve(ln, srv) }()
	b.Cleanup(func() { _ = ln.Close(); e.Close(); _ = srv.Close() })
	return ln.Addr().String()
}
