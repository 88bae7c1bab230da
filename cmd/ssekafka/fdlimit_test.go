package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/poll"
)

// The open-file limit the edge runs under, and the cap it takes from it by
// default (sse.maxConnections: the limit less max(a tenth, 256)).
const (
	fdLimit      = 1200
	fdDefaultCap = fdLimit - 256
	// fdStreams is how many streams the test opens: more than the limit.
	fdStreams = 1300
)

// fdRefusal is the answer to a stream over the cap: what an EventSource
// reads to its end and comes back from (edge/connlimit.go, refuse.go).
var fdRefusal = regexp.MustCompile(`^HTTP/1\.1 200 OK\r\n(?:[^\r\n]+\r\n)*\r\n: edge at its connection limit\nretry:(\d+)\n\n$`)

// Issue 11: at 20,000 files, health and metrics went silent for 40 s. Here
// an edge runs under an open-file limit of 1200 (prlimit, lowering only)
// and is sent 1300 streams: the first 944 (its default cap) get their
// state part and ready, each one past them gets the refusal at once (200
// text/event-stream, the reason as a comment, a retry; a non-stream
// request there gets 503 with Retry-After: 1), while /health,
// /_ssekafka/ready and /metrics on the admin listener answer 200 within a
// second, each on a new connection, all along. The edge's log stays a few
// lines (the over-limit warning is rate-limited), and once the streams
// close a new stream is served again.
//
// Without the cap it fails. Observed with sse.maxConnections 5000 and
// sse.maxConnectionsPerIP -1 (the per-address cap of 1000 would otherwise
// stop this one client first): the edge served 1186 streams, then accept
// failed with EMFILE; the other 114 streams got no byte in 3 s each, health
// on sse.listen no answer, 44 of the 49 admin probes timed out after 1 s
// (no file to accept them), and the edge wrote 146 log lines (accept
// errors, its own and net/http's, once a second each). With the cap, here:
// the 1300 streams took about 0.2 s, the slowest refusal 4 ms, the worst
// admin probe 28 ms, and the edge wrote 11 lines; the test takes about 4 s.
func TestEdgeAtOpenFileLimitAnswersHealthAndRefusals(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prlimit is not installed (Debian: util-linux)")
		}
		t.Skip("prlimit is not installed (Debian: util-linux)")
	}
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	kafkaAddr, natsURL := devServices(t)
	config := fixture(t, "tasks")
	cacheProc := start(t, "cache", "--config", config, "--kafka", kafkaAddr, "--nats", natsURL)
	cacheProc.waitFor(t, "cache node running")
	produceTasks(t, kafkaAddr, "a", "b", "c")
	limit := fmt.Sprintf("--nofile=%d:%d", fdLimit, fdLimit)
	edgeProc := startWrapped(t, []string{prlimit, limit, "--"},
		"edge", "--config", config, "--nats", natsURL, "--http", httpAddr, "--admin", adminAddr)
	edgeProc.waitFor(t, "edge serving")
	admin := "http://" + adminAddr
	poll.Until(t, 20*time.Second, "the edge ready", func() bool {
		status, _ := probe(admin + "/_ssekafka/ready")
		return status == http.StatusOK
	})
	if data := servedStream(t, httpAddr); len(data) != 3 {
		t.Fatalf("state part %q, want the 3 records", data)
	}

	prober := startProber(admin)
	logBefore := edgeProc.logLines()
	t0 := time.Now()
	results := openStreams(httpAddr, fdStreams)
	var held []net.Conn
	refused, unanswered := 0, 0
	var slowest time.Duration
	for _, r := range results {
		switch {
		case r.conn != nil:
			held = append(held, r.conn)
		case r.err != nil:
			unanswered++
			if unanswered <= 3 {
				t.Errorf("stream %d: %v (got %q)", r.i, r.err, r.answer)
			}
		default:
			m := fdRefusal.FindStringSubmatch(r.answer)
			if m == nil || !strings.Contains(r.answer, "\r\nContent-Type: text/event-stream\r\n") {
				t.Fatalf("stream %d over the cap: %q, want a 200 text/event-stream refusal", r.i, r.answer)
			}
			if ms, _ := strconv.Atoi(m[1]); ms < 2000 || ms > 30000 {
				t.Fatalf("refusal retry:%d, want within [2000, 30000]", ms)
			}
			refused++
			slowest = max(slowest, r.took)
		}
	}
	t.Logf("%d streams in %v: %d served, %d refused (slowest refusal %v), %d unanswered",
		fdStreams, time.Since(t0).Round(time.Millisecond), len(held), refused, slowest.Round(time.Millisecond), unanswered)
	if len(held) != fdDefaultCap || refused != fdStreams-fdDefaultCap {
		t.Fatalf("%d served and %d refused, want %d and %d", len(held), refused, fdDefaultCap, fdStreams-fdDefaultCap)
	}
	if slowest > time.Second {
		t.Fatalf("a refusal took %v", slowest)
	}
	// A request other than a stream, over the cap on the public listener.
	status, header := probe("http://" + httpAddr + "/_ssekafka/health")
	if status != http.StatusServiceUnavailable || header.Get("Retry-After") != "1" {
		t.Fatalf("health on sse.listen over the cap: %d Retry-After %q, want 503 and 1", status, header.Get("Retry-After"))
	}
	// Held at the cap a while longer, for the probes.
	probesAtCap := prober.count() + 20
	poll.Until(t, 5*time.Second, "twenty more admin probes at the cap", func() bool { return prober.count() >= probesAtCap })
	logged := edgeProc.logLines() - logBefore
	t.Logf("the edge logged %d lines at the cap", logged)
	if logged > 50 {
		t.Fatalf("the edge logged %d lines at the cap, want a few (rate-limited)", logged)
	}

	for _, c := range held {
		_ = c.Close()
	}
	poll.Until(t, 10*time.Second, "a new stream served with its state part", func() bool {
		data, ok := tryServedStream(httpAddr)
		return ok && len(data) == 3
	})
	status, _ = probe(admin + "/_ssekafka/ready")
	if status != http.StatusOK {
		t.Fatalf("ready after the streams closed: %d", status)
	}
	n, failures, worst := prober.stop()
	t.Logf("admin probes: %d, worst %v", n, worst.Round(time.Millisecond))
	if len(failures) > 0 {
		t.Fatalf("%d of %d admin probes failed, first: %s", len(failures), n, failures[0])
	}
}

