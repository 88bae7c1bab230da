package edge_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// getJSON sends a JSON read and returns its status, headers and body.
func (s *stack) getJSON(method, path string, h http.Header) (int, http.Header, string) {
	s.t.Helper()
	status, header, body, _ := s.getJSONWith(nil, method, path, h)
	return status, header, body
}

func withEtag(r *kgo.Record, etag string) *kgo.Record {
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: "etag", Value: []byte(etag)})
	return r
}

// A GET that accepts application/json on a keyed route is a read of the
// key's current value (issue 12): its ETag is the record's etag header, or
// its position; If-None-Match gives 304; a missing or deleted key is 404; a
// route that is not keyed says so (406). On both of the edge's paths.
func TestKeyReadServesCurrentValue(t *testing.T) {
	for _, viaNetHTTP := range []bool{false, true} {
		t.Run(fmt.Sprintf("viaNetHTTP=%v", viaNetHTTP), func(t *testing.T) {
			s := newStack(t, stackOptions{viaNetHTTP: viaNetHTTP})
			s.produce("tasks", withEtag(rec(0, "a", `{"n":1}`), "rev-1"), rec(2, "b", "plain"))
			b := s.produce("tasks", rec(2, "b", "plain 2"))[0]

			status, h, body := s.getJSON(http.MethodGet, "/tasks/a", nil)
			if status != 200 || body != `{"n":1}` || h.Get("ETag") != `"rev-1"` || h.Get("Content-Type") != "application/json" ||
				h.Get("Cache-Control") != "no-cache" || h.Get("Content-Length") != "7" {
				t.Fatalf("a: %d %q %v", status, body, h)
			}
			wantB := fmt.Sprintf(`"%d-2-%d"`, s.epoch("tasks"), b.Offset)
			if status, h, body := s.getJSON(http.MethodGet, "/tasks/b", nil); status != 200 || body != "plain 2" ||
				h.Get("ETag") != wantB || h.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("b: %d %q %v, want ETag %s", status, body, h, wantB)
			}
			for _, inm := range []string{`"rev-1"`, `W/"rev-1"`, `"x", "rev-1"`, `*`} {
				if status, h, body := s.getJSON(http.MethodGet, "/tasks/a", http.Header{"If-None-Match": {inm}}); status != 304 || body != "" || h.Get("ETag") != `"rev-1"` {
					t.Fatalf("If-None-Match %s: %d %q %v", inm, status, body, h)
				}
			}
			if status, _, _ := s.getJSON(http.MethodGet, "/tasks/a", http.Header{"If-None-Match": {`"rev-0"`}}); status != 200 {
				t.Fatalf("If-None-Match of another etag: %d", status)
			}
			if status, h, body := s.getJSON(http.MethodHead, "/tasks/a", nil); status != 200 || body != "" || h.Get("Content-Length") != "7" {
				t.Fatalf("HEAD: %d %q %v", status, body, h)
			}

			s.produce("tasks", withEtag(rec(0, "a", `{"n":2}`), "rev-2"), tombstone(2, "b"))
			if status, h, body := s.getJSON(http.MethodGet, "/tasks/a", http.Header{"If-None-Match": {`"rev-1"`}}); status != 200 || body != `{"n":2}` || h.Get("ETag") != `"rev-2"` {
				t.Fatalf("a overwritten: %d %q %v", status, body, h)
			}
			for _, path := range []string{"/tasks/b", "/tasks/never"} {
				if status, _, body := s.getJSON(http.MethodGet, path, nil); status != 404 {
					t.Fatalf("%s: %d %q, want 404", path, status, body)
				}
			}
			if status, _, body := s.getJSON(http.MethodGet, "/tasks", nil); status != 406 {
				t.Fatalf("a route without a key filter: %d %q, want 406", status, body)
			}
			// An EventSource's Accept (and one naming both) gets the stream.
			c := s.connect("/tasks/a", http.Header{"Accept": {"text/event-stream, application/json"}})
			if ev := nextMessage(c); ev.Data != `{"n":2}` {
				t.Fatalf("stream: %+v", ev)
			}
		})
	}
}

// Guards apply to JSON reads as to streams: no token is 401, and a key
// named by the token's identity reads that identity's record only.
func TestKeyReadIsGuarded(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), topics: []string{"tasks", "inbox.alice"}, edgeCfg: guardConfig(t, j, 0, nil)})
	s.produce("tasks", rec(1, "alice", `"alice's"`), rec(2, "bob", `"bob's"`))
	hour := time.Now().Add(time.Hour)
	if status, h, _ := s.getJSON(http.MethodGet, "/mine", nil); status != 401 || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %v", status, h)
	}
	if status, _, body := s.getJSON(http.MethodGet, "/mine", bearer(token(t, "k1", "alice", hour, "read"))); status != 200 || body != `"alice's"` {
		t.Fatalf("alice: %d %q", status, body)
	}
	if status, _, _ := s.getJSON(http.MethodGet, "/mine", bearer(token(t, "k1", "carol", hour, "read"))); status != 404 {
		t.Fatalf("carol: %d", status)
	}
	if status, _, _ := s.getJSON(http.MethodGet, "/mine", bearer(token(t, "k1", "alice", hour, "write"))); status != 403 {
		t.Fatalf("without the role: %d", status)
	}
}

// Reads of one key at once share one lookup (issue 12: a page polled by a
// large audience): 20 reads of a value read in parts cost the cache tier
// one key request per partition and one set of parts, and each reader gets
// the whole value.
func TestKeyReadsOfOneKeyShareALookup(t *testing.T) {
	release := make(chan struct{})
	s := newStack(t, stackOptions{maxPayload: 64 << 10, edgeCfg: func(c *edge.Config) {
		edge.HoldKeyReads(c, func() { <-release })
	}})
	value := bigValue("shared", 1<<20)
	s.produceWith(s.bigProducer(), "tasks", rec(1, "k", value))
	keyRequests := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total")
	parts := s.counter(s.cacheReg, "ssekafka_cache_value_parts_total")

	const readers = 20
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, readers)
	for range readers {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks/k", nil)
			req.Header.Set("Accept", "application/json")
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				answers <- answer{status: -1, body: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers <- answer{resp.StatusCode, string(b)}
		}()
	}
	eventually(t, 10*time.Second, "the other reads to join the first one's lookup", func() bool {
		return s.edgeCounter("ssekafka_edge_key_reads_shared_total") == readers-1
	})
	close(release)
	for range readers {
		if a := <-answers; a.status != 200 || a.body != value {
			t.Fatalf("read: %d, %d bytes (%.60q)", a.status, len(a.body), a.body)
		}
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_key_requests_total") - keyRequests; n != 3 {
		t.Fatalf("%v key requests for %d reads of a 3-partition topic, want 3", n, readers)
	}
	if n := s.counter(s.cacheReg, "ssekafka_cache_value_parts_total") - parts; n > 20 {
		t.Fatalf("%v value parts for %d reads of 1 MiB at 64 KiB, want one set (17)", n, readers)
	}
}
