//go:build linux

package sseload

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ssekafka/ssekafka/internal/poll"
)

// compressedServer serves one SSE stream in coding (gzip, zstd or none):
// a state part of n JSON records of partition 0, ready, then live records,
// each part compressed on its own (a sync flush, a zstd frame) and written
// in two halves with a flush between, so that the client reads parts cut
// anywhere.
func compressedServer(t *testing.T, coding string, n, live int) *httptest.Server {
	t.Helper()
	var parts [][]byte
	var state bytes.Buffer
	state.WriteString("retry:2000\n\n")
	for seq := 1; seq <= n; seq++ {
		fmt.Fprintf(&state, "id:%d\ndata:%s\n\n", seq, PayloadJSON(0, int64(seq), 1))
	}
	state.WriteString("event:ready\ndata:{}\n\n")
	parts = append(parts, state.Bytes())
	for seq := n + 1; seq <= n+live; seq++ {
		parts = append(parts, fmt.Appendf(nil, "id:%d\ndata:%s\n\n", seq, PayloadJSON(0, int64(seq), time.Now().UnixNano())))
	}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		if coding != "" {
			w.Header().Set("Content-Encoding", coding)
		}
		flush := http.NewResponseController(w).Flush
		half := func(b []byte) {
			_, _ = w.Write(b[:len(b)/2])
			_ = flush()
			_, _ = w.Write(b[len(b)/2:])
			_ = flush()
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		enc, _ := zstd.NewWriter(nil)
		defer enc.Close()
		for _, p := range parts {
			switch coding {
			case "gzip":
				_, _ = zw.Write(p)
				_ = zw.Flush()
				half(buf.Bytes())
				buf.Reset()
			case "zstd":
				half(enc.EncodeAll(p, nil))
			default:
				half(p)
			}
		}
		if coding == "gzip" {
			_ = zw.Close() // the trailer: a clean end
			half(buf.Bytes())
		}
	}))
}

// A client that sends Accept-Encoding decodes a gzip or zstd stream cut
// at any byte, and sees exactly the events of an uncompressed one: its
// state part, ready and every live record, with no decode error.
func TestClientsDecodeCompressedStreams(t *testing.T) {
	const n, live = 2000, 50
	var sum int64
	for seq := 1; seq <= n; seq++ {
		sum += int64(seq)
	}
	for _, coding := range []string{"", "gzip", "zstd"} {
		t.Run("coding="+coding, func(t *testing.T) {
			srv := compressedServer(t, coding, n, live)
			defer srv.Close()
			c, err := DialWith(DialOptions{URLs: []string{srv.URL + "/t"}, Clients: 3, AcceptEncoding: "gzip, zstd", StateN: n, StateSum: sum})
			if err != nil {
				t.Fatal(err)
			}
			stop, done := make(chan struct{}), make(chan struct{})
			go func() { defer close(done); c.Run(stop) }()
			poll.Until(t, 10*time.Second, "every client's live records", func() bool { return c.Delivered() == 3*live })
			close(stop)
			<-done
			defer c.Close()
			if c.Ready() != 3 || c.ExactStates() != 3 || c.Missed() != 0 || c.DecodeErrors() != 0 {
				t.Fatalf("ready %d, exact %d, missed %d, decode errors %d", c.Ready(), c.ExactStates(), c.Missed(), c.DecodeErrors())
			}
			if c.BytesRead() == 0 {
				t.Fatal("no bytes read")
			}
			t.Logf("%q: %d bytes read by 3 clients", coding, c.BytesRead())
		})
	}
}

// zstdFrameLen finds a frame's end only once all of it is there.
func TestZstdFrameLen(t *testing.T) {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderCRC(true))
	defer enc.Close()
	frame := enc.EncodeAll(bytes.Repeat([]byte("data:{\"a\":1}\n\n"), 1000), nil)
	for i := range len(frame) {
		if n, err := zstdFrameLen(frame[:i]); n != 0 || err != nil {
			t.Fatalf("%d of %d bytes: length %d, %v", i, len(frame), n, err)
		}
	}
	two := append(append([]byte(nil), frame...), frame...)
	if n, err := zstdFrameLen(two); n != len(frame) || err != nil {
		t.Fatalf("length %d, %v; want %d", n, err, len(frame))
	}
	if _, err := zstdFrameLen([]byte("not a zstd frame at all")); err == nil {
		t.Fatal("no error for bytes that are not zstd")
	}
}
