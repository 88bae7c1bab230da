//go:build linux

package edge_test

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// A client that stops reading never holds back the others (docs/architecture.md rule 6).
// Behind on few keys, it is conflated: when it reads again it gets the
// newest value per key, every id still a true position, and it resumes
// exactly from the last one. Behind on more keys than its queue can hold,
// it is cut off with a retry hint and resumes exactly from its last id.
func TestStalledClientDoesNotSlowOthers(t *testing.T) {
	for _, tc := range []stalledCase{
		{"few-keys-conflated", 4, 100, 32 << 10, false, 256, 0, true},
		{"many-keys-cut-off", 100, 40, 4 << 10, true, 256, 0, false},
		// Bound by bytes, far below MaxQueue in frames: 400 frames of 32 KiB
		// are 12.5 MiB, more than the kernel's socket buffers hold. Each
		// round stays below half the bound, so the reading client, which
		// catches up after every round, never comes near it.
		{"few-keys-conflated-by-bytes", 4, 100, 32 << 10, false, 16384, 1 << 20, true},
		{"many-keys-cut-off-by-bytes", 30, 25, 16 << 10, true, 16384, 1 << 20, false},
	} {
		for _, noHijack := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/noHijack=%v", tc.name, noHijack), func(t *testing.T) {
				stalledClient(t, noHijack, tc)
			})
		}
	}
}

type stalledCase struct {
	name                     string
	keys, rounds, valueBytes int
	freshKeys                bool // each round writes keys of its own
	maxQueue, maxQueueBytes  int  // maxQueueBytes 0: the default
	conflate                 bool
}

func stalledClient(t *testing.T, noHijack bool, tc stalledCase) {
	keys, rounds, valueBytes, freshKeys, conflate := tc.keys, tc.rounds, tc.valueBytes, tc.freshKeys, tc.conflate
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.MaxQueue = tc.maxQueue // the feed writes after every maxQueue/4 changes: a reading client stays far below
		c.MaxQueueBytes = tc.maxQueueBytes
		c.NoHijack = noHijack
	}})
	var m model
	m.add(s.produce("tasks", rec(0, "a", "a0"))...)

	// A small receive buffer, set before connecting (shrinking it on an open
	// connection stalls TCP in retransmission back-off), fills the edge's
	// socket sooner.
	dialer := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := dialer.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /keyed HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\n\r\n")

	fast := s.connect("/keyed", nil)
	view := map[string]string{}
	for _, ev := range fast.untilReady()[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(view, change)
	}
	big := strings.Repeat("x", valueBytes)
	everything := proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}}
	for i := range rounds {
		var recs []*kgo.Record
		for j := range keys {
			if freshKeys {
				j += i * keys
			}
			recs = append(recs, rec(int32(j%3), fmt.Sprintf("k%d", j), fmt.Sprintf("%d-%s", i, big)))
		}
		m.add(s.produce("tasks", recs...)...)
		readUntilView(t, fast, view, m.asOf(everything)) // the reading client keeps up
	}
	final := m.asOf(everything)

	// Now the stalled client reads.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := newSSEClient(t, resp, func() {})
	t.Cleanup(slow.abandon) // the stream ends with the stack
	slowView, lastID, events := map[string]string{}, "", 0
	for !(conflate && maps.Equal(slowView, final)) {
		ev, err := slow.next(10 * time.Second)
		if err == errStreamEnded {
			break
		}
		if err != nil {
			t.Fatalf("%v (view has %d keys of %d)", err, len(slowView), len(final))
		}
		if ev.Event == "ready" {
			continue
		}
		if ev.HasID {
			_, _, change := keyedEvent(t, ev)
			apply(slowView, change)
			lastID = ev.ID
			events++
		}
	}
	conflated := s.edgeCounter("ssekafka_edge_frames_conflated_total")
	cutOff := s.edgeCounter("ssekafka_edge_overflow_disconnects_total")
	t.Logf("stalled client: %d events for %d updates; %v frames conflated, %v cut off", events, rounds*keys, conflated, cutOff)
	if conflate {
		if conflated == 0 || cutOff != 0 || events >= rounds*keys {
			t.Fatalf("want conflation and no cut-off: %v conflated, %v cut off, %d events", conflated, cutOff, events)
		}
	} else if cutOff == 0 {
		t.Fatalf("want the client cut off: %v cut off", cutOff)
	}
	if lastID == "" {
		t.Fatal("the stalled client got no event at all")
	}
	resumed := s.connect("/keyed", http.Header{"Last-Event-Id": {lastID}})
	for _, ev := range resumed.untilReady()[1:] {
		_, _, change := keyedEvent(t, ev)
		apply(slowView, change)
	}
	delete(slowView, "")
	sameView(t, "resumed view", slowView, final)
}
