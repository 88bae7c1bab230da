package edge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/membership"
)

// recAt is rec with its Kafka timestamp.
func recAt(p int32, key, value string, at time.Time) *kgo.Record {
	r := rec(p, key, value)
	r.Timestamp = at
	return r
}

// One key written to several partitions (a producer that changed its
// partitioner): a JSON read answers the newest record by time, wherever it
// lies and in whatever order it was written; on equal times the lowest
// partition's (issue 19.4).
func TestKeyReadAnswersNewestAcrossPartitions(t *testing.T) {
	s := newStack(t, stackOptions{})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	s.produce("tasks",
		recAt(0, "a", `"a new, partition 0"`, t0.Add(10*time.Second)), recAt(2, "a", `"a old, partition 2"`, t0),
		recAt(2, "b", `"b new, partition 2"`, t0.Add(10*time.Second)), recAt(0, "b", `"b old, partition 0"`, t0),
		recAt(1, "c", `"c partition 1"`, t0), recAt(2, "c", `"c partition 2"`, t0),
		recAt(2, "d", `"d partition 2"`, t0), recAt(1, "d", `"d partition 1"`, t0),
	)
	for key, want := range map[string]string{
		"a": `"a new, partition 0"`, "b": `"b new, partition 2"`, "c": `"c partition 1"`, "d": `"d partition 1"`,
	} {
		if status, _, body := s.getJSON(http.MethodGet, "/tasks/"+key, nil); status != 200 || body != want {
			t.Errorf("%s: %d %s, want %s", key, status, body, want)
		}
	}
	// A newer tombstone in one partition is not a record: the other's stands.
	s.produce("tasks", recAt(1, "e", `"e partition 1"`, t0), tombstone(2, "e"))
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/e", nil); status != 200 || body != `"e partition 1"` {
		t.Errorf("e: %d %s", status, body)
	}
}

// someOwnership holds the partitions named, as primary, and no other: a
// cache node of a tier split by hand.
type someOwnership map[int32]bool

var _ membership.Ownership = someOwnership(nil)

func (o someOwnership) Role(_ string, p int32) membership.Role {
	if o[p] {
		return membership.RolePrimary
	}
	return membership.RoleNone
}
func (someOwnership) Changed() <-chan struct{} { return nil }
func (someOwnership) SetCaughtUp(bool)         {}

// A partition that cannot be asked may hold the key's newest record: a
// JSON read is then 503 with Retry-After, never an older record from
// another partition passed off as current (issue 19.4).
func TestKeyReadWithAPartitionUnaskedIsUnavailable(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true, edgeCfg: func(c *edge.Config) { c.RequestTimeout = time.Second }})
	start := func(owned someOwnership) func() {
		_, stop := s.runCache(cache.Config{Brokers: s.brokers, NATS: s.connectNATS(), Ownership: owned, Bootstrap: []string{"tasks"},
			TombstoneHorizon: time.Hour, Logger: testLogger(t)})
		return stop
	}
	start(someOwnership{0: true, 1: true})
	stopB := start(someOwnership{2: true})
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	s.produce("tasks", recAt(0, "k", `"old"`, t0), recAt(2, "k", `"new"`, t0.Add(time.Second)))
	if status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil); status != 200 || body != `"new"` {
		t.Fatalf("both holders up: %d %s", status, body)
	}
	stopB()
	status, h, body := s.getJSON(http.MethodGet, "/tasks/k", nil)
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("partition 2 unasked: %d %s (Retry-After %q), want 503 with Retry-After", status, body, h.Get("Retry-After"))
	}
}

// keyReadLagConn delays every read from Kafka: a cache node behind its peers.
type keyReadLagConn struct {
	net.Conn
	delay time.Duration
}

func (c keyReadLagConn) Read(b []byte) (int, error) {
	time.Sleep(c.delay) // the lag itself, not a wait for a state
	return c.Conn.Read(b)
}

