// Content codings of streams (issue 24, edge/internal/compress): each
// stream's coding is negotiated once, from its Accept-Encoding, and is part
// of its view (frameFormat): whatever the view shares (a live frame, a
// state page, a resume) is made into a chunk of that coding once, and its
// bytes go to every client of the view. A client keeps only its stream's
// framing (client.cs): the gzip header before the first chunk, the CRC
// and length of what it sent, and the trailer at a clean end.

package hub

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
)

// numCodings is how many codings there are: compress.Identity, Gzip, Zstd.
const numCodings = 3

// liveCompressMin is the shortest live frame compressed: a shorter one is
// stored (framed, not compressed). A frame of a ~200 B JSON value does not
// compress alone (compress's BenchmarkLiveFrame), a value of kilobytes does.
// liveCompressMax is the longest: a live frame is made on the feed's
// goroutine, under its lock, and an 8 MiB value took 60-75 ms to compress
// here, which every other change of the topic would wait behind (issue
// 21's neighbour rule); a longer frame is stored (a copy). State pages
// and resumes, made on the streams' goroutines, are compressed whatever
// their size.
const (
	liveCompressMin = 1 << 10
	liveCompressMax = 64 << 10
)

// codingMetrics are the counters of the codings, resolved once. A nil one
// counts nothing (tests).
type codingMetrics struct {
	raw, wire, streams [numCodings]prometheus.Counter
}

func newCodingMetrics(m *metrics.Edge) *codingMetrics {
	if m == nil || m.CompressedRaw == nil {
		return nil
	}
	cm := &codingMetrics{}
	for _, e := range []compress.Encoding{compress.Identity, compress.Gzip, compress.Zstd} {
		cm.streams[e] = m.StreamsByCoding.WithLabelValues(e.String())
		if e != compress.Identity {
			cm.raw[e] = m.CompressedRaw.WithLabelValues(e.String())
			cm.wire[e] = m.CompressedWire.WithLabelValues(e.String())
		}
	}
	return cm
}

// made counts a chunk made: its plain and its wire bytes.
func (cm *codingMetrics) made(ch compress.Chunk) {
	if cm == nil || ch.Enc == compress.Identity || int(ch.Enc) >= numCodings {
		return
	}
	cm.raw[ch.Enc].Add(float64(ch.Len))
	cm.wire[ch.Enc].Add(float64(len(ch.Data)))
}

// stream counts a stream of coding enc.
func (cm *codingMetrics) stream(enc compress.Encoding) {
	if cm != nil && int(enc) < numCodings {
		cm.streams[enc].Inc()
	}
}

// compress compresses plain into a chunk of enc, counted.
func (cm *codingMetrics) compress(enc compress.Encoding, plain []byte) compress.Chunk {
	ch := compress.Compress(enc, plain)
	cm.made(ch)
	return ch
}

// store frames plain as a chunk of enc without compressing it, counted.
func (cm *codingMetrics) store(enc compress.Encoding, plain []byte) compress.Chunk {
	ch := compress.Store(enc, plain)
	cm.made(ch)
	return ch
}

// keepAliveChunks are the keep-alive comment in each coding, made once.
var keepAliveChunks = [numCodings]compress.Chunk{
	compress.Store(compress.Identity, keepAliveFrame),
	compress.Store(compress.Gzip, keepAliveFrame),
	compress.Store(compress.Zstd, keepAliveFrame),
}

// offersCoding reports whether offer has a coding besides identity: the
// response then varies by Accept-Encoding.
func offersCoding(offer []compress.Encoding) bool {
	for _, e := range offer {
		if e != compress.Identity {
			return true
		}
	}
	return false
}

// appendChunkLocked appends what the client's stream sends for ch next:
// what goes before it (the gzip header before the first chunk), then its
// data. The caller holds c.mu and writes them next.
func (c *client) appendChunkLocked(bufs [][]byte, ch *compress.Chunk) [][]byte {
	if p := c.cs.Next(*ch); len(p) > 0 {
		bufs = append(bufs, p)
	}
	if len(ch.Data) > 0 {
		bufs = append(bufs, ch.Data)
	}
	return bufs
}

// framedLocked returns the frames of q as buffers to write, in a pooled
// list (putIovecs once written), framed by the client's stream: a frame
// of its coding as its chunk, a marker (made for this client) stored now
// (not counted in the compressed bytes: those are the shared chunks).
// The caller holds c.mu and writes them, in order, before anything else.
func (c *client) framedLocked(q []queued) *iovecs {
	iv := iovecPool.Get().(*iovecs)
	enc := c.cs.Encoding()
	if enc == compress.Identity {
		for i := range q {
			iv.bufs = append(iv.bufs, q[i].frame())
		}
		return iv
	}
	for i := range q {
		if ch := q[i].ch; ch != nil && ch.Enc == enc {
			iv.bufs = c.appendChunkLocked(iv.bufs, ch)
		} else if b := c.cs.AppendStored(nil, q[i].frame()); len(b) > 0 {
			iv.bufs = append(iv.bufs, b)
		}
	}
	return iv
}

// wire returns plain as the client's stream sends it next: plain itself in
// identity, else stored as a chunk after what goes before it. The caller
// owns the stream's writes and writes it next.
func (c *client) wire(plain []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs.Encoding() == compress.Identity {
		return plain
	}
	return c.cs.AppendStored(nil, plain)
}

// keepAliveLocked is the keep-alive comment, queued as a chunk of the
// client's coding made once. The caller holds c.mu.
func (c *client) keepAliveLocked() queued {
	q := marker(keepAliveFrame)
	if enc := c.cs.Encoding(); enc != compress.Identity && int(enc) < numCodings {
		q.ch = &keepAliveChunks[enc]
	}
	return q
}

// end returns, once, what ends the stream cleanly (end with c.mu held).
func (c *client) end(final []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endLocked(final)
}

// endLocked returns, once, what ends the client's stream cleanly: final (a
// drain's retry, a reset; nil if none) as the stream sends it, then the
// stream's end (the gzip trailer, from the CRCs combined per chunk). In
// identity that is final itself. Nothing may be written after it. The
// caller holds c.mu and owns the stream's writes.
func (c *client) endLocked(final []byte) []byte {
	if c.ended {
		return nil
	}
	c.ended = true
	if c.cs.Encoding() == compress.Identity {
		return final
	}
	b := make([]byte, 0, len(final)+32+compress.EndLen)
	if len(final) > 0 {
		b = c.cs.AppendStored(b, final)
	}
	return c.cs.End(b)
}
