package hub

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/route"
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

func testHub(t *testing.T, cfg Config) *Hub {
	t.Helper()
	cfg.Log = slog.New(slog.DiscardHandler)
	m := metrics.New(nil)
	acc := accept.New(accept.Config{Handler: http.NotFoundHandler(), MaxConnections: 100, SetupConcurrency: 2, SetupQueue: 16,
		SetupPerAddress: 2, SetupQueuePerAddress: 16, WriteTimeout: time.Second, Retry: cfg.Retry, RetryMax: cfg.RetryMax,
		Log: cfg.Log, TLSLog: cfg.Log, Metrics: accept.Metrics{AcceptErrors: m.AcceptErrors, TLSHandshakeErrors: m.TLSHandshakeErrors,
			BadRequests: m.BadRequests, Refusals: m.Refusals, ConnectionsRefused: m.ConnectionsRefused, SetupRejected: m.SetupRejected,
			SetupWait: m.SetupWait, MemoryReleases: m.MemoryReleases, HangupsSetup: m.HangupsSetup, HangupsLive: m.HangupsLive}})
	t.Cleanup(acc.Close)
	h, err := New(cfg, acc, m)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A stream's retry spreads over the setup queue's backlog (in a storm,
// streams started together would come back together): with a 5s backlog
// (100 waiting × 100ms / 2 workers, edge/internal/accept's
// TestRefusalRetryGrowsWithTheQueue) it is Retry with its jitter (20%) plus
// up to 5s; with none, Retry with its jitter.
func TestStreamRetrySpreadsOverTheSetupBacklog(t *testing.T) {
	cfg := Config{Retry: time.Second, RetryJitter: 0.2, RetryMax: 20 * time.Second}
	lo, hi := int64(1<<62), int64(0)
	for range 200 {
		ms := streamRetryMs(&cfg, 5*time.Second)
		lo, hi = min(lo, ms), max(hi, ms)
	}
	if lo < 1000 || hi > 6200 || hi-lo < 2500 {
		t.Fatalf("stream retries with 100 waiting in [%d, %d], want spread over [1000, 6200]", lo, hi)
	}
}

// A feed that stays stopped between lookup and join (here: one left in the
// map, stopped) is looked up again, then refused as restarting: 200 and
// the reason, not 503.
func TestRefusedWhileFeedRestarting(t *testing.T) {
	r, err := route.Compile(route.Config{Paths: []string{"/tasks"}, Topic: "tasks"})
	if err != nil {
		t.Fatal(err)
	}
	e := testHub(t, Config{Retry: time.Second, RetryMax: 30 * time.Second, RequestTimeout: time.Second})
	f := &feed{e: e, topic: "tasks", ready: make(chan struct{}), done: make(chan struct{}), views: map[string]*view{}, stopped: true}
	close(f.ready)
	e.feeds["tasks"] = f
	req := httptest.NewRequest(http.MethodGet, "/tasks", nil)
	if got := e.AdmitLookup(req, "tasks"); got != LookupFree { // as ServeHTTP asks first
		t.Fatalf("lookup of a topic with a (stopped) feed: %v, want free", got)
	}
	rec := httptest.NewRecorder()
	e.Stream(rec, req, r, 0, "tasks", nil, "")
	if got, ms := refusal(t, rec); got != reason.FeedRestarting.String() || ms < 1000 || ms > 2000 {
		t.Fatalf("refusal %q retry %d", got, ms)
	}
	if f.clients != 0 {
		t.Fatalf("%d clients joined a stopped feed", f.clients)
	}
}
