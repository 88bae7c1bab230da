// Package compress compresses the edge's shared encodings once for every
// client (issue 24): a state page, a resume, a large value is compressed
// into a Chunk once, and every stream of that content coding sends the
// same compressed bytes. A client holds no compressor, only a Stream: a
// few words of framing (the gzip header, and at a clean end the trailer).
//
// Chunks concatenate: a gzip chunk is raw deflate from a fresh compressor
// ending with a sync flush (an empty stored block, so on a byte boundary,
// no back-reference outside itself, no final bit), and any sequence of
// such chunks after a gzip header is one valid deflate stream; a zstd
// chunk is whole zstd frames, and frames concatenate by definition
// (RFC 8878 3.1). A stream cut between chunks (an edge killed) decodes up
// to its last whole chunk.
//
// Negotiate picks the coding from Accept-Encoding (RFC 9110 12.5.3).
//
// Concurrency: Compress, Store and Negotiate are safe for concurrent use;
// compressors come from sync.Pools and go back before Compress returns.
// A Stream belongs to one client's writer.
package compress

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"

	kflate "github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Encoding is a content coding the edge sends.
type Encoding uint8

// The codings, by their Content-Encoding names.
const (
	Identity Encoding = iota
	Gzip
	Zstd
	numEncodings
)

// String is the coding's Content-Encoding name.
func (e Encoding) String() string {
	switch e {
	case Identity:
		return "identity"
	case Gzip:
		return "gzip"
	case Zstd:
		return "zstd"
	}
	return "unknown"
}

// The compressors, chosen by BenchmarkStatePage (a topic's state, 10,000
// JSON values of ~200 B in 256 KiB pages; the numbers in bench_test.go):
//   - gzip: klauspost/compress/flate level 5, 5.2x fewer bytes at 2 to 4
//     times less CPU than compress/flate level 5 (5.5x), for 5% more
//     bytes; compress/flate level 6 gains 1.5% more at 40% more CPU again,
//     level 1 gives 4.4x. The same deflate format, a sync flush alike; its
//     Reset does not clear a 512 KiB hash table, compress/flate's does.
//   - zstd: SpeedFastest, 5.1x; SpeedDefault gains nothing on pages this
//     size (5.13x) for half as much CPU again. Its window is 1 MiB: a
//     pooled encoder then allocates 3 MiB on first use instead of 9.5,
//     for the same ratio on pages and 5.09x on the whole state at once.
const (
	gzipLevel  = 5
	zstdLevel  = zstd.SpeedFastest
	zstdWindow = 1 << 20
)

// Chunk is plain bytes compressed once, to be sent as they are by every
// stream of its coding, in any order with other chunks of that coding.
// The zero Chunk is empty and valid in every coding.
type Chunk struct {
	// Data is what goes on the wire: raw deflate ending on a byte
	// boundary (Gzip), whole frames (Zstd), the plain bytes (Identity).
	// Nothing may write to it.
	Data []byte
	// Len is the length of the plain bytes.
	Len int
	// CRC is the CRC-32 (IEEE) of the plain bytes, and shift the
	// multiplier that moves a CRC past them (x^(8*Len) mod P, see crc.go),
	// computed once here so that a Stream's trailer costs one carry-less
	// multiply per chunk. Gzip only.
	CRC   uint32
	shift uint32
	// Enc is the chunk's coding.
	Enc Encoding
}

// Compress compresses plain into a chunk of coding enc, once, with a
// pooled compressor. An Identity chunk is plain itself, not a copy; any
// other chunk owns its Data. Empty plain gives the empty chunk.
func Compress(enc Encoding, plain []byte) Chunk {
	switch enc {
	case Gzip:
		return defaultGzip.compress(plain)
	case Zstd:
		return defaultZstd.compress(plain)
	}
	return Chunk{Data: plain, Len: len(plain), Enc: Identity}
}

// Store frames plain in coding enc without compressing it: stored deflate
// blocks (5 bytes each per 64 KiB, and 5 for the empty block that ends
// them, see syncFlush) or zstd frames of raw blocks (about 10
// bytes, 3 more per 128 KiB). It costs a copy and a CRC, no compressor:
// the choice for a small live frame that compression would not shrink.
func Store(enc Encoding, plain []byte) Chunk {
	switch enc {
	case Gzip:
		c := gzipChunk(plain)
		c.Data = appendStoredDeflate(make([]byte, 0, storedDeflateSize(len(plain))), plain)
		return c
	case Zstd:
		return Chunk{Data: appendStoredZstd(make([]byte, 0, storedZstdSize(len(plain))), plain), Len: len(plain), Enc: Zstd}
	}
	return Chunk{Data: plain, Len: len(plain), Enc: Identity}
}

// gzipChunk is a gzip chunk of plain without its Data: its length and CRC.
func gzipChunk(plain []byte) Chunk {
	return Chunk{Len: len(plain), CRC: crc32.ChecksumIEEE(plain), shift: crcShift(int64(len(plain))), Enc: Gzip}
}

// deflater is what a gzip pool needs of a deflate compressor; Flush is a
// sync flush. The Writers of compress/flate and klauspost's flate are.
type deflater interface {
	Reset(io.Writer)
	Write([]byte) (int, error)
	Flush() error
}

// gzipPool pools deflate compressors of one level. A level-5 Writer holds
// about 1.3 MB; it is taken for one Compress and put back.
type gzipPool struct {
	pool sync.Pool // deflater
}

var defaultGzip = newGzipPool(func() deflater {
	w, err := kflate.NewWriter(nil, gzipLevel)
	if err != nil {
		panic("compress: gzip level: " + err.Error()) // a constant of this package
	}
	return w
})

