//go:build linux

package sseload_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/benchmarks"
	"github.com/ssekafka/ssekafka/benchmarks/sseload"
	"github.com/ssekafka/ssekafka/edge"
)

// TestMain runs this test binary as a load worker when a test asks for
// several processes.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "1" {
		os.Exit(m.Run())
	}
	fs := flag.NewFlagSet("worker", flag.ExitOnError)
	fs.Bool("worker", true, "")
	url := fs.String("url", "", "")
	clients := fs.Int("clients", 0, "")
	stalled := fs.Int("stalled", 0, "")
	perSource := fs.Int("per-source", 0, "")
	sourceSet := fs.Int("source-set", 0, "")
	acceptEncoding := fs.String("accept-encoding", "", "")
	_ = fs.Parse(os.Args[1:])
	o := sseload.DialOptions{URLs: []string{*url}, Clients: *clients, Stalled: *stalled, PerSource: *perSource, SourceSet: *sourceSet, AcceptEncoding: *acceptEncoding}
	if err := sseload.RunWorker(context.Background(), o, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

const workerEnv = "SSELOAD_TEST_WORKER"

// The load client at a small scale against an in-process cluster: every
// live record reaches every reading client once, in order per partition.
func TestRunSmall(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slowShare float64
		churn     int
		procs     int
	}{{"fanout", 0, 0, 1}, {"slow", 0.2, 0, 1}, {"churn", 0, 100, 1}, {"procs", 0.2, 0, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(workerEnv, "1") // inherited by worker processes only: this one has passed TestMain
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := benchmarks.StartCluster(ctx, "bench", 3)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var progress bytes.Buffer
			res, err := sseload.Run(ctx, sseload.Options{
				URL: c.EdgeURL + "/t", Clients: 50, SlowShare: tc.slowShare, Brokers: c.Brokers, Topic: "bench",
				Partitions: 3, Rate: 500, Duration: time.Second, Progress: &progress, Churn: tc.churn,
				Procs: tc.procs, Exe: os.Args[0], // the test binary is the worker, see TestMain
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.churn > 0 {
				// Replaced connections come back and reach ready; within a
				// connection nothing is skipped.
				if res.ChurnConnects < 50 || res.ChurnReadyPerSec <= 0 || res.Missed != 0 {
					t.Fatalf("churn: %d reconnects, %.0f ready/s, missed %d", res.ChurnConnects, res.ChurnReadyPerSec, res.Missed)
				}
				return
			}
			if res.Procs != max(tc.procs, 1) {
				t.Fatalf("%d processes, want %d", res.Procs, tc.procs)
			}
			if res.Produced < 100 || res.Delivered != res.Expected || res.Missed != 0 {
				t.Fatalf("produced %d, delivered %d of %d, missed %d", res.Produced, res.Delivered, res.Expected, res.Missed)
			}
			if res.LatencyMs["p50"] <= 0 || res.LatencyMs["p100"] < res.LatencyMs["p50"] {
				t.Fatalf("latency %v", res.LatencyMs)
			}
			var js, svg bytes.Buffer
			if err := res.WriteJSON(&js); err != nil || !strings.Contains(js.String(), `"deliveriesPerSecond"`) {
				t.Fatalf("json %q: %v", js.String(), err)
			}
			if err := res.WriteSVG(&svg); err != nil || !strings.HasPrefix(svg.String(), "<svg") {
				t.Fatalf("svg: %v", err)
			}
			if !strings.Contains(progress.String(), "clients connected") {
				t.Fatalf("no progress: %q", progress.String())
			}
		})
	}
}

// cappedEdge starts another edge on c's NATS (and so c's cache node),
// served by the edge's own accept path with at most perIP connections per
// client address, and returns its stream URL.
func cappedEdge(t *testing.T, c *benchmarks.Cluster, perIP int) string {
	t.Helper()
	nc, err := nats.Connect(c.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/t"}, Topic: c.Topic})
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{NATS: nc, Routes: []*edge.Route{route}, MaxConnectionsPerIP: perIP})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = e.Serve(ln, srv) }()
	t.Cleanup(func() { e.Close(); _ = srv.Close(); _ = ln.Close() })
	return "http://" + ln.Addr().String() + "/t"
}

// A run whose clients the edge refuses says how many and why: the reason
// of each refused stream (its comment line) with the setting behind it, or
// the HTTP status of a stream that is not one.
func TestRunReportsRefusalsByReason(t *testing.T) {
	t.Setenv(workerEnv, "1") // inherited by worker processes only: this one has passed TestMain
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := benchmarks.StartCluster(ctx, "bench", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name, path     string
		clients, procs int
		want           string
	}{
		{"per-address cap", "", 120, 1, "50 of 120 clients ready: the others' streams ended; refused: 70 too many connections from this address (sse.maxConnectionsPerIP)"},
		{"per-address cap, workers", "", 120, 2, "50 of 120 clients ready: the others' streams ended; refused: 70 too many connections from this address (sse.maxConnectionsPerIP)"},
		{"no such path", "/missing", 3, 1, "0 of 3 clients ready: the others' streams ended; refused: 3 HTTP 404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sseload.Run(ctx, sseload.Options{
				URL: cappedEdge(t, c, 50) + tc.path, Clients: tc.clients, Brokers: c.Brokers, Topic: "bench",
				Partitions: 3, Rate: 100, Duration: 200 * time.Millisecond, Procs: tc.procs, Exe: os.Args[0],
			})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("run: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// Against a loopback edge, clients spread over loopback source addresses
// (127.0.0.2, 127.0.0.3, ...; a worker process each on its own ones), so
// that more of them get ready than the edge admits from one address.
func TestRunSpreadsLoopbackClientsOverSourceAddresses(t *testing.T) {
	t.Setenv(workerEnv, "1") // inherited by worker processes only: this one has passed TestMain
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := benchmarks.StartCluster(ctx, "bench", 3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			res, err := sseload.Run(ctx, sseload.Options{
				URL: cappedEdge(t, c, 50), Clients: 120, PerSource: 40, Brokers: c.Brokers, Topic: "bench",
				Partitions: 3, Rate: 100, Duration: 200 * time.Millisecond, Procs: procs, Exe: os.Args[0],
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Ready != 120 || len(res.Refused) != 0 || res.Missed != 0 {
				t.Fatalf("%d of 120 ready, refused %v, missed %d", res.Ready, res.Refused, res.Missed)
			}
		})
	}
}
