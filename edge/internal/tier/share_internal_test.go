package tier

import (
	"testing"
	"time"
)

// A key answered again and again behind one young answer keeps only its
// newest answer reachable: the replaced ones leave the eviction order, so
// what the share holds stays bounded by its keys, not by its asks.
func TestShareForgetsReplacedAnswers(t *testing.T) {
	s := &Share[string, []byte]{
		Age:     func([]byte, error) time.Duration { return time.Hour },
		MaxCost: 1 << 20,
	}
	s.Put("front", []byte("young and live: the order's oldest entry"))
	for range 10_000 {
		s.Put("again", make([]byte, 1024))
	}
	s.mu.Lock()
	entries, stale := len(s.order), s.stale
	s.mu.Unlock()
	if entries > 2*32+4 {
		t.Errorf("order holds %d entries (%d stale) for 2 keys: replaced answers are kept", entries, stale)
	}
	if got, ok := s.Get("again"); !ok || len(got) != 1024 {
		t.Errorf("the newest answer is gone: %v %v", len(got), ok)
	}
	if _, ok := s.Get("front"); !ok {
		t.Error("the young answer in front was dropped")
	}
	if held := s.Held(); held != 2 {
		t.Errorf("Held = %d, want 2 (one answer per key)", held)
	}
}