// addLaggingMember is addCacheMember for a node whose Kafka reads are
// delayed by delay: a caught-up standby a moment behind the primary.
func (s *stack) addLaggingMember(name string, delay time.Duration, join ...string) *cacheMember {
	s.t.Helper()
	mc, err := membership.NewCluster(membership.Config{Name: name, Bind: "127.0.0.1:0", Join: join, Replicas: 2,
		ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 25 * time.Millisecond, SuspicionMult: 2,
		GossipInterval: 20 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	dial := func(ctx context.Context, network, host string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, host)
		if err != nil {
			return nil, err
		}
		return keyReadLagConn{c, delay}, nil
	}
	nc := s.connectNATS()
	node, stopNode := s.runCache(cache.Config{Brokers: s.brokers, NATS: nc, Ownership: mc, Bootstrap: []string{"tasks"},
		TombstoneHorizon: time.Hour, HeadInterval: 100 * time.Millisecond, Logger: testLogger(s.t).With("node", name),
		KafkaOptions: []kgo.Opt{kgo.Dialer(dial)}})
	m := &cacheMember{name: name, node: node, members: mc}
	m.stop = func() {
		_ = mc.Shutdown()
		nc.Close()
		stopNode()
	}
	m.leave = m.stop
	s.t.Cleanup(m.stop)
	return m
}

// A reader whose own stream showed v2 never reads v1 back, though a
// caught-up standby a few hundred milliseconds behind shares the
// partition's requests with the primary: the edge's requests carry its
// feed's position, and a holder behind it is asked again, not believed
// (issue 19.4).
func TestKeyReadNeverOlderThanTheReadersStream(t *testing.T) {
	s, p := newLaggingStandbyStack(t, stackOptions{})
	s.produce("tasks", rec(p, "k", `"v0"`))
	live := s.connect("/tasks/k", nil)
	live.untilReady() // from either holder: the lagging one's may lack v0
	for i := 1; i <= 10; i++ {
		want := fmt.Sprintf(`"v%d"`, i)
		s.produceToKafka("tasks", rec(p, "k", want))
		untilShown(live, want)
		if status, _, body := s.getJSON(http.MethodGet, "/tasks/k", nil); status != 200 || body != want {
			t.Fatalf("read %d, after the stream showed %s: %d %s", i, want, status, body)
		}
	}
	t.Logf("replies from a holder behind the stream, asked again: %v", s.edgeCounter("ssekafka_edge_key_replies_behind_total"))
}

// untilShown reads c's messages until one is want.
func untilShown(c *sseClient, want string) {
	c.t.Helper()
	for nextMessage(c).Data != want {
	}
}

// newLaggingStandbyStack is a stack with two cache nodes, b's Kafka reads
// lagging, and a partition whose primary is a (the one that publishes what
// the edge's streams show).
func newLaggingStandbyStack(t *testing.T, o stackOptions) (*stack, int32) {
	t.Helper()
	o.noCache = true
	s := newStack(t, o)
	a := s.addCacheMember("a")
	settled(t, 1, a)
	b := s.addLaggingMember("b", 150*time.Millisecond, a.members.Addr())
	settled(t, 2, a, b)
	for p := range int32(3) {
		if primary, _ := a.members.Owners("tasks", p); primary == "a" {
			return s, p
		}
	}
	t.Fatal("the lagging node b is primary of every partition: rename the members so that a is primary of one")
	return nil, 0
}

// A read that joins a lookup begun before its own stream showed v2 does
// not take that lookup's answer when the holders that gave it had not
// applied v2 (a lagging standby): it asks again with its own floor
// (issue 19.4; reads of one key at once share a lookup, issue 12).
func TestKeyReadJoiningAnEarlierLookupNeverOlderThanTheReadersStream(t *testing.T) {
	var holding atomic.Bool
	var release atomic.Pointer[chan struct{}]
	var held atomic.Int64
	s, p := newLaggingStandbyStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		edge.HoldKeyReads(c, func() {
			if holding.Load() {
				held.Add(1)
				<-*release.Load()
			}
		})
	}})
	s.produce("tasks", rec(p, "k", `"v0"`))
	live := s.connect("/tasks/k", nil)
	live.untilReady() // from either holder: the lagging one's may lack v0
	type answer struct {
		status int
		body   string
	}
	read := func() chan answer {
		ch := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks/k", nil)
			req.Header.Set("Accept", "application/json")
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				ch <- answer{-1, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			ch <- answer{resp.StatusCode, string(b)}
		}()
		return ch
	}
	for i := 1; i <= 10; i++ {
		open := make(chan struct{})
		release.Store(&open)
		holding.Store(true)
		first := read() // its lookup takes the feed's position now, before v(i)
		eventually(t, 10*time.Second, "the first read's lookup held", func() bool { return held.Load() == int64(i) })
		want := fmt.Sprintf(`"v%d"`, i)
		s.produceToKafka("tasks", rec(p, "k", want))
		untilShown(live, want)
		shared := s.edgeCounter("ssekafka_edge_key_reads_shared_total")
		second := read() // after the stream showed v(i): joins the first one's lookup
		eventually(t, 10*time.Second, "the second read joined", func() bool {
			return s.edgeCounter("ssekafka_edge_key_reads_shared_total") == shared+1
		})
		holding.Store(false)
		close(open)
		if a := <-first; a.status != 200 && a.status != 404 {
			t.Fatalf("first read %d: %d %s", i, a.status, a.body) // its floor predates v(i): any older answer may do
		}
		if a := <-second; a.status != 200 || a.body != want {
			t.Fatalf("read %d, joined after the stream showed %s: %d %s", i, want, a.status, a.body)
		}
	}
}
