package ssetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestReaderParsesFields(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Event
	}{
		{"data", "data:v\n\n", Event{Data: "v", HasData: true}},
		{"one space after the colon dropped", "data:  v\n\n", Event{Data: " v", HasData: true}},
		{"lines of data joined", "data:a\ndata:b\ndata\n\n", Event{Data: "a\nb\n", HasData: true}},
		{"empty data", "data:\n\n", Event{HasData: true}},
		{"id, event, retry", "id:1/2\nevent:ready\nretry:500\ndata:{}\n\n",
			Event{ID: "1/2", HasID: true, Event: "ready", Retry: "500", Data: "{}", HasData: true}},
		{"empty id", "id:\ndata:x\n\n", Event{HasID: true, Data: "x", HasData: true}},
		{"keep-alive", ":\n\n", Event{Comment: true}},
		{"comments kept", ": setup queue full\n:x\nretry:1000\n\n",
			Event{Comment: true, Comments: "setup queue full\nx", Retry: "1000"}},
		{"unknown field ignored", "foo:bar\ndata:v\n\n", Event{Data: "v", HasData: true}},
		{"CR kept", "data:v\r\n\n", Event{Data: "v\r", HasData: true}},
		{"no fields", "\n", Event{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewReader(strings.NewReader(tc.in)).Next()
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Raw = tc.in
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReaderKeepsEachBlocksBytes(t *testing.T) {
	blocks := []string{"retry:1000\n\n", ":\n\n", "id:7\ndata:a\n\n", "event:ready\ndata:{}\n\n"}
	r := NewReader(strings.NewReader(strings.Join(blocks, "") + "data:unfinished\n"))
	for _, want := range blocks {
		ev, err := r.Next()
		if err != nil || ev.Raw != want {
			t.Fatalf("got %q, %v; want %q", ev.Raw, err, want)
		}
	}
	if ev, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last block: %+v, %v; want io.EOF (an unfinished block is dropped)", ev, err)
	}
}

func TestReaderTeesEveryLine(t *testing.T) {
	in := "data:a\n\n:\n\ndata:unfinished"
	var tee strings.Builder
	r := NewReader(strings.NewReader(in)).Tee(&tee)
	for {
		if _, err := r.Next(); err != nil {
			break
		}
	}
	if tee.String() != in {
		t.Fatalf("tee %q, want %q", tee.String(), in)
	}
}

func TestReaderUntilAndData(t *testing.T) {
	r := NewReader(strings.NewReader("retry:1000\n\ndata:a\n\n:\n\nevent:ready\ndata:{}\n\ndata:b\n\n"))
	evs, err := r.Until(IsReady)
	if err != nil || len(evs) != 4 {
		t.Fatalf("got %d blocks, %v; want 4", len(evs), err)
	}
	if got := strings.Join(Data(evs), ","); got != "a,{}" {
		t.Fatalf("data %q, want a,{}", got)
	}
	if ev, err := r.NextDispatched(); err != nil || ev.Data != "b" {
		t.Fatalf("after ready: %+v, %v", ev, err)
	}
	if evs, err := r.Until(IsReady); err != io.EOF || len(evs) != 0 {
		t.Fatalf("at the end: %v, %v; want io.EOF", evs, err)
	}
}

// sseServer serves blocks, then holds the stream open until the request ends.
func sseServer(t *testing.T, blocks string, hold bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, blocks)
		http.NewResponseController(w).Flush()
		if hold {
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	return Start(resp.Body, cancel)
}

func TestStreamSkipsKeepAlivesAndEnds(t *testing.T) {
	srv := sseServer(t, ":\n\ndata:a\n\n: comment\n\nretry:5\n\n", false)
	s := get(t, srv.URL)
	for _, want := range []string{"data:a\n\n", "retry:5\n\n"} {
		if ev, err := s.Next(5 * time.Second); err != nil || ev.Raw != want {
			t.Fatalf("got %q, %v; want %q", ev.Raw, err, want)
		}
	}
	if _, err := s.Next(5 * time.Second); !errors.Is(err, ErrEnded) {
		t.Fatalf("after the last block: %v, want ErrEnded", err)
	}
	<-s.Done()
	if s.Err() != io.EOF {
		t.Fatalf("Err %v, want io.EOF", s.Err())
	}
	if want := ":\n\ndata:a\n\n: comment\n\nretry:5\n\n"; s.Raw() != want {
		t.Fatalf("raw %q, want %q", s.Raw(), want)
	}
	s.Close()
}

// The read goes on while the test reads nothing: a server is never held
// back by a test that has not got to its stream yet.
func TestStreamReadsAheadOfTheTest(t *testing.T) {
	var b strings.Builder
	for i := range 10_000 {
		fmt.Fprintf(&b, "id:%d\ndata:%d\n\n", i, i)
	}
	s := get(t, sseServer(t, b.String(), false).URL)
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the read waited for the test")
	}
	for i := range 10_000 {
		ev, err := s.Next(time.Second)
		if err != nil || ev.Data != fmt.Sprint(i) {
			t.Fatalf("event %d: %+v, %v", i, ev, err)
		}
	}
	s.Close()
}

func TestStreamTimeoutAndStop(t *testing.T) {
	s := get(t, sseServer(t, "data:a\n\n", true).URL)
	if _, err := s.Next(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(50 * time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("an idle stream: %v, want ErrTimeout", err)
	}
	stop := make(chan struct{})
	close(stop)
	if _, err := s.NextOrStop(time.Minute, stop); !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped: %v, want ErrStopped", err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a held stream")
	}
}

// A stream costs little before it reads much: the property tests open
// thousands.
func TestStreamAllocatesLittle(t *testing.T) {
	srv := sseServer(t, "event:ready\ndata:{}\n\n", false)
	const n = 50
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		s := get(t, srv.URL)
		if _, err := s.Next(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 256<<10 {
		t.Fatalf("%d KiB allocated per stream (client and server), want under 256 KiB", per>>10)
	}
}

// FuzzReader: the reader never fails on any input but at its end, and the
// blocks' raw bytes are the input up to its last blank line.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"retry:1000\n\n", ":\n\n", "id:0-1/2\ndata:{\"a\":1}\n\n", "event:ready\ndata:{}\n\n",
		": setup queue full\nretry:3000\n\n", "data:a\ndata:b\n\ndata:c", "data:\r\n\n", "\n\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r := NewReader(strings.NewReader(in))
		var raw strings.Builder
		for {
			ev, err := r.Next()
			if err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				break
			}
			raw.WriteString(ev.Raw)
		}
		want := "" // up to the end of the last blank line
		for pos := 0; ; {
			i := strings.IndexByte(in[pos:], '\n')
			if i < 0 {
				break
			}
			if i == 0 {
				want = in[:pos+1]
			}
			pos += i + 1
		}
		if raw.String() != want {
			t.Fatalf("raw %q, want %q", raw.String(), want)
		}
	})
}
