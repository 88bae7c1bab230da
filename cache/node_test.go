package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// testTier is a kfake cluster with a compacted topic "v" (one partition)
// and an embedded NATS server. (The cache's own tests cannot use
// internal/teststack: it imports this package.)
type testTier struct {
	addr    string
	cluster *kfake.Cluster
	nc      *nats.Conn
	prod    *kgo.Client // produces to "v"
}

func newTestTier(t *testing.T) *testTier {
	t.Helper()
	return newTestTierOn(t, devstack.KafkaOptions{})
}

// newTestTierOn is newTestTier with kfake started with kopts.
func newTestTierOn(t *testing.T, kopts devstack.KafkaOptions) *testTier {
	t.Helper()
	cluster, addr, err := devstack.StartKafka("127.0.0.1:0", kopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, []string{addr}, 1, "v"); err != nil {
		t.Fatal(err)
	}
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("v"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &testTier{addr: addr, cluster: cluster, nc: nc, prod: prod}
}

// run starts a cache node on the tier; it stops at the test's end.
func (tt *testTier) run(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, stop := tt.start(t, cfg)
	t.Cleanup(stop)
	return n
}

// start starts a cache node on the tier; stop stops it and waits for Run
// to return.
func (tt *testTier) start(t *testing.T, cfg Config) (n *Node, stop func()) {
	t.Helper()
	cfg.Brokers, cfg.NATS = []string{tt.addr}, tt.nc
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.Run(ctx)
	}()
	return n, func() { cancel(); <-done }
}

func (tt *testTier) state(t *testing.T, since int64) (proto.StatePage, error) {
	t.Helper()
	msg, err := tt.nc.Request(proto.Subjects{Prefix: "ssekafka"}.State("v", 0),
		proto.AppendStateRequest(nil, &proto.StateRequest{Since: since, MaxBytes: 1 << 20}), 5*time.Second)
	if err != nil {
		return proto.StatePage{}, err
	}
	return proto.DecodeStatePage(msg.Data)
}

// gatedFetches holds back a consumer: every fetched record waits until open
// is closed (a kgo hook on the client's fetch path).
type gatedFetches struct{ open chan struct{} }

func (g gatedFetches) OnFetchRecordBuffered(*kgo.Record) { <-g.open }

var _ kgo.HookFetchRecordBuffered = gatedFetches{}

// A holder that has not consumed what Kafka holds must not answer "OK,
// nothing since 0": an edge would skip the records. It stays out of the
// partition's queue group until caught up (defect 1 of issue 8).
func TestStateNotAnsweredBeforeCaughtUp(t *testing.T) {
	tt := newTestTier(t)
	for i := range 12 {
		produceValues(t, tt.prod, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	gate := gatedFetches{open: make(chan struct{})}
	var once sync.Once
	openGate := func() { once.Do(func() { close(gate.open) }) }
	n := tt.run(t, Config{Bootstrap: []string{"v"}, KafkaOptions: []kgo.Opt{kgo.WithHooks(gate)}})
	t.Cleanup(openGate) // before the node stops: cleanups run last first
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Wait(ctx, 5*time.Millisecond, func() bool {
		ts := n.loaded("v")
		return ts != nil && ts.partition(0) != nil
	}); err != nil {
		t.Fatal("partition never taken up")
	}
	page, err := tt.state(t, 0)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
	case err != nil:
		t.Fatal(err)
	case page.Status == proto.StatusNotOwner:
	default:
		t.Fatalf("a node that consumed nothing answered %s, next %d, %d records", page.Status, page.Next, len(page.Records))
	}
	openGate()
	if err := poll.Wait(ctx, 10*time.Millisecond, func() bool {
		page, err := tt.state(t, 0)
		return err == nil && page.Status == proto.StatusOK && page.Next == 12 && len(page.Records) == 12
	}); err != nil {
		t.Fatal("the caught-up node never answered the whole state")
	}
}

// switchable is an Ownership whose role for every partition the test sets.
type switchable struct {
	mu      sync.Mutex
	role    membership.Role
	changed chan struct{}
}

var _ membership.Ownership = (*switchable)(nil)

func newSwitchable(r membership.Role) *switchable {
	return &switchable{role: r, changed: make(chan struct{})}
}

func (s *switchable) Role(string, int32) membership.Role {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.role
}

func (s *switchable) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *switchable) SetCaughtUp(bool) {}

func (s *switchable) set(r membership.Role) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.role = r
	close(s.changed)
	s.changed = make(chan struct{})
}

