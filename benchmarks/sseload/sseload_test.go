//go:build linux

package sseload_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/benchmarks"
	"github.com/ssekafka/ssekafka/benchmarks/sseload"
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
	_ = fs.Parse(os.Args[1:])
	if err := sseload.RunWorker(context.Background(), *url, *clients, *stalled, os.Stdin, os.Stdout); err != nil {
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
