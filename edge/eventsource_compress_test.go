package edge_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// esResponse is a {"t":"response"} line of client.mjs: one response's
// status and Content-Encoding.
type esResponse struct {
	T        string
	Status   int
	Encoding string
}

// responses are the client's responses so far, in order.
func (es *eventSource) responses() []esResponse {
	es.mu.Lock()
	defer es.mu.Unlock()
	var rs []esResponse
	for _, l := range es.log {
		var r esResponse
		if json.Unmarshal([]byte(l), &r) == nil && r.T == "response" {
			rs = append(rs, r)
		}
	}
	return rs
}

// The npm eventsource client (Node's fetch: Accept-Encoding "gzip,
// deflate", the body decoded as it arrives) holds exactly the topic's
// state, 2,000 JSON values (some over 1 KiB), and its live changes through
// a gzip stream; its edge drains: the stream ends cleanly, the draining
// edge refuses it (200 with a retry, uncompressed), and it resumes on the
// other edge from its Last-Event-ID, gzip again, exactly current. A client
// that accepts identity only gets the same, never compressed.
func TestEventSourceHoldsExactStateThroughGzipAndDrain(t *testing.T) {
	s := newStack(t, esOptions(nil))
	other := s.addEdge()
	lb := newBalancer(t, s.url, other.url)
	want := map[string]string{}
	s.produceTasks(want, 2000, 1)
	gz := startEventSource(t, lb.url+"/keyed")
	plain := startEventSource(t, lb.url+"/keyed", "identity")
	gz.exactly(want)
	plain.exactly(want)

	// A change goes to its key's partition, as produceTasks put it.
	live := func(rev int, keys ...int) {
		for _, i := range keys {
			k, v := fmt.Sprintf("task-%05d", i), taskJSON(i, rev)
			s.produce("tasks", rec(int32(i%int(s.partitions)), k, v))
			want[k] = v
		}
	}
	live(2, 1, 2, 400, 1999) // task-00400 is over 1 KiB
	gz.exactly(want)
	plain.exactly(want)

	drained := make(chan error, 1)
	go func() { drained <- s.edge.Drain(t.Context(), 300*time.Millisecond) }()
	live(3, 3, 800, 5, 1200) // while it drains, or after
	// The drain's own close counts as a refusal too: wait until both
	// clients came back and got the draining edge's answer.
	gz.waitFor("both clients refused by the draining edge", func(map[string]string, int, int) bool {
		return len(gz.responses()) >= 2 && len(plain.responses()) >= 2 && s.refusals(s.edgeReg, "draining") >= 2
	})
	lb.moveOn() // a load balancer sees /_ssekafka/ready fail and moves on
	gz.exactly(want)
	plain.exactly(want)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	live(4, 6, 1600)
	gz.exactly(want)
	plain.exactly(want)

	for _, tc := range []struct {
		name string
		es   *eventSource
		want string
	}{{"gzip", gz, "gzip"}, {"identity", plain, ""}} {
		rs := tc.es.responses()
		if len(rs) < 3 || rs[0].Encoding != tc.want || rs[len(rs)-1].Encoding != tc.want {
			t.Fatalf("%s client: responses %+v, want %q first and last", tc.name, rs, tc.want)
		}
		if !slices.ContainsFunc(rs[1:len(rs)-1], func(r esResponse) bool { return r.Status == 200 && r.Encoding == "" }) {
			t.Fatalf("%s client: responses %+v, want an uncompressed refusal between", tc.name, rs)
		}
		for _, r := range rs {
			if r.Status != 200 {
				t.Fatalf("%s client: a response with status %d", tc.name, r.Status)
			}
		}
	}
}

// The npm eventsource client on a gzip stream cut without its trailer
// (the edge killed, as far as the client can tell) keeps what it decoded,
// reconnects with its Last-Event-ID and holds exactly the topic's state
// again, on a gzip stream.
func TestEventSourceResumesGzipStreamCutWithoutTrailer(t *testing.T) {
	s := newStack(t, esOptions(nil))
	proxy := newCutter(t, s.url)
	want := map[string]string{}
	s.produceTasks(want, 2000, 1)
	gz := startEventSource(t, proxy.url+"/keyed")
	gz.exactly(want)
	change := func(rev int, keys ...int) {
		for _, i := range keys {
			k, v := fmt.Sprintf("task-%05d", i), taskJSON(i, rev)
			s.produce("tasks", rec(int32(i%int(s.partitions)), k, v))
			want[k] = v
		}
	}
	change(2, 10, 400, 1990)
	gz.exactly(want)
	proxy.cut()
	change(3, 11, 800, 1991)
	gz.waitFor("a reconnect", func(_ map[string]string, opens, _ int) bool { return opens >= 2 })
	gz.exactly(want)
	for i, r := range gz.responses() {
		if r.Status != 200 || r.Encoding != "gzip" {
			t.Fatalf("response %d: status %d, Content-Encoding %q; want 200 gzip", i, r.Status, r.Encoding)
		}
	}
}
