package compress

import "encoding/binary"

// Stream is one client's framing of shared chunks, in one coding. It holds
// no compressor and no buffer: a gzip stream is a header, the chunks, and
// at a clean end a final empty block and the trailer, whose CRC-32 and
// length it keeps as chunks go by. Zstd and identity need no framing.
// A Stream is used by one goroutine, the client's writer.
type Stream struct {
	crc     uint32 // of the plain bytes sent so far
	size    uint32 // ISIZE: their length mod 2^32
	enc     Encoding
	started bool // the header went
}

// NewStream starts a stream of coding enc.
func NewStream(enc Encoding) Stream {
	return Stream{enc: enc}
}

// Encoding is the stream's coding.
func (s *Stream) Encoding() Encoding { return s.enc }

// gzipHeader is RFC 1952's member header: deflate, no flags, no time,
// XFL 0, OS unknown.
var gzipHeader = [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

// Next accounts for c, which must be of the stream's coding, sent next,
// and returns what goes on the wire before c.Data: the gzip header before
// the first chunk, else nothing. The bytes returned are shared: nothing
// may write to them.
func (s *Stream) Next(c Chunk) (prefix []byte) {
	if s.enc != Gzip {
		return nil
	}
	if c.Len > 0 { // the zero Chunk has no shift
		s.crc = crcCombine(s.crc, c.CRC, c.shift)
	}
	s.size += uint32(c.Len) // ISIZE is the length mod 2^32
	if s.started {
		return nil
	}
	s.started = true
	return gzipHeader[:]
}

// Append appends c, as Next frames it, to dst.
func (s *Stream) Append(dst []byte, c Chunk) []byte {
	dst = append(dst, s.Next(c)...)
	return append(dst, c.Data...)
}

// AppendStored appends plain to dst as the stream sends it next, stored
// (framed, not compressed): what goes before it, then the stored chunk.
// In identity that is plain itself. It is Append(dst, Store(enc, plain))
// without the chunk's own copy: the choice for a frame made for one
// client (a retry hint, a ready).
func (s *Stream) AppendStored(dst, plain []byte) []byte {
	switch s.enc {
	case Gzip:
		dst = grow(dst, len(gzipHeader)+storedDeflateSize(len(plain)))
		dst = append(dst, s.Next(gzipChunk(plain))...)
		return appendStoredDeflate(dst, plain)
	case Zstd:
		return appendStoredZstd(grow(dst, storedZstdSize(len(plain))), plain)
	}
	return append(dst, plain...)
}

// grow returns dst with room for n more bytes. slices.Grow does the same
// but, built with -race, allocates n bytes more on the way.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	g := make([]byte, len(dst), len(dst)+n)
	copy(g, dst)
	return g
}

// EndLen is the most End appends: a header, a final block, a trailer.
const EndLen = len(gzipHeader) + 2 + 8

// End appends to dst what ends the stream cleanly: for gzip, the header
// if no chunk went, a final empty block (fixed Huffman, BFINAL set: 03
// 00) and the trailer, CRC-32 and ISIZE, little-endian (RFC 1952 2.3.1).
// Nothing for zstd and identity. A stream cut without its end is still
// read up to its last whole chunk by a streaming decoder (a browser); the
// end lets a strict one (gzip.Reader) see a complete member.
func (s *Stream) End(dst []byte) []byte {
	if s.enc != Gzip {
		return dst
	}
	if !s.started {
		s.started = true
		dst = append(dst, gzipHeader[:]...)
	}
	dst = append(dst, 0x03, 0x00)
	dst = binary.LittleEndian.AppendUint32(dst, s.crc)
	return binary.LittleEndian.AppendUint32(dst, s.size)
}
