package membership

import (
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/poll"
)

func members(spec ...string) []Member {
	var ms []Member
	for _, s := range spec {
		// "a" settled, "a?" joining
		settled := s[len(s)-1] != '?'
		if !settled {
			s = s[:len(s)-1]
		}
		ms = append(ms, Member{Name: s, Settled: settled})
	}
	return ms
}

// roles maps each member to its role in every partition of a topic.
func roles(ms []Member, replicas, partitions int) map[string][]Role {
	out := map[string][]Role{}
	for _, m := range ms {
		for p := range partitions {
			out[m.Name] = append(out[m.Name], roleOf(m.Name, ms, replicas, "t", int32(p)))
		}
	}
	return out
}

func TestEveryPartitionHasOnePrimaryAndReplicas(t *testing.T) {
	for _, replicas := range []int{1, 2, 3} {
		ms := members("a", "b", "c", "d")
		r := roles(ms, replicas, 64)
		perNode := map[string]int{}
		for p := range 64 {
			primaries, consumers := 0, 0
			for _, m := range ms {
				switch r[m.Name][p] {
				case RolePrimary:
					primaries++
					consumers++
					perNode[m.Name]++
				case RoleStandby:
					consumers++
				}
			}
			if primaries != 1 || consumers != replicas {
				t.Fatalf("replicas %d partition %d: %d primaries, %d consumers", replicas, p, primaries, consumers)
			}
		}
		for name, n := range perNode {
			if n < 6 {
				t.Errorf("replicas %d: %s is primary of only %d of 64 partitions", replicas, name, n)
			}
		}
	}
}

// A joining node consumes its share as a standby but is primary of nothing,
// and the nodes that held a partition keep it until the joiner settles.
func TestJoinerIsNeverPrimaryUntilSettled(t *testing.T) {
	for _, replicas := range []int{1, 2} {
		before := roles(members("a", "b", "c"), replicas, 64)
		during := roles(members("a", "b", "c", "j?"), replicas, 64)
		after := roles(members("a", "b", "c", "j"), replicas, 64)
		joinerShare := 0
		for p := range 64 {
			for _, name := range []string{"a", "b", "c"} {
				if before[name][p] == RolePrimary && during[name][p] != RolePrimary {
					t.Fatalf("replicas %d p%d: %s lost primary to a joiner", replicas, p, name)
				}
				if before[name][p] != RoleNone && during[name][p] == RoleNone {
					t.Fatalf("replicas %d p%d: %s dropped a partition before the joiner settled", replicas, p, name)
				}
			}
			if during["j"][p] == RolePrimary {
				t.Fatalf("replicas %d p%d: joiner is primary", replicas, p)
			}
			if after["j"][p] != RoleNone {
				joinerShare++
				if during["j"][p] != RoleStandby {
					t.Fatalf("replicas %d p%d: joiner owns it once settled but did not consume it while joining", replicas, p)
				}
			}
		}
		if joinerShare == 0 {
			t.Fatalf("replicas %d: joiner got nothing", replicas)
		}
	}
}

// When a primary dies, its partitions go to a node that already held them.
func TestDeadPrimaryReplacedByItsStandby(t *testing.T) {
	before := roles(members("a", "b", "c"), 2, 64)
	after := roles(members("b", "c"), 2, 64)
	for p := range 64 {
		if before["a"][p] != RolePrimary {
			continue
		}
		for _, name := range []string{"b", "c"} {
			if after[name][p] == RolePrimary && before[name][p] != RoleStandby {
				t.Fatalf("p%d: new primary %s did not hold the partition", p, name)
			}
		}
	}
}

func TestColdStartWithoutSettledMembers(t *testing.T) {
	r := roles(members("a?", "b?"), 1, 16)
	for p := range 16 {
		if (r["a"][p] == RolePrimary) == (r["b"][p] == RolePrimary) {
			t.Fatalf("p%d: want exactly one primary, got %v %v", p, r["a"][p], r["b"][p])
		}
	}
}

