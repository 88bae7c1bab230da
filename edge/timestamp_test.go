package edge_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Accept: text/event-stream;ext=timestamp (Zilla's spec
// timestamp/non.empty.with.type): the response's Content-Type echoes it and
// each record's event starts with "timestamp:0x" and the Kafka record's
// timestamp (Unix ms) in lower-case hex, before its id, in the state part
// and live, deletes too; the ready marker has none. A stream that did not
// ask is unchanged, on the same topic at the same time.
func TestTimestampExtensionWritesRecordTimestamps(t *testing.T) {
	t.Run("http1.1", func(t *testing.T) { timestampStreams(t, newStack(t, stackOptions{partitions: 1}), 1) })
	t.Run("h2", func(t *testing.T) {
		s, _, _ := tlsStackWith(t, true, stackOptions{partitions: 1})
		timestampStreams(t, s, 2)
	})
}

func timestampStreams(t *testing.T, s *stack, proto int) {
	at := func(ms int64, r *kgo.Record) *kgo.Record { r.Timestamp = time.UnixMilli(ms); return r }
	const t1, t2, t3, t4 = 1519937168533, 1519937168534, 1800000000001, 1800000000255
	s.produce("tasks", at(t1, rec(0, "a", "v1")), at(t2, rec(0, "b", "v2")))

	ext := http.Header{"Accept": {"text/event-stream;ext=timestamp"}}
	stamped := s.connect("/tasks", ext)
	plain := s.connect("/tasks", nil)
	if got := stamped.resp.Header.Get("Content-Type"); got != "text/event-stream;ext=timestamp" {
		t.Fatalf("ext=timestamp: Content-Type %q", got)
	}
	if got := plain.resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("without ext: Content-Type %q", got)
	}
	if stamped.resp.ProtoMajor != proto || plain.resp.ProtoMajor != proto {
		t.Fatalf("served over %s and %s, want HTTP/%d", stamped.resp.Proto, plain.resp.Proto, proto)
	}
	want := func(stamp bool, ms int64, ev event, fields string) string {
		frame := "id:" + ev.ID + "\n" + fields + "\n\n"
		if stamp {
			frame = "timestamp:0x" + strconv.FormatInt(ms, 16) + "\n" + frame
		}
		return frame
	}
	for _, c := range []struct {
		stamp bool
		cl    *sseClient
	}{{true, stamped}, {false, plain}} {
		evs := c.cl.untilReady()
		if len(evs) != 4 || evs[0].Raw != "retry:2000\n\n" {
			t.Fatalf("timestamp %v: state %+v, want retry, two records and ready", c.stamp, evs)
		}
		evs = evs[1:]
		for i, w := range []struct {
			ms   int64
			data string
		}{{t1, "data:v1"}, {t2, "data:v2"}} {
			if got, want := evs[i].Raw, want(c.stamp, w.ms, evs[i], w.data); got != want {
				t.Errorf("timestamp %v: state event %d %q, want %q", c.stamp, i, got, want)
			}
		}
		if got, want := evs[2].Raw, "id:"+evs[2].ID+"\nevent:ready\ndata:{}\n\n"; got != want {
			t.Errorf("timestamp %v: ready %q, want %q", c.stamp, got, want)
		}
	}
	if got := "timestamp:0x" + strconv.FormatInt(t1, 16); got != "timestamp:0x161e350a495" {
		t.Fatalf("%q is not the spec's line", got) // the value of Zilla's script
	}

	s.produce("tasks", at(t3, rec(0, "c", "v3")), at(t4, tombstone(0, "a")))
	for _, c := range []struct {
		stamp bool
		cl    *sseClient
	}{{true, stamped}, {false, plain}} {
		if ev := c.cl.mustNext(); ev.Raw != want(c.stamp, t3, ev, "data:v3") {
			t.Errorf("timestamp %v: live %q, want %q", c.stamp, ev.Raw, want(c.stamp, t3, ev, "data:v3"))
		}
		if ev := c.cl.mustNext(); ev.Raw != want(c.stamp, t4, ev, "event:delete\ndata:YQ==") {
			t.Errorf("timestamp %v: live delete %q, want %q", c.stamp, ev.Raw, want(c.stamp, t4, ev, "event:delete\ndata:YQ=="))
		}
	}
}
