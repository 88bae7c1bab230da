package hub

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// A client's frames, some conflated away, then a reset and its close,
// decode in gzip and zstd to exactly what an identity client is sent: each
// frame's chunk stands alone, and the gzip trailer's CRC and length are of
// the frames the client was sent, whatever was dropped.
func TestCodedClientSendsWhatIdentitySends(t *testing.T) {
	sent := map[compress.Encoding][]byte{}
	for _, enc := range []compress.Encoding{compress.Identity, compress.Gzip, compress.Zstd} {
		c := newClient(8, 1<<20)
		c.cs = compress.NewStream(enc)
		var wire bytes.Buffer
		write := func(iv *iovecs) {
			if iv == nil {
				return
			}
			for _, b := range iv.bufs {
				wire.Write(b)
			}
			putIovecs(iv)
		}
		wire.Write(c.wire([]byte("retry:2000\n\n")))
		c.mu.Lock()
		c.live = true
		c.appendLocked(marker([]byte("event:ready\ndata:{}\n\n")))
		c.mu.Unlock()
		for round := range 3 {
			for k := range 6 { // past maxQueue 8: conflated to the newest per key
				frame := fmt.Appendf(nil, "id:%d-%d\ndata:{\"v\":%d}\n\n", round, k, k)
				q := queued{buf: append(frame, fmt.Sprint("key", k%3)...), frameLen: uint32(len(frame)), keyed: true}
				if enc != compress.Identity {
					ch := compress.Store(enc, frame)
					q.ch = &ch
				}
				c.push(0, int64(round*10+k), q)
			}
			frames, _, _ := c.take()
			write(frames)
			c.mu.Lock()
			c.appendLocked(c.keepAliveLocked())
			c.mu.Unlock()
		}
		c.closeWith(reason.ResetEpoch, []byte("event:reset\ndata:{}\n\n"))
		frames, _, closing := c.take()
		if closing != reason.ResetEpoch {
			t.Fatalf("%s: closing %v", enc, closing)
		}
		write(frames)
		if more, _, _ := c.take(); more != nil {
			t.Fatalf("%s: more written after the end", enc)
		}
		sent[enc] = decode(t, enc, wire.Bytes())
	}
	for _, enc := range []compress.Encoding{compress.Gzip, compress.Zstd} {
		if !bytes.Equal(sent[enc], sent[compress.Identity]) {
			t.Errorf("%s decodes to\n%q\nidentity sent\n%q", enc, sent[enc], sent[compress.Identity])
		}
	}
}

// decode reads a whole stream of coding enc, which must end cleanly.
func decode(t *testing.T, enc compress.Encoding, wire []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case compress.Gzip:
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case compress.Zstd:
		zr, err := zstd.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	default:
		return wire
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: %v (a stream not ended cleanly?)", enc, err)
	}
	return plain
}
