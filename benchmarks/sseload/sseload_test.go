//go:build linux

package sseload_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/benchmarks"
	"github.com/ssekafka/ssekafka/benchmarks/sseload"
)

// The load client at a small scale against an in-process cluster: every
// live record reaches every reading client once, in order per partition.
func TestRunSmall(t *testing.T) {
	for _, tc := range []struct {
		name      string
		slowShare float64
		churn     int
	}{{"fanout", 0, 0}, {"slow", 0.2, 0}, {"churn", 0, 100}} {
		t.Run(tc.name, func(t *testing.T) {
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
