package tier_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
	"github.com/ssekafka/ssekafka/internal/poll"
)

// Callers of one key while an ask is in flight share it; a recent answer
// is given again to a caller that takes it, until its age has passed; past
// MaxCost the oldest answers leave first.
func TestShareCoalescesInFlightAndKeepsRecentAnswers(t *testing.T) {
	clock := tiertest.NewClock(start)
	var left []string
	s := &tier.Share[string, string]{
		Age:     func(string, error) time.Duration { return time.Minute },
		Cost:    func(v string) int { return len(v) },
		MaxCost: 6,
		Leave:   func(v string) { left = append(left, v) },
		Clock:   clock,
	}
	var asks atomic.Int64
	release := make(chan struct{})
	ask := func(v string) tier.Ask[string] {
		return tier.Ask[string]{Reuse: func(string) bool { return true }, Do: func(context.Context) (string, error) {
			asks.Add(1)
			<-release
			return v, nil
		}}
	}
	type answer struct {
		v      string
		shared bool
	}
	answers := make(chan answer, 2)
	var joined atomic.Int64
	for range 2 {
		go func() {
			a := ask("aaa")
			a.Joined = func() { joined.Add(1) }
			v, shared, err := s.Do(context.Background(), "a", a)
			if err != nil {
				t.Error(err)
			}
			answers <- answer{v, shared}
		}()
	}
	poll.Until(t, 10*time.Second, "one ask, the other caller joined", func() bool { return joined.Load() == 1 })
	close(release)
	a1, a2 := <-answers, <-answers
	if a1.v != "aaa" || a2.v != "aaa" || a1.shared == a2.shared || asks.Load() != 1 {
		t.Fatalf("answers %+v %+v after %d asks, want one ask shared", a1, a2, asks.Load())
	}
	if v, shared, _ := s.Do(context.Background(), "a", ask("new")); v != "aaa" || !shared || asks.Load() != 1 {
		t.Fatalf("recent: %q shared %v", v, shared)
	}
	if v, _, _ := s.Do(context.Background(), "b", ask("bbb")); v != "bbb" || s.Held() != 6 {
		t.Fatalf("b: %q, %d held", v, s.Held())
	}
	s.Do(context.Background(), "c", ask("c")) // past MaxCost: the oldest (a) leaves
	if len(left) != 1 || left[0] != "aaa" || s.Held() != 4 {
		t.Fatalf("left %q, %d held", left, s.Held())
	}
	clock.Advance(2 * time.Minute)
	if _, ok := s.Get("b"); ok {
		t.Fatal("an answer past its age is given again")
	}
	if v, shared, _ := s.Do(context.Background(), "b", ask("b2")); v != "b2" || shared {
		t.Fatalf("past its age: %q shared %v", v, shared)
	}
}