// produceTasks writes one record per key to the topic tasks.
func produceTasks(t *testing.T, broker string, keys ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.DefaultProduceTopic("tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range keys {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: []byte("v-" + k)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// probeClient opens a new connection per request (the edge needs a file
// for each), and gives up after a second.
var probeClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// probe GETs url and returns its status and header (0 on an error).
func probe(url string) (int, http.Header) {
	resp, err := probeClient.Get(url)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// prober GETs the admin listener's health, ready and metrics in turn,
// every 50 ms, and records each answer that is not a 200 within a second.
type prober struct {
	n        atomic.Int64
	mu       sync.Mutex
	failures []string
	worst    time.Duration
	done     chan struct{}
	stopped  chan struct{}
}

func startProber(admin string) *prober {
	p := &prober{done: make(chan struct{}), stopped: make(chan struct{})}
	paths := []string{"/health", "/_ssekafka/ready", "/metrics"}
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			path := paths[i%len(paths)]
			t0 := time.Now()
			resp, err := probeClient.Get(admin + path)
			took := time.Since(t0)
			status := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
			p.mu.Lock()
			p.worst = max(p.worst, took)
			if status != http.StatusOK {
				p.failures = append(p.failures, fmt.Sprintf("%s: status %d, %v after %v", path, status, err, took))
			}
			p.mu.Unlock()
			p.n.Add(1)
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *prober) count() int64 { return p.n.Load() }

func (p *prober) stop() (int64, []string, time.Duration) {
	close(p.done)
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n.Load(), p.failures, p.worst
}

// streamResult is one stream of openStreams: conn is set (and open) when
// it got its state part and ready; otherwise answer is all it read before
// the edge closed it, or err says why it read no end.
type streamResult struct {
	i      int
	conn   net.Conn
	answer string
	took   time.Duration
	err    error
}

// openStreams opens n streams of /tasks, 16 at a time, each given 3 s to
// be served or answered.
func openStreams(addr string, n int) []streamResult {
	results := make([]streamResult, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				results[i] = openStream1(addr, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func openStream1(addr string, i int) streamResult {
	t0 := time.Now()
	r := streamResult{i: i}
	conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		r.err = err
		return r
	}
	_ = conn.SetDeadline(t0.Add(3 * time.Second))
	if _, err := io.WriteString(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		_ = conn.Close()
		r.err = err
		return r
	}
	var got strings.Builder
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if line == "event:ready\n" {
			_ = conn.SetDeadline(time.Time{})
			r.conn, r.answer = conn, got.String()
			return r
		}
		if err != nil {
			_ = conn.Close()
			r.answer, r.took = got.String(), time.Since(t0)
			if err != io.EOF {
				r.err = err
			}
			return r
		}
	}
}

// tryServedStream opens a stream and returns the data of its state part,
// or false if it was not served (refused, or no ready within 3 s).
func tryServedStream(addr string) ([]string, bool) {
	r := openStream1(addr, 0)
	if r.conn == nil {
		return nil, false
	}
	_ = r.conn.Close()
	var data []string
	for _, line := range strings.Split(r.answer, "\n") {
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, v)
		}
	}
	return data, true
}

// servedStream is tryServedStream, failing t unless it is served.
func servedStream(t *testing.T, addr string) []string {
	t.Helper()
	data, ok := tryServedStream(addr)
	if !ok {
		t.Fatal("stream not served")
	}
	return data
}
