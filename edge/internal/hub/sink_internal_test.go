package hub

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/proto"
)

// countingSink counts the calls a feed makes to a live client's sink.
type countingSink struct{ flushes int }

func (s *countingSink) flush()                { s.flushes++ }
func (s *countingSink) live(*liveStream) bool { return true }

// The feed calls a live client's sink once per batch of changes it
// delivered, not once per event (the hot path: no interface call per event
// per client), and the client's writer gets every frame of the batch.
func TestSinkIsFlushedOncePerBatchNotPerEvent(t *testing.T) {
	e := &Hub{metrics: metrics.New(nil)}
	e.cfg.Now = fixedClock
	f := &feed{e: e, views: map[string]*view{}}
	f.progress = proto.Progress{Epoch: 1, Offsets: make([]int64, 1)}
	c := newClient(1<<20, math.MaxInt)
	if _, ok := f.join("v", nil, frameFormat{id: proto.IDEtag}, c); !ok {
		t.Fatal("join")
	}
	sk := &countingSink{}
	c.sink, c.live = sk, true
	rec := proto.Record{Key: []byte("k"), Value: []byte("v")}
	for batch := range 3 {
		f.mu.Lock()
		for i := range 100 {
			rec.Offset = int64(batch*100 + i)
			f.deliver(0, &rec)
		}
		f.mu.Unlock()
		f.flushDirty()
		if sk.flushes != batch+1 {
			t.Fatalf("batch %d: %d flushes, want one per batch", batch, sk.flushes)
		}
		frames, _, _ := c.take()
		if frames == nil || len(frames.bufs) != 100 {
			t.Fatalf("batch %d: the writer took %v frames, want 100", batch, frames)
		}
		putIovecs(frames)
	}
}

// A stream's sink is chosen once, when its response starts, by what the
// connection is: a raw socket (liveConn, on Linux), a hijacked connection
// without one (TLS: goSink), or a ResponseWriter (HTTP/2, or NoHijack).
func TestResponseChoosesItsSinkByConnection(t *testing.T) {
	plain := "*hub.goSink"
	if runtime.GOOS == "linux" {
		plain = "*hub.liveConn"
	}
	for _, tc := range []struct {
		name           string
		tls, h2, noHij bool
		want           string
	}{
		{"plain", false, false, false, plain},
		{"no hijack", false, false, true, "*hub.responseSink"},
		{"tls", true, false, false, "*hub.goSink"},
		{"h2", true, true, false, "*hub.responseSink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &Hub{metrics: metrics.New(nil), done: make(chan struct{})}
			e.cfg.WriteTimeout, e.cfg.NoHijack = time.Second, tc.noHij
			s := newStreamer(e)
			got := make(chan string, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				st := &setup{s: &s, w: w, r: r, c: newClient(8, 1<<20)}
				_, sk := st.startResponse()
				got <- fmt.Sprintf("%T", sk)
				if st.conn != nil {
					_ = st.conn.Close()
				}
			}))
			srv.EnableHTTP2 = tc.h2
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if kind := <-got; kind != tc.want {
				t.Fatalf("sink %s, want %s", kind, tc.want)
			}
		})
	}
}
