package accept

import (
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// testServer is an accept path with counters of its own and cfg's values.
func testServer(cfg Config) *Server {
	c := func() prometheus.Counter { return prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}) }
	v := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "v"}, []string{"reason"})
	}
	cfg.Metrics = Metrics{
		AcceptErrors: c(), TLSHandshakeErrors: c(), BadRequests: c(), Refusals: v(), ConnectionsRefused: v(),
		SetupRejected: c(), SetupWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"}),
		MemoryReleases: c(), HangupsSetup: c(), HangupsLive: c(),
	}
	return New(cfg)
}

var refusalBody = regexp.MustCompile(`^: ([a-z ]+)\nretry:(\d+)\n\n$`)

// Under queue pressure the refusal's retry grows with the backlog (waiting
// × mean setup time / workers), up to RetryMax. (Moved from package edge,
// where it also checked the stream's own retry: that half stays there.)
func TestRefusalRetryGrowsWithTheQueue(t *testing.T) {
	s := testServer(Config{Retry: time.Second, SetupConcurrency: 2, RetryMax: 20 * time.Second})
	q := &setupQueue{max: 1 << 20, mean: 100 * time.Millisecond}
	s.queue.Store(q)
	retry := func(waiting int) (lo, hi int64) {
		q.waiting = waiting
		lo, hi = 1<<62, 0
		for range 200 {
			rec := httptest.NewRecorder()
			s.Refuse(rec, reason.QueueFull)
			m := refusalBody.FindStringSubmatch(rec.Body.String())
			if m == nil || m[1] != reason.QueueFull.String() {
				t.Fatalf("body %q", rec.Body.String())
			}
			ms, _ := strconv.ParseInt(m[2], 10, 64)
			lo, hi = min(lo, ms), max(hi, ms)
		}
		return lo, hi
	}
	// 100 waiting: 100 × 100ms / 2 = 5s backlog, R = 6s: [6s, 12s].
	if lo, hi := retry(100); lo < 6000 || hi > 12000 || hi-lo < 3000 {
		t.Fatalf("100 waiting: retries in [%d, %d], want spread over [6000, 12000]", lo, hi)
	}
	if b := s.SetupBacklog(); b != 5*time.Second {
		t.Fatalf("100 waiting: backlog %v, want 5s", b)
	}
	// 10,000 waiting: capped at RetryMax/2 = 10s: [10s, 20s].
	if lo, hi := retry(10000); lo < 10000 || hi > 20000 || hi-lo < 5000 {
		t.Fatalf("10000 waiting: retries in [%d, %d], want spread over [10000, 20000]", lo, hi)
	}
	if lo, hi := retry(0); lo < 1000 || hi > 2000 {
		t.Fatalf("none waiting: retries in [%d, %d], want [1000, 2000]", lo, hi)
	}
}
