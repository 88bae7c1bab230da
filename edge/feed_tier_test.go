package edge_test

import (
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
	"github.com/ssekafka/ssekafka/proto"
)

// tierStack is an edge over an in-memory cache tier: no Kafka, no NATS, no
// cache node. The test scripts the tier's pages, heads and live messages.
func tierStack(t *testing.T, mem *tiertest.Tier) *stack {
	t.Helper()
	reg := prometheus.NewRegistry()
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/tasks"}, Topic: "tasks"})
	if err != nil {
		t.Fatal(err)
	}
	// No test log: streams end after the test does.
	cfg := edge.Config{Logger: slog.New(slog.DiscardHandler), RetryJitter: -1, Now: func() time.Time { return fixedNow },
		Routes: []*edge.Route{route}, ProbeInterval: 100 * time.Millisecond, Registerer: reg}
	edge.UseTier(&cfg, mem)
	edge.UseClock(&cfg, tiertest.Jumping(fixedNow)) // a request asked again waits no real time
	return serveEdge(t, cfg, reg)
}

// A topic's feed, with only the in-memory tier behind it (docs/architecture.md rule 5,
// rule 10): a stream starts through NotOwner answers (asked again); a
// change forged far past the tier's head is never delivered and is counted
// once the next probe finds the tier still short of it; a change lost on
// the way, whose gap a lagging holder cannot fill, reaches the client once
// the holder has caught up, in offset order and once, with true ids.
func TestFeedOverInMemoryTierFillsFromLaggingHolderAndDropsForgedChange(t *testing.T) {
	const epoch = 7
	mem := tiertest.New()
	mem.AddTopic("tasks", 2, epoch)
	mem.Append("tasks", 0, "a", []byte("a0"), fixedNow.UnixMilli())
	mem.Append("tasks", 1, "b", []byte("b0"), fixedNow.UnixMilli())
	mem.NotOwner("tasks", 0, 3) // the feed's first head request, and the stream's page, are asked again
	s := tierStack(t, mem)

	c := s.connect("/tasks", nil)
	var got []string
	for _, ev := range c.untilReady() {
		if ev.HasData {
			got = append(got, ev.ID+" "+ev.Event+" "+ev.Data)
		}
	}
	want := []string{
		handID(epoch, 1, 0) + "  a0",
		handID(epoch, 1, 1) + "  b0",
		handID(epoch, 1, 1) + " ready {}",
	}
	sameEvents(t, "state part", got, want)
	if n := mem.Requests("tasks", 0); n < 5 {
		t.Fatalf("partition 0 asked %d times, want the 3 NotOwner answers asked again", n)
	}

	// Forged: a change far past anything the tier holds.
	forged := proto.Change{Epoch: epoch, Partition: 0, From: 5000, Record: proto.Record{Offset: 5000, Key: []byte("a"), Value: []byte("forged"), Etag: "f"}}
	mem.PublishChange("tasks", &forged)
	mem.Produce("tasks", 1, "z", []byte("z1"), fixedNow.UnixMilli())
	if ev := c.mustNext(); ev.Data != "z1" || ev.ID != handID(epoch, 1, 2) {
		t.Fatalf("after a forged change: %+v, want z1 at %s", ev, handID(epoch, 1, 2))
	}
	eventually(t, 10*time.Second, "the forged change counted as bad by a probe", func() bool {
		return s.edgeCounter("ssekafka_edge_bad_changes_total") == 1
	})

	// Lagging: x never comes live (lost), y comes with From past the feed;
	// the holder that answers is still before x.
	mem.Lag("tasks", 0, 2)
	mem.Append("tasks", 0, "x", []byte("x1"), fixedNow.UnixMilli())
	mem.Produce("tasks", 0, "y", []byte("y2"), fixedNow.UnixMilli())
	eventually(t, 10*time.Second, "the gap found", func() bool {
		return s.edgeCounter("ssekafka_edge_live_gaps_total") >= 1
	})
	if ev, err := c.next(300 * time.Millisecond); err == nil {
		t.Fatalf("got %+v while the only holder lacked x", ev)
	}
	mem.Lag("tasks", 0, 0) // caught up: the next probe fills
	got = nil
	for len(got) < 2 {
		ev := c.mustNext()
		got = append(got, ev.ID+" "+ev.Data)
	}
	sameEvents(t, "after the holder caught up", got, []string{handID(epoch, 2, 2) + " x1", handID(epoch, 3, 2) + " y2"})
	if ev, err := c.next(300 * time.Millisecond); err == nil {
		t.Fatalf("then %+v, want nothing more (no duplicate, no forged change)", ev)
	}
	if n := s.edgeCounter("ssekafka_edge_bad_changes_total"); n != 1 {
		t.Fatalf("%v bad changes, want the one forged", n)
	}
}

// serveEdge serves an edge of cfg over HTTP for the length of the test.
func serveEdge(t *testing.T, cfg edge.Config, reg *prometheus.Registry) *stack {
	t.Helper()
	e, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		e.Close()
		srv.Close()
	})
	return &stack{t: t, edge: e, url: srv.URL, edgeReg: reg}
}

func sameEvents(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
		}
	}
}

// A null-key change that comes after a gap is not in the state pages that
// fill the gap (pages hold the latest record per key): when the fill ran
// past it, its live streams are reset, never left without it and unaware
// (docs/architecture.md rule 3).
func TestNullKeyChangeSkippedByItsFillResetsLiveStreams(t *testing.T) {
	const epoch = 7
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, epoch)
	mem.Append("tasks", 0, "a", []byte("a0"), fixedNow.UnixMilli())
	s := tierStack(t, mem)
	c := s.connect("/tasks", nil)
	c.untilReady()

	// x is lost on the way; the null-key record at 2 comes live with a gap
	// before it; the holder has moved past it (nk at 3 is its key's latest).
	mem.Append("tasks", 0, "x", []byte("x1"), fixedNow.UnixMilli())
	mem.Append("tasks", 0, "nk", []byte("old"), fixedNow.UnixMilli())
	mem.Append("tasks", 0, "nk", []byte("nk3"), fixedNow.UnixMilli())
	mem.PublishChange("tasks", &proto.Change{Epoch: epoch, Partition: 0, From: 2,
		Record: proto.Record{Offset: 2, TimeMs: fixedNow.UnixMilli(), KeyNull: true, Value: []byte("null-key"), Etag: "n2"}})
	var got []string
	for {
		ev, err := c.next(10 * time.Second)
		if err != nil {
			t.Fatalf("after %q: %v, want event: reset once the fill ran past the null-key change", got, err)
		}
		got = append(got, ev.Event+" "+ev.Data)
		if ev.Event == "reset" {
			break
		}
		if len(got) > 2 {
			t.Fatalf("no reset after the fill ran past the null-key change: %q", got)
		}
	}
	// What the fill brought may or may not be written before the reset
	// (the stream ends with it, and comes back for the whole state).
	for _, g := range got[:len(got)-1] {
		if g != " x1" && g != " nk3" {
			t.Fatalf("before the reset: %q, want only the fill's x1 and nk3", got)
		}
	}
}