// A state request that waits while its partition is released must not be
// answered "OK, nothing here" from the emptied state: it is answered
// NotOwner, so the edge asks again (defect 2 of issue 8).
func TestStateRequestDuringReleaseIsRetried(t *testing.T) {
	tt := newTestTier(t)
	for i := range 3 {
		produceValues(t, tt.prod, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("x")})
	}
	own := newSwitchable(membership.RolePrimary)
	n := tt.run(t, Config{Bootstrap: []string{"v"}, Ownership: own, MaxConcurrentRequests: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ps *partitionState
	if err := poll.Wait(ctx, 5*time.Millisecond, func() bool {
		if !n.Ready() {
			return false
		}
		ps = n.loaded("v").partition(0)
		if ps == nil {
			return false
		}
		ps.mu.RLock()
		defer ps.mu.RUnlock()
		return ps.sub != nil && ps.next == 3
	}); err != nil {
		t.Fatal("node never caught up")
	}
	ps.mu.RLock()
	sub := ps.sub
	ps.mu.RUnlock()
	n.sem <- struct{}{} // the only handler slot: the request waits in its callback
	type answer struct {
		page proto.StatePage
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		page, err := tt.state(t, 0)
		answered <- answer{page, err}
	}()
	if err := poll.Wait(ctx, 2*time.Millisecond, func() bool {
		d, _ := sub.Delivered()
		return d >= 1
	}); err != nil {
		t.Fatal("request never reached the node")
	}
	own.set(membership.RoleNone)
	if err := poll.Wait(ctx, 5*time.Millisecond, func() bool { return n.loaded("v").partition(0) == nil }); err != nil {
		t.Fatal("partition never released")
	}
	<-n.sem
	a := <-answered
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.page.Status != proto.StatusNotOwner {
		t.Fatalf("released partition answered %s with next %d and %d records, want %s",
			a.page.Status, a.page.Next, len(a.page.Records), proto.StatusNotOwner)
	}
}

// nothingOwned is an ownership that gives this node no partition.
type nothingOwned struct{}

func (nothingOwned) Role(string, int32) membership.Role { return membership.RoleNone }
func (nothingOwned) Changed() <-chan struct{}           { return nil }
func (nothingOwned) SetCaughtUp(bool)                   {}

// A node that holds none of a topic's partitions still answers metadata
// requests: after the holders crashed it may be the only node left, and
// silence held every edge's feed of the topic until its request timed out.
func TestMetaAnsweredByANodeHoldingNothing(t *testing.T) {
	tt := newTestTier(t)
	n := tt.run(t, Config{Bootstrap: []string{"v"}, Ownership: nothingOwned{}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := poll.Wait(ctx, 10*time.Millisecond, func() bool { return n.loaded("v") != nil }); err != nil {
		t.Fatal("topic never loaded")
	}
	start := time.Now()
	msg, err := tt.nc.Request(proto.Subjects{Prefix: "ssekafka"}.Meta("v"), proto.AppendMetaRequest(nil), 5*time.Second)
	if err != nil {
		t.Fatalf("no answer from a node holding nothing: %v", err)
	}
	m, err := proto.DecodeMeta(msg.Data)
	if err != nil || m.Status != proto.StatusOK || m.Partitions != 1 {
		t.Fatalf("meta %+v, %v", m, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answered after %v", d)
	}
}

// A node that has stopped answers no state request: on main before this
// test it kept its partitions' queue subscriptions, so a stopped node
// sharing a NATS connection (dev mode, tests) answered edges with errors
// ("client closed") instead of leaving them to a live holder.
func TestStoppedNodeLeavesStateRequests(t *testing.T) {
	tt := newTestTier(t)
	produceValues(t, tt.prod, &kgo.Record{Key: []byte("k"), Value: []byte("v")})
	_, stopNode := tt.start(t, Config{Bootstrap: []string{"v"}})
	var once sync.Once
	defer once.Do(stopNode)
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := poll.Wait(wait, 10*time.Millisecond, func() bool {
		page, err := tt.state(t, 0)
		return err == nil && page.Status == proto.StatusOK && page.Next == 1
	}); err != nil {
		t.Fatal("the node never answered the state")
	}
	once.Do(stopNode)
	if page, err := tt.state(t, 0); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("a stopped node answered a state request: %s %q (err %v), want no responders", page.Status, page.Error, err)
	}
}

// A cache answers only to inboxes: its user may publish on the change
// subjects by design, so a request whose reply subject names one
// (ssekafka.ev.*) would have it publish there. Such a request is not
// answered, and is counted.
func TestRequestsWithAReplyOnChangeSubjectsAreNotAnswered(t *testing.T) {
	tt := newTestTier(t)
	produceValues(t, tt.prod, &kgo.Record{Key: []byte("k"), Value: []byte("v")})
	n := tt.run(t, Config{Bootstrap: []string{"v"}})
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := poll.Wait(wait, 10*time.Millisecond, func() bool {
		page, err := tt.state(t, 0)
		return err == nil && page.Status == proto.StatusOK && page.Next == 1
	}); err != nil {
		t.Fatal("the node never answered the state")
	}
	subj := proto.Subjects{Prefix: "ssekafka"}
	target := subj.Event("other", 0) // a change subject nobody else publishes on here
	sniff, err := tt.nc.SubscribeSync(target)
	if err != nil {
		t.Fatal(err)
	}
	requests := []struct {
		subject string
		data    []byte
	}{
		{subj.State("v", 0), proto.AppendStateRequest(nil, &proto.StateRequest{Since: 0, MaxBytes: 1 << 20})},
		{subj.State("v", 0), proto.AppendKeyRequest(nil, &proto.KeyRequest{Key: []byte("k")})},
		{subj.Meta("v"), proto.AppendMetaRequest(nil)},
		{subj.Topics(), nil},
	}
	for _, q := range requests {
		if err := tt.nc.PublishRequest(q.subject, target, q.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := poll.Wait(wait, 10*time.Millisecond, func() bool {
		if m, err := sniff.NextMsg(time.Millisecond); err == nil {
			t.Fatalf("the cache published %d bytes on %s, a change subject, as an answer", len(m.Data), target)
		}
		return testutil.ToFloat64(n.metrics.badReplies) == float64(len(requests))
	}); err != nil {
		t.Fatalf("bad reply subjects counted %v, want %d", testutil.ToFloat64(n.metrics.badReplies), len(requests))
	}
	// Requests with an inbox are still answered.
	if page, err := tt.state(t, 0); err != nil || page.Status != proto.StatusOK {
		t.Fatalf("state after: %v, %v", page.Status, err)
	}
}
