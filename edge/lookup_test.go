package edge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/devstack"
)

// status opens path as a stream and returns its status, closing it.
func (s *stack) status(path string) int {
	s.t.Helper()
	c, status := s.open(path, nil)
	if c != nil {
		c.close()
	}
	return status
}

// Names of topics nobody has, on a route with a topic pattern, cost the
// cache tier a metadata request each only within a rate per client
// address: past it they are refused (200 and a retry, as a browser
// survives) without a request. On 63c3e19 300 names cost 300 requests.
func TestUnknownTopicLookupsAreRateLimitedPerAddress(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.epoch("tasks")
	before := s.counter(s.cacheReg, "ssekafka_cache_meta_requests_total")
	start := time.Now()
	refused := 0
	for i := range 300 {
		switch st := s.status(fmt.Sprintf("/t/nobody-has-%d", i)); st {
		case http.StatusNotFound:
		case http.StatusOK: // refused with a retry
			refused++
		default:
			t.Fatalf("name %d: status %d", i, st)
		}
	}
	took := time.Since(start)
	asked := s.counter(s.cacheReg, "ssekafka_cache_meta_requests_total") - before
	// The per-address bucket: 50 at once, then 10 a second.
	if limit := 50 + 10*took.Seconds() + 2; asked > limit {
		t.Fatalf("300 unknown names in %v cost %v metadata requests, want at most %.0f", took, asked, limit)
	}
	if refused == 0 || labeled(t, s.edgeReg, "ssekafka_edge_topic_lookups_total", "result", "refused") != float64(refused) {
		t.Fatalf("%d refused, topic_lookups_total{refused} %v", refused, labeled(t, s.edgeReg, "ssekafka_edge_topic_lookups_total", "result", "refused"))
	}
	// A topic that exists, with a feed, is never refused.
	if st := s.status("/tasks"); st != http.StatusOK {
		t.Fatalf("/tasks: %d", st)
	}
}

// Clients at many addresses share the edge's own lookup rate: 20
// addresses of 50 unknown names each (each within its address's burst)
// cost at most the edge's burst of 500 and its rate of 100 a second.
func TestUnknownTopicLookupsAreRateLimitedPerEdge(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.epoch("tasks")
	before := s.counter(s.cacheReg, "ssekafka_cache_meta_requests_total")
	start := time.Now()
	refused := 0
	for a := range 20 {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+a))}
		s.client = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: local}).DialContext}}
		for i := range 50 {
			if s.status(fmt.Sprintf("/t/nobody-%d-%d", a, i)) == http.StatusOK {
				refused++
			}
		}
		s.client.CloseIdleConnections()
	}
	took := time.Since(start)
	asked := s.counter(s.cacheReg, "ssekafka_cache_meta_requests_total") - before
	if limit := 500 + 100*took.Seconds() + 2; asked > limit || refused == 0 {
		t.Fatalf("1000 unknown names from 20 addresses in %v cost %v metadata requests (%d refused), want at most %.0f", took, asked, refused, limit)
	}
}

// A name answered "no such topic" is remembered at most a second: a topic
// created just after is served soon (on 63c3e19 it stayed hidden ~10 s),
// and meanwhile asking again costs no request.
func TestNewTopicIsServedSoonAfterNotFound(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.epoch("tasks")
	if st := s.status("/t/fresh"); st != http.StatusNotFound {
		t.Fatalf("before it exists: %d, want 404", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, s.brokers, 1, "fresh"); err != nil {
		t.Fatal(err)
	}
	created := time.Now()
	eventually(t, 20*time.Second, "the new topic served", func() bool {
		c, st := s.open("/t/fresh", nil)
		if st != http.StatusOK {
			return false
		}
		defer c.close()
		ev := c.mustNext() // a refusal ends after its retry; a stream sends ready
		for ev.Event != "ready" {
			var err error
			if ev, err = c.next(10 * time.Second); err != nil {
				return false
			}
		}
		return true
	})
	if took := time.Since(created); took > 3*time.Second {
		t.Fatalf("a topic created after a 404 was served only after %v, want within a second or two", took)
	}
}
