package tier

import (
	"context"
	"sync"
	"time"
)

// Share is the edge's one sharing layer for answers of the cache tier
// (docs/architecture.md rule 8): callers that ask for the same key while an ask is in
// flight share it, and answers are kept as recent for a while, to be given
// again. One eviction rule: a recent answer leaves once older than its Age,
// and the oldest leave first while the recent together cost more than
// MaxCost. mu is a leaf but for Leave, called with it held.
type Share[K comparable, V any] struct {
	// Age is how long an answer is kept as recent (0: not kept); nil: none is.
	Age func(v V, err error) time.Duration
	// Cost is what a recent answer counts against MaxCost; nil: 1.
	Cost    func(V) int
	MaxCost int
	// Keep and Leave, if set, are called (with the share's lock held) for
	// an answer that enters the recent, and one that leaves it.
	Keep, Leave func(V)
	// Clock is the time; nil: SystemClock.
	Clock Clock

	mu       sync.Mutex
	inflight map[K]*call[V]
	recent   map[K]*call[V]
	order    []keyedCall[K, V] // recent, oldest first (with stale duplicates)
	stale    int               // entries of order whose key has a newer answer since
	cost     int
}

// call is one ask and its answer.
type call[V any] struct {
	done chan struct{} // closed once v and err are set
	v    V
	err  error
	at   time.Time     // when answered
	age  time.Duration // how long it is kept as recent
	cost int
}

type keyedCall[K comparable, V any] struct {
	k K
	c *call[V]
}

// Ask is how one caller asks a Share.
type Ask[V any] struct {
	// Reuse says whether a recent answer serves this caller; nil: none does.
	Reuse func(V) bool
	// Fresh: an ask of its own even while one is in flight; it takes that
	// one's place for the callers that come later.
	Fresh bool
	// Admit is called, with the share's lock held, before an ask of this
	// caller's own starts: an error refuses it (nothing joined is charged).
	Admit func() error
	// Joined is called, with the share's lock held, when this caller joins
	// an ask in flight.
	Joined func()
	// Do asks. It runs on a goroutine of its own with a context that is not
	// the caller's (a caller that leaves fails no other): Do bounds itself.
	Do func(ctx context.Context) (V, error)
}

func (s *Share[K, V]) clock() Clock {
	if s.Clock == nil {
		return SystemClock{}
	}
	return s.Clock
}

// Do returns key's answer: a recent one (when a.Reuse takes it), the one
// in flight, or that of a new ask. shared says it was not this caller's own.
func (s *Share[K, V]) Do(ctx context.Context, key K, a Ask[V]) (v V, shared bool, err error) {
	now := s.clock().Now()
	s.mu.Lock()
	s.trimLocked(now)
	if c := s.recent[key]; c != nil && a.Reuse != nil && now.Sub(c.at) <= c.age && a.Reuse(c.v) {
		s.mu.Unlock()
		return c.v, true, nil
	}
	c := s.inflight[key]
	if c != nil && !a.Fresh {
		shared = true
		if a.Joined != nil {
			a.Joined()
		}
	} else {
		if a.Admit != nil {
			if err := a.Admit(); err != nil {
				s.mu.Unlock()
				return v, false, err
			}
		}
		c = &call[V]{done: make(chan struct{})}
		if s.inflight == nil {
			s.inflight = map[K]*call[V]{}
		}
		s.inflight[key] = c
		go s.ask(key, c, a.Do)
	}
	s.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		return v, false, ctx.Err()
	}
	return c.v, shared, c.err
}

// ask makes c's ask and keeps its answer as recent, as Age says.
func (s *Share[K, V]) ask(key K, c *call[V], do func(context.Context) (V, error)) {
	v, err := do(context.Background())
	c.v, c.err, c.at = v, err, s.clock().Now()
	s.mu.Lock()
	if s.inflight[key] == c {
		delete(s.inflight, key)
	}
	if s.Age != nil {
		c.age = s.Age(v, err)
	}
	c.cost = 1
	if s.Cost != nil {
		c.cost = s.Cost(v)
	}
	if c.age > 0 && c.cost <= s.MaxCost {
		s.keepLocked(key, c)
	}
	s.mu.Unlock()
	close(c.done)
}

// keepLocked makes c key's recent answer; the caller holds s.mu.
func (s *Share[K, V]) keepLocked(key K, c *call[V]) {
	if old := s.recent[key]; old != nil {
		s.cost -= old.cost
		s.leave(old.v)
		s.stale++
	}
	if s.recent == nil {
		s.recent = map[K]*call[V]{}
	}
	s.recent[key] = c
	if s.Keep != nil {
		s.Keep(c.v)
	}
	s.order = append(s.order, keyedCall[K, V]{key, c})
	s.cost += c.cost
	s.trimLocked(c.at)
}

func (s *Share[K, V]) leave(v V) {
	if s.Leave != nil {
		s.Leave(v)
	}
}

// Put keeps v as key's recent answer, as if asked now (an answer that
// came another way).
func (s *Share[K, V]) Put(key K, v V) {
	c := &call[V]{done: make(chan struct{}), v: v, at: s.clock().Now(), cost: 1}
	close(c.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Age != nil {
		c.age = s.Age(v, nil)
	}
	if s.Cost != nil {
		c.cost = s.Cost(v)
	}
	if c.age > 0 && c.cost <= s.MaxCost {
		s.keepLocked(key, c)
	}
}

// Get returns key's recent answer, if one younger than its age is kept.
func (s *Share[K, V]) Get(key K) (v V, ok bool) {
	now := s.clock().Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.recent[key]; c != nil && now.Sub(c.at) <= c.age {
		return c.v, true
	}
	return v, false
}

// trimLocked drops recent answers older than their age, then the oldest
// until the rest cost at most MaxCost. Entries of order that a newer answer
// replaced leave with them, or all at once when they are most of order:
// a key asked again and again behind one young answer holds no old answers.
// The caller holds s.mu.
func (s *Share[K, V]) trimLocked(now time.Time) {
	n := 0
	for _, r := range s.order {
		if s.recent[r.k] != r.c { // replaced by a newer answer
			n++
			s.stale--
			continue
		}
		if now.Sub(r.c.at) <= r.c.age && s.cost <= s.MaxCost {
			break
		}
		s.cost -= r.c.cost
		s.leave(r.c.v)
		delete(s.recent, r.k)
		n++
	}
	if n > 0 {
		clear(s.order[:n])
		s.order = s.order[n:]
	}
	if s.stale > 32 && s.stale > len(s.order)/2 {
		kept := s.order[:0]
		for _, r := range s.order {
			if s.recent[r.k] == r.c {
				kept = append(kept, r)
			}
		}
		clear(s.order[len(kept):])
		s.order, s.stale = kept, 0
	}
}

// SetMaxCost bounds what the recent answers cost together.
func (s *Share[K, V]) SetMaxCost(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.MaxCost = n
	s.trimLocked(s.clock().Now())
}

// Held is what the recent answers cost together.
func (s *Share[K, V]) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cost
}

// Each calls fn for every recent answer, with the share's lock held.
func (s *Share[K, V]) Each(fn func(V)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.recent {
		fn(c.v)
	}
}