func newGzipPool(newDeflater func() deflater) *gzipPool {
	p := &gzipPool{}
	p.pool.New = func() any { return newDeflater() }
	return p
}

// scratch holds a compressor's output until it is copied out at its size,
// so that a chunk holds no spare capacity and the buffer is reused.
var scratch = sync.Pool{New: func() any { return new(appendWriter) }}

// maxScratch is the largest buffer put back in scratch; a larger one (an
// 8 MiB value) goes to the collector rather than stay pinned.
const maxScratch = 1 << 20

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func putScratch(w *appendWriter) {
	if cap(w.b) <= maxScratch {
		w.b = w.b[:0]
		scratch.Put(w)
	}
}

func (p *gzipPool) compress(plain []byte) Chunk {
	c := gzipChunk(plain)
	if len(plain) == 0 {
		return c
	}
	buf := scratch.Get().(*appendWriter)
	w := p.pool.Get().(deflater)
	w.Reset(buf)
	// Writes to an appendWriter do not fail.
	_, _ = w.Write(plain)
	_ = w.Flush() // sync flush: an empty stored block, the byte boundary
	p.pool.Put(w)
	c.Data = bytes.Clone(buf.b)
	putScratch(buf)
	return c
}

// zstdPool pools zstd encoders of one level, each used by one goroutine
// at a time (concurrency 1: EncodeAll needs no goroutines of its own).
// The window, zstdWindow, stays within the 8 MiB a browser decodes (RFC
// 9659).
type zstdPool struct {
	level zstd.EncoderLevel
	pool  sync.Pool // *zstd.Encoder
}

var defaultZstd = newZstdPool(zstdLevel)

func newZstdPool(level zstd.EncoderLevel) *zstdPool {
	p := &zstdPool{level: level}
	p.pool.New = func() any {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow))
		if err != nil {
			panic("compress: zstd level " + err.Error()) // a constant of this package
		}
		return e
	}
	return p
}

func (p *zstdPool) compress(plain []byte) Chunk {
	c := Chunk{Len: len(plain), Enc: Zstd}
	if len(plain) == 0 {
		return c // no frame: zero frames are a valid stream
	}
	buf := scratch.Get().(*appendWriter)
	e := p.pool.Get().(*zstd.Encoder)
	buf.b = e.EncodeAll(plain, buf.b[:0])
	p.pool.Put(e)
	c.Data = bytes.Clone(buf.b)
	putScratch(buf)
	return c
}

// maxStored is the most plain bytes in one stored deflate block.
const maxStored = 0xffff

func storedDeflateSize(n int) int {
	return n + 5*((n+maxStored-1)/maxStored) + len(syncFlush)
}

// syncFlush is an empty stored block, what a sync flush ends with. A
// stored chunk ends with one too: Go's compress/flate reader (net/http's
// transparent gzip) hands out a stored block's bytes only once it meets
// the next empty one (or its window fills), so without it a live frame
// would wait in a Go client until the next compressed chunk.
var syncFlush = [5]byte{0, 0, 0, 0xff, 0xff}

// appendStoredDeflate appends plain as stored deflate blocks, none final:
// a header byte (BFINAL 0, BTYPE 00, padded to the byte), LEN and NLEN
// (RFC 1951 3.2.4), then an empty one (syncFlush). Every block starts and
// ends on a byte boundary.
func appendStoredDeflate(dst, plain []byte) []byte {
	for len(plain) > 0 {
		n := min(len(plain), maxStored)
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, plain[:n]...)
		plain = plain[n:]
	}
	return append(dst, syncFlush[:]...)
}

// The zstd framing of a stored chunk (RFC 8878 3.1.1): single-segment
// frames, whose window is their content size, so at most 8 MiB each (RFC
// 9659), of raw blocks of at most 128 KiB.
const (
	zstdMagic        = 0xFD2FB528
	maxZstdFrame     = 8 << 20
	maxZstdRawBlock  = 128 << 10
	zstdSingleSegmnt = 1 << 5
)

// storedZstdSize is what appendStoredZstd appends for n bytes, at most: a
// frame header of up to 10 bytes per frame, 3 per block.
func storedZstdSize(n int) int {
	return n + 10*((n+maxZstdFrame-1)/maxZstdFrame) + 3*((n+maxZstdRawBlock-1)/maxZstdRawBlock)
}

// appendStoredZstd appends plain as zstd frames of raw blocks.
func appendStoredZstd(dst, plain []byte) []byte {
	for len(plain) > 0 {
		n := min(len(plain), maxZstdFrame)
		dst = appendZstdRawFrame(dst, plain[:n])
		plain = plain[n:]
	}
	return dst
}

func appendZstdRawFrame(dst, frame []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, zstdMagic)
	n := len(frame)
	switch {
	case n < 256: // Frame_Content_Size_flag 0: one byte
		dst = append(dst, zstdSingleSegmnt, byte(n))
	case n < 256+0x10000: // flag 1: two bytes, less 256
		dst = append(dst, 1<<6|zstdSingleSegmnt)
		dst = binary.LittleEndian.AppendUint16(dst, uint16(n-256))
	default: // flag 2: four bytes
		dst = append(dst, 2<<6|zstdSingleSegmnt)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	}
	for len(frame) > 0 {
		b := min(len(frame), maxZstdRawBlock)
		// Block_Header: Last_Block, Block_Type 0 (raw), Block_Size.
		h := uint32(b) << 3
		if b == len(frame) {
			h |= 1
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		dst = append(dst, frame[:b]...)
		frame = frame[b:]
	}
	return dst
}
