package edge_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// A resume from the ring right after the partition's primary crashed, before
// a standby takes over: the standby has applied a record that nobody
// published, and the stream's ready must hold it (what the tier held when
// the stream started), not the feed's position frozen at the crash.
func TestRingResumeAfterPrimaryCrashHoldsWhatStandbyApplied(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true})
	a := s.addCacheMember("a")
	settled(t, 1, a)
	b := s.addCacheMember("b", a.members.Addr())
	settled(t, 2, a, b)
	primary, standbys := a.members.Owners("tasks", 0)
	if len(standbys) != 1 {
		t.Fatalf("tasks/0: primary %s, standbys %v: want one standby", primary, standbys)
	}
	byName := map[string]*cacheMember{a.name: a, b.name: b}

	s.produce("tasks", rec(0, "k", "v1"))
	c := s.connect("/tasks", nil)
	c.untilReady()
	s.produce("tasks", rec(0, "k", "v2")) // a live change: the feed hears its primary now
	ev := c.mustNext()
	if ev.Data != "v2" {
		t.Fatalf("live event %+v, want v2", ev)
	}
	// A storm: another stream begins its state part just before the crash,
	// so the resume below may be written from the ring.
	s.connect("/tasks", nil).untilReady()

	byName[primary].stop()
	t.Logf("killed %s, primary of tasks/0", primary)
	s.produce("tasks", rec(0, "k", "v3")) // the standby applies it; no primary publishes it

	var got []string
	for _, ev := range s.connect("/tasks", http.Header{"Last-Event-ID": {ev.ID}}).untilReady() {
		if ev.HasData {
			got = append(got, ev.Event+":"+ev.Data)
		}
	}
	if !slices.Contains(got, ":v3") {
		t.Fatalf("resume from %s after the primary crashed got ready without v3, which the standby had applied before it asked: %q", ev.ID, got)
	}
}

// Heads name their publisher and when it became primary, so that an edge
// (no memberlist member) sees the primary change in the first head of the
// new one: after the primary of tasks/0 crashes, the standby's heads carry
// its own name and a generation of its own.
func TestHeadsNameTheirPrimary(t *testing.T) {
	s := newStack(t, stackOptions{noCache: true})
	a := s.addCacheMember("a")
	settled(t, 1, a)
	b := s.addCacheMember("b", a.members.Addr())
	settled(t, 2, a, b)
	primary, standbys := a.members.Owners("tasks", 0)
	if len(standbys) != 1 {
		t.Fatalf("tasks/0: primary %s, standbys %v: want one standby", primary, standbys)
	}
	byName := map[string]*cacheMember{a.name: a, b.name: b}

	var mu sync.Mutex
	var heads []proto.Head
	nc := s.connectNATS()
	sub, err := nc.Subscribe(proto.Subjects{Prefix: "ssekafka"}.Event("tasks", 0), func(m *nats.Msg) {
		if h, err := proto.DecodeHead(m.Data); err == nil {
			mu.Lock()
			heads = append(heads, h)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	last := func() proto.Head {
		mu.Lock()
		defer mu.Unlock()
		if len(heads) == 0 {
			return proto.Head{}
		}
		return heads[len(heads)-1]
	}
	// (Until the primary's: a node that was primary before the cluster
	// settled says so until it notices.)
	eventually(t, 10*time.Second, "a head of tasks/0 from "+primary, func() bool { return last().Publisher == primary })
	first := last()
	if first.Generation == 0 {
		t.Fatalf("head %+v: want a generation", first)
	}
	byName[primary].stop()
	eventually(t, 20*time.Second, "a head of the new primary", func() bool { return last().Publisher == standbys[0] })
	if h := last(); h.Generation == 0 || h.Generation == first.Generation {
		t.Fatalf("new primary's head %+v: want a generation of its own (the old one's was %d)", h, first.Generation)
	}
}
