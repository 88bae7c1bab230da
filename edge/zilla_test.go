package edge_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// raw joins the raw bytes of events.
func raw(evs []event) string {
	var b strings.Builder
	for _, ev := range evs {
		b.WriteString(ev.Raw)
	}
	return b.String()
}

// Retry: Off writes "retry:0" (zero used to become the 2 s default).
func TestRetryOffWritesRetryZero(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.Retry, c.RetryJitter = edge.Off, 0 }})
	evs := s.connect("/tasks", nil).untilReady()
	if evs[0].Raw != "retry:0\n\n" {
		t.Fatalf("first block %q, want retry:0", evs[0].Raw)
	}
}

// KeepAlive: Off sends no comment, on hijacked connections and on the
// ResponseWriter path alike: between ready and a live record 300 ms later
// the stream holds nothing.
func TestKeepAliveOff(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.KeepAlive, c.NoHijack = edge.Off, noHijack }})
		ep := s.epoch("tasks")
		c := s.connect("/tasks", nil)
		c.untilReady()
		time.Sleep(300 * time.Millisecond) // a window in which comments would be written
		s.produce("tasks", rec(0, "k", "v"))
		select {
		case ev := <-c.events:
			if want := "id:" + id(ep, 1, 0, 0) + "\ndata:v\n\n"; ev.Raw != want {
				t.Fatalf("noHijack=%v: after ready got %q, want only %q", noHijack, ev.Raw, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no live event")
		}
	}
}

// An empty Last-Event-ID header wins over the lastEventId parameter and
// means zero, as in Zilla.
func TestEmptyLastEventIDHeaderWinsOverQuery(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"))
	ep := s.epoch("tasks")
	end := id(ep, 1, 1, 0)
	evs := s.connect("/tasks?lastEventId="+end, http.Header{"Last-Event-Id": {""}}).untilReady()
	want := "retry:2000\n\n" +
		"id:" + id(ep, 1, 0, 0) + "\ndata:1\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\ndata:2\n\n" +
		"id:" + end + "\nevent:ready\ndata:{}\n\n"
	if got := raw(evs); got != want {
		t.Fatalf("empty header with lastEventId:\n got %q\nwant %q", got, want)
	}
	// Without the header, the parameter is read.
	evs = s.connect("/tasks?lastEventId="+end, nil).untilReady()
	if got, want := raw(evs), "retry:2000\n\nid:"+end+"\nevent:ready\ndata:{}\n\n"; got != want {
		t.Fatalf("lastEventId alone:\n got %q\nwant %q", got, want)
	}
}

// A GET with a body is refused with 400 and a reason (Zilla resets it), on
// both serving paths.
func TestGETWithBodyIs400(t *testing.T) {
	for _, viaNetHTTP := range []bool{false, true} {
		s := newStack(t, stackOptions{viaNetHTTP: viaNetHTTP})
		req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks", strings.NewReader("x"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		body.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body.String(), "no body") {
			t.Fatalf("viaNetHTTP=%v: status %d body %q, want 400 saying why", viaNetHTTP, resp.StatusCode, body.String())
		}
	}
}

// NoReady: the stream is retry, then data frames only, no event:ready.
func TestNoReadyMarker(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.NoReady = true }})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"))
	ep := s.epoch("tasks")
	c := s.connect("/tasks", nil)
	evs := []event{c.mustNext(), c.mustNext(), c.mustNext()}
	s.produce("tasks", rec(2, "c", "3"))
	evs = append(evs, c.mustNext())
	want := "retry:2000\n\n" +
		"id:" + id(ep, 1, 0, 0) + "\ndata:1\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\ndata:2\n\n" +
		"id:" + id(ep, 1, 1, 1) + "\ndata:3\n\n"
	if got := raw(evs); got != want {
		t.Fatalf("stream without ready:\n got %q\nwant %q", got, want)
	}
}

