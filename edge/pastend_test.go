package edge_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
)

// Issue 11: a Last-Event-ID whose offsets lie past the partition's end
// cannot resume (docs/architecture.md rule 3: event:reset, then the full stream from
// zero) and must not hold a setup worker while it waits for offsets that
// never come. Observed before the fix (main at 23b4079): each such setup
// waited up to 500 ms for the feed, then asked the cache tier again and
// again for PageTimeout (default 2 s; 15 s on the commit the issue was
// filed on), so two rounds of SetupConcurrency of them kept a fresh client
// from its state for about 5 s. Now each gets its reset at once and a fresh
// client is served while they arrive.
func TestPastEndIDDoesNotHoldSetupWorker(t *testing.T) {
	const workers = 4
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) {
		c.SetupConcurrency = workers
		c.PageTimeout = 2 * time.Second // the default (the stack's is shorter)
		c.KeepAlive = edge.Off
	}})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"))
	ep := s.epoch("tasks")
	first := s.connect("/tasks", nil) // keeps the feed up
	first.untilReady()
	addr := strings.TrimPrefix(s.url, "http://")

	// Far past partition 0's end (offset 1), with a fresh time and our epoch.
	past := id(ep, 1_000_000, 0, 0)
	wantPast := "retry:2000\n\n" +
		"event:reset\ndata:{\"reason\":\"offsets\"}\n\n" +
		"id:" + id(ep, 1, 0, 0) + "\ndata:1\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\ndata:2\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\nevent:ready\ndata:{}\n\n"
	const n = 2 * workers
	bodies := make(chan string, n)
	t0 := time.Now()
	for range n {
		conn := dial(t, addr)
		fmt.Fprintf(conn, "GET /tasks HTTP/1.1\r\nHost: edge\r\nLast-Event-ID: %s\r\n\r\n", past)
		go func() {
			br := bufio.NewReader(conn)
			var b strings.Builder
			for !strings.HasSuffix(b.String(), "event:ready\ndata:{}\n\n") {
				l, err := br.ReadString('\n')
				b.WriteString(l)
				if err != nil {
					if err != io.EOF {
						b.WriteString("<" + err.Error() + ">")
					}
					break
				}
			}
			bodies <- b.String()
		}()
	}

	// A fresh client behind them gets its state and ready well within the
	// old wait.
	const budget = 3 * time.Second
	fresh := s.connect("/tasks", nil)
	var evs []event
	for {
		ev, err := fresh.next(time.Until(t0.Add(budget)))
		if err != nil {
			t.Fatalf("fresh client after %v: %v (got %q): setup workers held by past-end ids", time.Since(t0), err, raw(evs))
		}
		evs = append(evs, ev)
		if ev.Event == "ready" {
			break
		}
	}
	wantFresh := "retry:2000\n\n" +
		"id:" + id(ep, 1, 0, 0) + "\ndata:1\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\ndata:2\n\n" +
		"id:" + id(ep, 1, 1, 0) + "\nevent:ready\ndata:{}\n\n"
	if got := normRetry(t, raw(evs)); got != wantFresh {
		t.Fatalf("fresh client:\n got %q\nwant %q", got, wantFresh)
	}

	// Each past-end client got its reset and the full state, promptly.
	for range n {
		got := <-bodies
		head, body, _ := strings.Cut(got, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || normRetry(t, body) != wantPast {
			t.Fatalf("past-end client:\n got %q\nwant 200 and body %q", got, wantPast)
		}
	}
	if el := time.Since(t0); el > budget {
		t.Fatalf("past-end clients answered after %v, want within %v", el, budget)
	}
	if got := s.edgeCounter("ssekafka_edge_resets_total"); got != n {
		t.Fatalf("resets_total %v, want %d", got, n)
	}
	if got := labeled(t, s.edgeReg, "ssekafka_edge_resets_total", "reason", "offsets"); got != n {
		t.Fatalf("resets_total{reason=offsets} %v, want %d", got, n)
	}
	if got, _ := s.open("/tasks", http.Header{"Last-Event-Id": {id(ep, 1, 1, 0)}}); got == nil {
		t.Fatal("an id at the end no longer opens")
	}
}

// normRetry checks the retry line a stream starts with and writes it as
// retry:2000: the edge adds to sse.retry (2000 here) a part of the time the
// setup queue is estimated to take, which under load may be a few ms.
func normRetry(t *testing.T, body string) string {
	t.Helper()
	line, rest, ok := strings.Cut(body, "\n\n")
	ms, err := strconv.Atoi(strings.TrimPrefix(line, "retry:"))
	if !ok || err != nil || !strings.HasPrefix(line, "retry:") || ms < 2000 || ms > 30000 {
		return body // not a retry within bounds: compared as it is
	}
	return "retry:2000\n\n" + rest
}
