//go:build linux

package sseload_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/benchmarks/sseload"
	"github.com/ssekafka/ssekafka/internal/poll"
)

// fakeServer accepts on loopback, reads each request and answers it with
// answer (nil: keeps the connection open, answering nothing); it records
// each connection's source address.
type fakeServer struct {
	ln      net.Listener
	mu      sync.Mutex
	sources map[string]int
}

func startFake(t *testing.T, answer []byte) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, sources: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			f.mu.Lock()
			f.sources[host]++
			f.mu.Unlock()
			go func() {
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				if answer == nil {
					t.Cleanup(func() { c.Close() })
					return
				}
				_, _ = c.Write(answer)
				_ = c.Close()
			}()
		}
	}()
	return f
}

func (f *fakeServer) counts() (conns, addrs, most int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.sources {
		conns += n
		most = max(most, n)
	}
	return conns, len(f.sources), most
}

// Connections to a loopback target come from 127.0.1.1-250 in turn, so an
// edge's cap per address does not stop a local load test; OneSource keeps
// the system's choice.
func TestLoopbackClientsSpreadOverSourceAddresses(t *testing.T) {
	f := startFake(t, nil)
	url := "http://" + f.ln.Addr().String() + "/t"
	cl, err := sseload.Dial(url, 300, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poll.Until(t, 30*time.Second, "300 connections", func() bool { n, _, _ := f.counts(); return n == 300 })
	if _, addrs, most := f.counts(); addrs != 250 || most != 2 {
		t.Fatalf("300 connections from %d addresses, at most %d from one; want 250 and 2", addrs, most)
	}
	g := startFake(t, nil)
	one, err := sseload.DialWith(sseload.DialOptions{URLs: []string{"http://" + g.ln.Addr().String() + "/t"}, Clients: 5, OneSource: true})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	poll.Until(t, 30*time.Second, "5 connections", func() bool { n, _, _ := g.counts(); return n == 5 })
	if _, addrs, _ := g.counts(); addrs != 1 {
		t.Fatalf("OneSource: %d source addresses", addrs)
	}
}

// A run whose clients are refused ends at once and says why, counting the
// refusals by the reason in their comment line.
func TestRunSaysWhyClientsWereNotReady(t *testing.T) {
	refusal := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n: too many connections from this address\nretry:1500\n\n"
	f := startFake(t, []byte(refusal))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := sseload.Run(ctx, sseload.Options{URL: "http://" + f.ln.Addr().String() + "/t", Clients: 20,
		Brokers: []string{"127.0.0.1:1"}, Topic: "t"})
	want := `0 of 20 clients ready: the rest ended before their ready; ended before ready: "too many connections from this address" 20`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if took := time.Since(start); took > 30*time.Second || strings.Contains(err.Error(), "not within") {
		t.Fatalf("took %v", took)
	}
}