// A header-only filter gets the delete of a key it matched, never of one it
// could not hold: live, and in the state part of a resuming client.
func TestHeaderFilterDeletesOnlyKeysItCouldHold(t *testing.T) {
	s := newStack(t, stackOptions{routes: []edge.RouteConfig{
		{Paths: []string{"/tenant/a"}, Topic: "tasks", Filters: []edge.FilterConfig{{Headers: map[string]string{"tenant": "a"}}}},
	}})
	ep := s.epoch("tasks")
	inA, inB := rec(0, "k1", "v1"), rec(0, "k2", "v2")
	inA.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte("a")}}
	inB.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte("b")}}
	s.produce("tasks", inA, inB)
	c := s.connect("/tenant/a", nil)
	want := "retry:2000\n\n" +
		"id:" + id(ep, 1, 0, 0) + "\ndata:v1\n\n" +
		"id:" + id(ep, 2, 0, 0) + "\nevent:ready\ndata:{}\n\n"
	if got := raw(c.untilReady()); got != want {
		t.Fatalf("state part:\n got %q\nwant %q", got, want)
	}
	s.produce("tasks", tombstone(0, "k2"), tombstone(0, "k1")) // offsets 2 and 3, no headers
	wantDel := "id:" + id(ep, 4, 0, 0) + "\nevent:delete\ndata:" + "azE=" + "\n\n"
	if ev := c.mustNext(); ev.Raw != wantDel {
		t.Fatalf("live: got %q, want only the delete of k1 %q", ev.Raw, wantDel)
	}
	// Resuming from the ready id pages the same tombstones from the cache.
	r := s.connect("/tenant/a", http.Header{"Last-Event-Id": {id(ep, 2, 0, 0)}})
	want = "retry:2000\n\n" + wantDel + "id:" + id(ep, 4, 0, 0) + "\nevent:ready\ndata:{}\n\n"
	if got := raw(r.untilReady()); got != want {
		t.Fatalf("resumed:\n got %q\nwant %q", got, want)
	}
}

// An id with an offset past a partition's end (a Zilla id, which carries
// no epoch, or ours, from another incarnation of the topic) cannot resume:
// event:reset, the full state and ready, and later ids never go back.
func TestIDPastTheEndResets(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"), rec(0, "b", "2"), rec(1, "c", "3"))
	ep := s.epoch("tasks")
	// AQIACg== is Zilla's progress {0 -> 5}: bytes 1, zigzag 1, zigzag 0, zigzag 5.
	for _, past := range []string{"AQIACg==", id(ep, 9, 0, 0), `["YQ==","` + id(ep, 2, 7, 0) + `"]`} {
		c := s.connect("/tasks", http.Header{"Last-Event-Id": {past}})
		want := "retry:2000\n\n" +
			"event:reset\ndata:{\"reason\":\"offsets\"}\n\n" +
			"id:" + id(ep, 1, 0, 0) + "\ndata:1\n\n" +
			"id:" + id(ep, 2, 0, 0) + "\ndata:2\n\n" +
			"id:" + id(ep, 2, 1, 0) + "\ndata:3\n\n" +
			"id:" + id(ep, 2, 1, 0) + "\nevent:ready\ndata:{}\n\n"
		if got := raw(c.untilReady()); got != want {
			t.Fatalf("id %s:\n got %q\nwant %q", past, got, want)
		}
		c.close()
	}
	// An id at the end resumes with nothing to send.
	c := s.connect("/tasks", http.Header{"Last-Event-Id": {id(ep, 2, 1, 0)}})
	if got, want := raw(c.untilReady()), "retry:2000\n\nid:"+id(ep, 2, 1, 0)+"\nevent:ready\ndata:{}\n\n"; got != want {
		t.Fatalf("id at the end:\n got %q\nwant %q", got, want)
	}
	s.produce("tasks", rec(0, "d", "4"))
	if ev, want := c.mustNext(), "id:"+id(ep, 3, 1, 0)+"\ndata:4\n\n"; ev.Raw != want {
		t.Fatalf("live after it: %q, want %q", ev.Raw, want)
	}
}
