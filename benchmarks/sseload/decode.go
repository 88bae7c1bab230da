//go:build linux

package sseload

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Compressed streams (DialOptions.AcceptEncoding): a client that asks for
// a coding reads the response header as it is, then decodes the body
// before it splits events, so every event is still checked. A zstd body
// is cut into whole frames and each decoded on the epoll loop with one
// decoder shared by every connection (a connection holds only its
// unfinished frame); a gzip body, which cannot be cut, is decoded by a
// goroutine per connection behind a pipe (about 50 KiB each).

// receive handles bytes read off cn's socket.
func (c *Clients) receive(cn *conn, data []byte, now int64) {
	if c.opts.AcceptEncoding == "" {
		c.consume(cn, data, now)
		return
	}
	if !cn.bodyStarted {
		cn.head = append(cn.head, data...)
		i := bytes.Index(cn.head, []byte("\r\n\r\n"))
		if i < 0 {
			if len(cn.head) > 64<<10 { // no header end: take it all as it is
				cn.bodyStarted = true
				c.consume(cn, cn.head, now)
			}
			return
		}
		cn.bodyStarted = true
		head := cn.head[:i+4]
		data = cn.head[i+4:]
		cn.coding = contentEncoding(head)
		// The header goes to consume as before: its status line is read
		// there, and it ends in no blank SSE line.
		c.consume(cn, head, now)
		if cn.coding == "gzip" {
			c.startGunzip(cn)
		}
	}
	switch cn.coding {
	case "gzip":
		// Returns once the decoder has taken every byte; an error means
		// it failed and counted it.
		_, _ = cn.gz.pw.Write(data)
	case "zstd":
		c.unzstd(cn, data, now)
	default:
		c.consume(cn, data, now)
	}
}

// contentEncoding is the Content-Encoding of an HTTP response header,
// lower case ("" when none).
func contentEncoding(head []byte) string {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Encoding")) {
			return string(bytes.ToLower(bytes.TrimSpace(value)))
		}
	}
	return ""
}

// gunzip decodes one connection's gzip body on a goroutine of its own.
type gunzip struct {
	pw   *io.PipeWriter
	done chan struct{}
}

func (c *Clients) startGunzip(cn *conn) {
	pr, pw := io.Pipe()
	g := &gunzip{pw: pw, done: make(chan struct{})}
	cn.gz = g
	go func() {
		defer close(g.done)
		zr, err := gzip.NewReader(pr)
		if err == nil {
			zr.Multistream(false)
			buf := make([]byte, 32<<10)
			for {
				var n int
				n, err = zr.Read(buf)
				if n > 0 {
					c.consume(cn, buf[:n], time.Now().UnixNano())
				}
				if err != nil {
					break
				}
			}
		}
		// A stream cut by its end or by us (no trailer) is no decode error.
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errDropped) {
			c.decodeErrors.Add(1)
		}
		pr.CloseWithError(err)
	}()
}

var errDropped = errors.New("connection dropped")

// endDecoder waits until cn's gzip decoder has handed out all it got.
func (cn *conn) endDecoder() {
	if cn.gz == nil {
		return
	}
	_ = cn.gz.pw.CloseWithError(errDropped)
	<-cn.gz.done
	cn.gz = nil
}

// unzstd decodes the whole zstd frames that data completes.
func (c *Clients) unzstd(cn *conn, data []byte, now int64) {
	cn.zbuf = append(cn.zbuf, data...)
	used := 0
	for {
		n, err := zstdFrameLen(cn.zbuf[used:])
		if err != nil {
			c.decodeErrors.Add(1)
			cn.zbuf = cn.zbuf[:0]
			return
		}
		if n == 0 {
			break
		}
		if c.zdec == nil {
			if c.zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20)); err != nil {
				panic("sseload: zstd decoder: " + err.Error()) // constant options
			}
		}
		out, err := c.zdec.DecodeAll(cn.zbuf[used:used+n], c.zout[:0])
		if err != nil {
			c.decodeErrors.Add(1)
		}
		c.zout = out
		c.consume(cn, out, now)
		used += n
	}
	cn.zbuf = cn.zbuf[:copy(cn.zbuf, cn.zbuf[used:])]
}

// zstdFrameLen is the length of the zstd frame (or skippable frame) at
// the start of b (RFC 8878 3.1), or 0 when b holds only part of it.
func zstdFrameLen(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, nil // the shortest frame: magic, header byte, one block header
	}
	magic := binary.LittleEndian.Uint32(b)
	if magic&0xFFFFFFF0 == 0x184D2A50 {
		n := 8 + int(binary.LittleEndian.Uint32(b[4:]))
		if len(b) < n {
			return 0, nil
		}
		return n, nil
	}
	if magic != 0xFD2FB528 {
		return 0, errors.New("not a zstd frame")
	}
	fhd := b[4]
	single := fhd&0x20 != 0
	pos := 5
	if !single {
		pos++ // window descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // dictionary id
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	pos += fcs
	for {
		if len(b) < pos+3 {
			return 0, nil
		}
		h := uint32(b[pos]) | uint32(b[pos+1])<<8 | uint32(b[pos+2])<<16
		pos += 3
		size := int(h >> 3)
		switch h >> 1 & 3 {
		case 1: // RLE: one byte repeated size times
			size = 1
		case 3:
			return 0, errors.New("reserved zstd block type")
		}
		pos += size
		if h&1 != 0 { // last block
			break
		}
	}
	if fhd&0x04 != 0 {
		pos += 4 // content checksum
	}
	if len(b) < pos {
		return 0, nil
	}
	return pos, nil
}

// BytesRead is how many bytes the clients read off their sockets, as
// they came (compressed or not), response headers included.
func (c *Clients) BytesRead() int64 { return c.bytesRead.Load() }

// DecodeErrors is how many compressed bodies failed to decode.
func (c *Clients) DecodeErrors() int64 { return c.decodeErrors.Load() }
