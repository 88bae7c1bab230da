package benchmarks

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/poll"
)

var (
	stateKeys     = flag.Int("state-keys", 100_000, "keys in the state-stream scenario")
	fanoutClients = flag.Int("fanout-clients", 1_000, "clients in the fan-out scenario")
	fanoutEvents  = flag.Int("fanout-events", 2_000, "events per iteration of the fan-out scenario")
	valueSize     = flag.Int("value-size", 100, "bytes per record value")
)

// streamState connects one client and waits for its ready; it returns the
// events before ready.
func streamState(ctx context.Context, c *Cluster) (int64, error) {
	cl, err := Connect(ctx, c.EdgeURL+"/t")
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	if err := waitFor(ctx, cl.Ready.Load); err != nil {
		return 0, err
	}
	return cl.Events.Load() - 1, nil
}

// fanout connects clients, produces events, and waits until every client has
// received every event; it returns the time from the first produce.
func fanout(ctx context.Context, c *Cluster, clients []*Client, events int) (time.Duration, error) {
	base := make([]int64, len(clients))
	for i, cl := range clients {
		base[i] = cl.Events.Load()
	}
	start := time.Now()
	if err := c.Produce(ctx, events, events, *valueSize); err != nil {
		return 0, err
	}
	for i, cl := range clients {
		if err := waitFor(ctx, func() bool { return cl.Events.Load()-base[i] >= int64(events) }); err != nil {
			return 0, fmt.Errorf("client %d got %d of %d: %w", i, cl.Events.Load()-base[i], events, err)
		}
	}
	elapsed := time.Since(start)
	for i, cl := range clients {
		if got := cl.Events.Load() - base[i]; got != int64(events) {
			return 0, fmt.Errorf("client %d got %d events, want %d", i, got, events)
		}
	}
	return elapsed, nil
}

func connectReady(ctx context.Context, c *Cluster, n int) ([]*Client, error) {
	var clients []*Client
	for range n {
		cl, err := Connect(ctx, c.EdgeURL+"/t")
		if err != nil {
			return clients, err
		}
		clients = append(clients, cl)
	}
	for _, cl := range clients {
		if err := waitFor(ctx, cl.Ready.Load); err != nil {
			return clients, err
		}
	}
	return clients, nil
}

func waitFor(ctx context.Context, cond func() bool) error {
	return poll.Wait(ctx, time.Millisecond, cond)
}

// startCluster starts a cluster for one test or benchmark, closed at its end.
func startCluster(tb testing.TB, ctx context.Context, opts ...Option) *Cluster {
	tb.Helper()
	c, err := StartCluster(ctx, "bench", 3, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// loadState produces keys distinct keys and waits until a new client sees
// all of them in its state part.
func loadState(tb testing.TB, ctx context.Context, c *Cluster, keys, size int) {
	tb.Helper()
	if err := c.Produce(ctx, keys, keys, size); err != nil {
		tb.Fatal(err)
	}
	if err := waitFor(ctx, func() bool { n, err := streamState(ctx, c); return err == nil && n == int64(keys) }); err != nil {
		tb.Fatal(err)
	}
}

// readyClients connects n clients, waits for their ready, and closes them
// at the end of tb.
func readyClients(tb testing.TB, ctx context.Context, c *Cluster, n int) []*Client {
	tb.Helper()
	clients, err := connectReady(ctx, c, n)
	tb.Cleanup(func() {
		for _, cl := range clients {
			cl.Close()
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	return clients
}

// TestScenariosSmall runs both scenarios at a small scale, so that CI keeps
// the harness working and exact (every client gets every event, once).
func TestScenariosSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := startCluster(t, ctx)
	loadState(t, ctx, c, 1000, 50)
	clients := readyClients(t, ctx, c, 20)
	if _, err := fanout(ctx, c, clients, 200); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkStateStream times streaming the whole state of a -state-keys
// topic to one new client (state part through ready).
func BenchmarkStateStream(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(b, ctx)
	loadState(b, ctx, c, *stateKeys, *valueSize)
	b.ResetTimer()
	for range b.N {
		n, err := streamState(ctx, c)
		if err != nil || n != int64(*stateKeys) {
			b.Fatalf("got %d events, %v", n, err)
		}
	}
	b.ReportMetric(float64(*stateKeys)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFanout measures deliveries per second to -fanout-clients clients
// on one edge: each iteration produces -fanout-events records and waits until
// every client has every one of them.
func BenchmarkFanout(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := startCluster(b, ctx)
	clients := readyClients(b, ctx, c, *fanoutClients)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		d, err := fanout(ctx, c, clients, *fanoutEvents)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	deliveries := float64(*fanoutClients) * float64(*fanoutEvents) * float64(b.N)
	b.ReportMetric(deliveries/total.Seconds(), "deliveries/s")
	b.ReportMetric(float64(*fanoutEvents)*float64(b.N)/total.Seconds(), "events/s")
}
