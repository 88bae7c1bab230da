//go:build linux

package edge_test

import (
	"bufio"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
)

// A gzip client that stops reading, behind on more keys than its queue
// holds, is cut off with its retry and a complete stream: what it then
// reads decodes to the end (the trailer's CRC and length match, io.EOF),
// the retry last.
func TestSlowGzipClientIsCutOffWithACompleteStream(t *testing.T) {
	s := newStack(t, stackOptions{edgeCfg: func(c *edge.Config) { c.MaxQueue = 256 }})
	s.produce("tasks", rec(0, "a", jsonValue(0, 0)))
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
	fmt.Fprintf(conn, "GET /keyed HTTP/1.1\r\nHost: edge\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n")

	random := make([]byte, 3<<10)
	for round := range 40 { // the client is cut off once it reads: its writer waits on its full socket till then
		var recs []*kgo.Record
		for j := range 100 {
			_, _ = rand.Read(random) // does not compress: the socket fills
			k := round*100 + j
			recs = append(recs, rec(int32(k%3), fmt.Sprintf("k%d", k), base64.StdEncoding.EncodeToString(random)))
		}
		s.produce("tasks", recs...)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q", ce)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("after %d bytes: %v, want a complete stream", len(plain), err)
	}
	blocks := strings.Split(strings.TrimSuffix(string(plain), "\n\n"), "\n\n")
	if last := blocks[len(blocks)-1]; !strings.HasPrefix(last, "retry:") {
		t.Fatalf("the stream ends with %.200q, want its retry", last)
	}
	if n := s.edgeCounter("ssekafka_edge_overflow_disconnects_total"); n != 1 {
		t.Fatalf("%v clients cut off, want 1", n)
	}
}
