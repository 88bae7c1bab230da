package edge

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

var refusalBody = regexp.MustCompile(`^: ([a-z ]+)\nretry:(\d+)\n\n$`)

// refusal returns a refusal's reason and retry, failing unless it is a 200
// event stream an EventSource reads to its end.
func refusal(t *testing.T, rec *httptest.ResponseRecorder) (string, int64) {
	t.Helper()
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q: want 200 text/event-stream", rec.Code, rec.Header().Get("Content-Type"))
	}
	m := refusalBody.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("body %q", rec.Body.String())
	}
	ms, _ := strconv.ParseInt(m[2], 10, 64)
	return m[1], ms
}

func testEdge(t *testing.T, cfg Config) *Edge {
	t.Helper()
	cfg.NATS = &nats.Conn{}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Each reason is a 200 event stream: the reason as a comment, then a retry
// drawn from [Retry, 2·Retry] (spread even with RetryJitter off), 1s when
// Retry is Off (retry:0 would bring refused clients straight back).
func TestRefusalBytes(t *testing.T) {
	for _, tc := range []struct {
		retry  time.Duration
		lo, hi int64
	}{{time.Second, 1000, 2000}, {Off, 1000, 2000}, {250 * time.Millisecond, 250, 500}} {
		e := testEdge(t, Config{Retry: tc.retry, RetryJitter: Off})
		seen := map[int64]bool{}
		for _, why := range []reason.Reason{reason.CacheUnavailable, reason.FeedRestarting, reason.QueueFull, reason.Draining} {
			for range 20 {
				rec := httptest.NewRecorder()
				e.acc.Refuse(rec, why)
				got, ms := refusal(t, rec)
				if got != why.String() || ms < tc.lo || ms > tc.hi {
					t.Fatalf("Retry %v: reason %q retry %d, want %q in [%d, %d]", tc.retry, got, ms, why, tc.lo, tc.hi)
				}
				seen[ms] = true
			}
		}
		if len(seen) < 10 {
			t.Fatalf("Retry %v: 80 refusals drew only %d distinct retries", tc.retry, len(seen))
		}
	}
}

// A stream's retry with no stream waiting for a setup worker is Retry
// with its jitter (20%); the spread over a backlog is hub's
// TestStreamRetrySpreadsOverTheSetupBacklog.
func TestStreamRetryWithNoneWaitingIsRetryWithItsJitter(t *testing.T) {
	e := testEdge(t, Config{Retry: time.Second, SetupConcurrency: 2, RetryMax: 20 * time.Second})
	for range 50 {
		if ms := e.hub.RetryMs(); ms < 1000 || ms > 1200 {
			t.Fatalf("stream retry %d with none waiting, want sse.retry with its jitter", ms)
		}
	}
}
