package edge_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// A client that stops reading is cut off (DESIGN rule 6) without holding
// back the others, and resumes exactly from the last id it had.
func TestStalledClientDoesNotSlowOthers(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(fmt.Sprintf("noHijack=%v", noHijack), func(t *testing.T) {
			stalledClient(t, noHijack)
		})
	}
}

func stalledClient(t *testing.T, noHijack bool) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.MaxQueue = 64
		c.WriteTimeout = 300 * time.Millisecond
		c.NoHijack = noHijack
	}})
	var m model
	m.add(s.produce("tasks", rec(0, "a", "a0"))...)

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
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
	big := strings.Repeat("x", 64<<10)
	for i := range 20 {
		var recs []*kgo.Record
		for j := range 10 {
			recs = append(recs, rec(int32(j%3), fmt.Sprintf("k%d", j), fmt.Sprintf("%d-%s", i, big)))
		}
		m.add(s.produce("tasks", recs...)...)
	}
	final := m.asOf(proto.Progress{Offsets: []int64{1 << 40, 1 << 40, 1 << 40}})
	readUntilView(t, fast, view, final)

	// Now read what the stalled client was sent: its stream has ended.
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := &sseClient{t: t, resp: resp, events: make(chan event, 1<<16), done: make(chan struct{}), cancel: func() {}}
	go slow.read()
	slowView, lastID := map[string]string{}, ""
	for {
		ev, err := slow.next(30 * time.Second)
		if err == errStreamEnded {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.HasID {
			_, _, change := keyedEvent(t, ev)
			apply(slowView, change)
			lastID = ev.ID
		}
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
