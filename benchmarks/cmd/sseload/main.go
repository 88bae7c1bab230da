//go:build linux

// Command sseload puts SSE load on any ssekafka deployment (or any SSE server
// whose records it produces): N connections read by one epoll loop, a
// producer writing timestamped, sequenced records to Kafka at a set rate, and
// a report of connects, deliveries, missed sequence numbers and latency
// percentiles, as JSON and an SVG chart.
//
//	go run ./benchmarks/cmd/sseload -url http://127.0.0.1:8080/tasks -kafka 127.0.0.1:9092 \
//	    -topic tasks -clients 2000 -rate 100 -duration 30s -out result.json -svg latency.svg
//
// One process holds at most ~19,000 connections here (20,000 open files):
// -procs N spreads the connections over N worker processes (this program
// run again with -worker), whose counts and histograms are merged.
//
// An edge admits sse.maxConnectionsPerIP (1000) connections from one
// address. Against a loopback URL the connections come from loopback
// source addresses, 127.0.0.2, 127.0.0.3, ..., at most -per-source on each
// (on Linux every 127/8 address is local). Streams that end before their
// event:ready are counted by why (an HTTP status, or a refusal's comment:
// the edge's reason) and reported; docs/benchmarks.md says how to load a
// remote edge.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ssekafka/ssekafka/benchmarks/sseload"
)

func main() {
	var o sseload.Options
	var brokers, out, svg string
	flag.StringVar(&o.URL, "url", "http://127.0.0.1:8080/tasks", "SSE endpoint")
	flag.StringVar(&brokers, "kafka", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	flag.StringVar(&o.Topic, "topic", "tasks", "topic the endpoint streams")
	flag.IntVar(&o.Partitions, "partitions", 3, "partitions to spread records over")
	flag.IntVar(&o.Clients, "clients", 100, "connections")
	flag.Float64Var(&o.SlowShare, "slow", 0, "share of clients that never read (slow scenario)")
	flag.IntVar(&o.Rate, "rate", 100, "records per second")
	flag.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to produce")
	flag.IntVar(&o.Keys, "keys", 100, "distinct keys per partition")
	flag.IntVar(&o.EdgePID, "edge-pid", 0, "edge process id, for its RSS per connection")
	flag.DurationVar(&o.Settle, "settle", 0, "wait after connecting before reading the edge's RSS")
	flag.IntVar(&o.Churn, "churn", 0, "connections closed and opened again per second while producing (churn scenario)")
	flag.IntVar(&o.Procs, "procs", 1, "processes to spread the connections over (one holds at most ~19,000 here)")
	flag.IntVar(&o.PerSource, "per-source", 500, "against a loopback URL, at most this many connections per loopback source address (127.0.0.2, ...); 0: all from one")
	flag.StringVar(&o.AcceptEncoding, "accept-encoding", "", "send this Accept-Encoding (e.g. gzip, zstd) and decode gzip and zstd streams; empty: none")
	flag.BoolVar(&o.JSON, "json", false, "produce JSON values of about 200 B (an item with id, name, price, status, updatedAt, tags) instead of a short line")
	worker := flag.Bool("worker", false, "internal: run as a worker of -procs, driven over stdin/stdout")
	stalled := flag.Int("stalled", 0, "internal: with -worker, connections never read")
	sourceSet := flag.Int("source-set", 0, "internal: with -worker, its loopback source addresses are 127.N.0.2, ...")
	flag.StringVar(&out, "out", "", "write the result as JSON here (default: stdout)")
	flag.StringVar(&svg, "svg", "", "write a latency chart here")
	flag.Parse()
	o.Brokers = strings.Split(brokers, ",")
	o.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *worker {
		do := sseload.DialOptions{URLs: []string{o.URL}, Clients: o.Clients, Stalled: *stalled, PerSource: o.PerSource, SourceSet: *sourceSet, AcceptEncoding: o.AcceptEncoding}
		if err := sseload.RunWorker(ctx, do, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "sseload worker:", err)
			os.Exit(1)
		}
		return
	}
	res, err := sseload.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sseload:", err)
		os.Exit(1)
	}
	w := os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sseload:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := res.WriteJSON(w); err != nil {
		fmt.Fprintln(os.Stderr, "sseload:", err)
		os.Exit(1)
	}
	if svg != "" {
		f, err := os.Create(svg)
		if err == nil {
			err = res.WriteSVG(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "sseload:", err)
			os.Exit(1)
		}
	}
}
