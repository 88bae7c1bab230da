package edge_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// cacheMember is one cache node of a test cluster.
type cacheMember struct {
	name    string
	node    *cache.Node
	members *membership.Cluster
	stop    func()
	leave   func()
}

// addCacheMember starts a cache node that gossips with join (none: a new
// cluster), with failure detection fast enough for tests.
func (s *stack) addCacheMember(name string, join ...string) *cacheMember {
	s.t.Helper()
	nc := s.connectNATS() // first: a failure here leaves no member running
	mc, err := membership.NewCluster(membership.Config{Name: name, Bind: "127.0.0.1:0", Join: join, Replicas: 2,
		ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 25 * time.Millisecond, SuspicionMult: 2,
		GossipInterval: 20 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	node, stopNode := s.runCache(cache.Config{Brokers: s.brokers, NATS: nc, Ownership: mc, Bootstrap: []string{"tasks"},
		TombstoneHorizon: time.Hour, HeadInterval: 100 * time.Millisecond, Logger: testLogger(s.t).With("node", name)})
	m := &cacheMember{name: name, node: node, members: mc}
	// stop is a crash: no goodbye to the cluster, connections just end.
	m.stop = func() {
		_ = mc.Shutdown()
		nc.Close()
		stopNode()
	}
	// leave is a graceful exit: the cluster hears a goodbye first.
	m.leave = func() {
		_ = mc.Leave(time.Second)
		nc.Close()
		stopNode()
	}
	s.t.Cleanup(m.stop)
	return m
}

// settled waits until every member sees n settled members.
func settled(t *testing.T, n int, ms ...*cacheMember) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("%d settled members", n), func() bool {
		for _, m := range ms {
			got := 0
			for _, x := range m.members.Members() {
				if x.Settled {
					got++
				}
			}
			if got != n || !m.node.Ready() {
				return false
			}
		}
		return true
	})
}

// clusterRun streams with clients while a producer writes and disrupt runs
// halfway, then checks that every client's view is exactly the topic.
func clusterRun(t *testing.T, s *stack, disrupt func()) {
	t.Helper()
	var m model
	m.add(s.produceToKafka("tasks", rec(0, "k0", "v0"), rec(1, "k1", "v1"), rec(2, "k2", "v2"))...)
	type client struct {
		c    *sseClient
		view map[string]string
	}
	var clients []*client
	for range 3 {
		c := &client{c: s.connect("/keyed", nil), view: map[string]string{}}
		for _, ev := range c.c.untilReady()[1:] {
			_, _, change := keyedEvent(t, ev)
			apply(c.view, change)
		}
		clients = append(clients, c)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		if i == 150 {
			disrupt()
		}
		k := rng.IntN(30)
		r := rec(int32(k%3), fmt.Sprintf("k%d", k), fmt.Sprintf("v%d", i))
		if rng.IntN(6) == 0 {
			r = tombstone(int32(k%3), fmt.Sprintf("k%d", k))
		}
		m.add(s.produceToKafka("tasks", r)...)
	}
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})
	for _, c := range clients {
		readUntilView(t, c.c, c.view, final)
	}
	// And a new client gets exactly the same state.
	sameView(t, "new client", s.newClientView("/keyed"), final)
}

func newClusterStack(t *testing.T) (*stack, []*cacheMember) {
	s := newStack(t, stackOptions{noCache: true})
	a := s.addCacheMember("a")
	settled(t, 1, a)
	b := s.addCacheMember("b", a.members.Addr())
	c := s.addCacheMember("c", a.members.Addr())
	settled(t, 3, a, b, c)
	return s, []*cacheMember{a, b, c}
}

func TestClusterPrimaryKilledWhileStreaming(t *testing.T) {
	s, ms := newClusterStack(t)
	clusterRun(t, s, func() {
		primary, _ := ms[0].members.Owners("tasks", 0)
		for _, m := range ms {
			if m.name == primary {
				m.stop()
				t.Logf("killed %s, primary of tasks/0", primary)
			}
		}
	})
}

func TestClusterNodeAddedWhileStreaming(t *testing.T) {
	s, ms := newClusterStack(t)
	clusterRun(t, s, func() {
		d := s.addCacheMember("d", ms[0].members.Addr())
		settled(t, 4, append(ms, d)...)
	})
}

func TestClusterLastNodeServesEverything(t *testing.T) {
	s, ms := newClusterStack(t)
	clusterRun(t, s, func() {
		ms[0].stop()
		ms[1].stop()
		eventually(t, 20*time.Second, "the others declared dead", func() bool { return len(ms[2].members.Members()) == 1 })
	})
	for p := range 3 {
		if role := ms[2].members.Role("tasks", int32(p)); role != membership.RolePrimary {
			t.Fatalf("last node: role %s for tasks/%d", role, p)
		}
	}
}

// The random-clients property (every id a client sees is exact, no value
// twice in a connection, every client ends exact) holds while cache nodes
// join, leave gracefully and crash mid-stream.
func TestPropertyRandomClientsUnderMembershipChanges(t *testing.T) {
	s, ms := newClusterStack(t)
	ops := 600
	if testing.Short() {
		ops = 200
	}
	stage := 0
	propertyRandomClients(t, s, func(op int) {
		switch {
		case stage == 0 && op >= ops/4:
			d := s.addCacheMember("d", ms[0].members.Addr())
			t.Logf("op %d: d joins", op)
			ms = append(ms, d)
		case stage == 1 && op >= ops/2:
			ms[1].leave()
			t.Logf("op %d: %s left", op, ms[1].name)
		case stage == 2 && op >= 3*ops/4:
			ms[0].stop()
			t.Logf("op %d: %s crashed", op, ms[0].name)
		default:
			return
		}
		stage++
	})
	if stage != 3 {
		t.Fatalf("only %d of 3 membership changes made", stage)
	}
}