// Three real memberlist nodes on loopback: join, settle, leave.
func TestClusterGossip(t *testing.T) {
	fast := func(name string, join ...string) *Cluster {
		t.Helper()
		c, err := NewCluster(Config{Name: name, Bind: "127.0.0.1:0", Join: join, Replicas: 2,
			ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 25 * time.Millisecond, SuspicionMult: 2,
			GossipInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Shutdown() })
		return c
	}
	a := fast("a")
	b := fast("b", a.Addr())
	c := fast("c", a.Addr())
	waitFor(t, "three members, b and c joining", func() bool {
		ms := a.Members()
		return len(ms) == 3 && ms[0].Settled && !ms[1].Settled && !ms[2].Settled
	})
	changed := a.Changed()
	b.SetCaughtUp(true)
	c.SetCaughtUp(true)
	waitFor(t, "b and c settled as a sees them", func() bool {
		ms := a.Members()
		return len(ms) == 3 && ms[1].Settled && ms[2].Settled
	})
	// SetCaughtUp returns before the news is out: wait until every member
	// has heard it (each one's own news included) before comparing views.
	waitFor(t, "every member sees all three settled", func() bool {
		for _, n := range []*Cluster{a, b, c} {
			ms := n.Members()
			if len(ms) != 3 || !ms[0].Settled || !ms[1].Settled || !ms[2].Settled {
				return false
			}
		}
		return true
	})
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire")
	}
	for p := range 8 {
		pa, _ := a.Owners("t", int32(p))
		pc, _ := c.Owners("t", int32(p))
		if pa == "" || pa != pc {
			t.Fatalf("p%d: a says primary %q, c says %q", p, pa, pc)
		}
	}
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b gone", func() bool { return len(a.Members()) == 2 })
	_ = c.Shutdown() // a crash: no goodbye
	waitFor(t, "c declared dead", func() bool { return len(a.Members()) == 1 })
	if a.Role("t", 0) != RolePrimary {
		t.Fatal("the last member must be primary of everything")
	}
}

// SetCaughtUp keeps Ownership's contract (it must not block: the cache node
// calls it from its consume loop) even while memberlist cannot get the news
// out: here neither member gossips or probes, so UpdateNode would wait for
// its broadcast until the timeout. The update is still applied: the node
// sees itself settled, and watchers are woken.
func TestSetCaughtUpDoesNotBlock(t *testing.T) {
	silent := func(name string, join ...string) *Cluster {
		t.Helper()
		c, err := NewCluster(Config{Name: name, Bind: "127.0.0.1:0", Join: join,
			ProbeInterval: time.Hour, GossipInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Shutdown() })
		return c
	}
	a := silent("a")
	b := silent("b", a.Addr())
	waitFor(t, "b sees two members", func() bool { return len(b.Members()) == 2 })
	changed := b.Changed()
	start := time.Now()
	b.SetCaughtUp(true)
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Fatalf("SetCaughtUp blocked for %v", took)
	}
	waitFor(t, "b sees itself settled", func() bool {
		for _, m := range b.Members() {
			if m.Name == "b" {
				return m.Settled
			}
		}
		return false
	})
	select {
	case <-changed:
	default:
		t.Fatal("Changed did not fire")
	}
}

// An invalid Config value is an error naming the field, not replaced.
func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		field string
		cfg   Config
	}{
		{"Replicas", Config{Replicas: -1}},
		{"SuspicionMult", Config{SuspicionMult: -2}},
		{"ProbeInterval", Config{ProbeInterval: -time.Second}},
		{"ProbeTimeout", Config{ProbeTimeout: -1}},
		{"GossipInterval", Config{GossipInterval: -1}},
		{"Bind", Config{Bind: "no-port"}},
		{"Bind", Config{Bind: "127.0.0.1:70000"}},
		{"Bind", Config{Bind: "127.0.0.1:x"}},
		{"Join[1]", Config{Join: []string{"127.0.0.1:1", ""}}},
	} {
		tc.cfg.Name = "v"
		c, err := NewCluster(tc.cfg)
		if err == nil {
			_ = c.Shutdown()
		}
		if err == nil || !strings.Contains(err.Error(), "membership config: "+tc.field) {
			t.Errorf("%s: error %v, want one naming the field", tc.field, err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, cond)
}
