package compress

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/klauspost/compress/zstd"
)

// chunkMix is plain text cut into parts and the chunks of coding enc that
// carry them, made the ways the edge makes them: by the pooled compressor
// (several at once, so from different compressors), by compressors of
// other levels, stored, empty, and one large (8 MiB) part.
func chunkMix(t testing.TB, enc Encoding) (plain []byte, chunks []Chunk) {
	t.Helper()
	page := statePage(2000, 1)
	large := bytes.Repeat(statePage(500, 2), 1+(8<<20)/len(statePage(500, 2)))[:8<<20]
	parts := [][]byte{page[:1000], {}, page[1000:1217], page[1217:50000], large, page[50000:50001], {}, page[50001:]}

	pooled := make([]Chunk, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { pooled[i] = Compress(enc, p) })
	}
	wg.Wait()

	other := otherCompressors(enc)
	for i, p := range parts {
		c := pooled[i]
		switch i % 3 {
		case 1:
			c = Store(enc, p)
		case 2:
			c = other(p)
		}
		plain = append(plain, p...)
		chunks = append(chunks, c)
	}
	return plain, chunks
}

// otherCompressors compresses with a fresh compressor of another level.
func otherCompressors(enc Encoding) func([]byte) Chunk {
	switch enc {
	case Gzip:
		p := newGzipPool(func() deflater { w, _ := flate.NewWriter(nil, flate.BestCompression); return w })
		return p.compress
	case Zstd:
		return newZstdPool(zstd.SpeedBetterCompression).compress
	}
	return func(b []byte) Chunk { return Compress(Identity, b) }
}

func wire(enc Encoding, chunks []Chunk, end bool) []byte {
	s := NewStream(enc)
	var out []byte
	for _, c := range chunks {
		out = s.Append(out, c)
	}
	if end {
		out = s.End(out)
	}
	return out
}

func TestGzipStreamOfSharedChunksReadsBackAsThePlainText(t *testing.T) {
	plain, chunks := chunkMix(t, Gzip)
	body := wire(Gzip, chunks, true)
	for _, multistream := range []bool{false, true} {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(multistream)
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("multistream %v: %v", multistream, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("multistream %v: read %d bytes, differing from the %d plain", multistream, len(got), len(plain))
		}
		if err := zr.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestZstdStreamOfSharedChunksReadsBackAsThePlainText(t *testing.T) {
	plain, chunks := chunkMix(t, Zstd)
	// A browser decodes windows up to 8 MiB (RFC 9659); so must every frame.
	zr, err := zstd.NewReader(bytes.NewReader(wire(Zstd, chunks, true)), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("read %d bytes, differing from the %d plain", len(got), len(plain))
	}
}

func TestStoredZstdOverEightMiBIsFramesWithinTheWindow(t *testing.T) {
	plain := bytes.Repeat([]byte("0123456789abcdef"), (9<<20)/16+3)
	zr, err := zstd.NewReader(bytes.NewReader(Store(Zstd, plain).Data), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read %d of %d bytes, err %v", len(got), len(plain), err)
	}
}

func TestStoredChunksOfEverySizeClassReadBack(t *testing.T) {
	for _, n := range []int{1, 255, 256, 65535, 65536, 65791, 65792, 131072, 131073, 300000} {
		plain := statePage(1+n/100, uint64(n))[:n]
		s := NewStream(Gzip)
		zr, err := gzip.NewReader(bytes.NewReader(s.End(s.Append(nil, Store(Gzip, plain)))))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("gzip, %d bytes: read %d, err %v", n, len(got), err)
		}
		d, _ := zstd.NewReader(nil, zstd.WithDecoderMaxWindow(8<<20))
		got, err := d.DecodeAll(Store(Zstd, plain).Data, nil)
		d.Close()
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("zstd, %d bytes: read %d, err %v", n, len(got), err)
		}
	}
}

func TestGzipStreamCutWithoutTrailerReadsUpToItsLastWholeChunk(t *testing.T) {
	plain, chunks := chunkMix(t, Gzip)
	zr, err := gzip.NewReader(bytes.NewReader(wire(Gzip, chunks, false)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("read %d bytes, differing from the %d plain", len(got), len(plain))
	}

	// Cut inside a chunk: every whole chunk before it is read.
	body := wire(Gzip, chunks[:4], false)
	whole := 0
	for _, c := range chunks[:3] {
		whole += c.Len
	}
	zr, err = gzip.NewReader(bytes.NewReader(body[:len(body)-len(chunks[3].Data)/2]))
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(zr)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) < whole || !bytes.Equal(got, plain[:len(got)]) {
		t.Fatalf("read %d bytes (%d in whole chunks), err %v", len(got), whole, err)
	}
}

func TestZstdStreamCutInsideAFrameReadsUpToItsLastWholeChunk(t *testing.T) {
	plain, chunks := chunkMix(t, Zstd)
	body := wire(Zstd, chunks[:4], false)
	whole := 0
	for _, c := range chunks[:3] {
		whole += c.Len
	}
	zr, err := zstd.NewReader(bytes.NewReader(body[:len(body)-len(chunks[3].Data)/2]), zstd.WithDecoderMaxWindow(8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err := io.ReadAll(zr)
	if err == nil || len(got) < whole || !bytes.Equal(got, plain[:len(got)]) {
		t.Fatalf("read %d bytes (%d in whole chunks), err %v", len(got), whole, err)
	}
}

// A streaming reader (a browser's) gets each chunk's text as soon as the
// chunk has arrived, before anything after it: what makes a live frame
// go out at once.
func TestEachChunkIsReadableBeforeTheNextArrives(t *testing.T) {
	frames := liveFrames(3, 7)
	for _, enc := range []Encoding{Gzip, Zstd} {
		pr, pw := io.Pipe()
		s := NewStream(enc)
		read := make(chan error, 1)
		go readFrames(enc, pr, frames, read)
		for _, f := range frames {
			if _, err := pw.Write(s.Append(nil, Compress(enc, f))); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-read:
				if err != nil {
					t.Fatalf("%v: %v", enc, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%v: a whole chunk was not readable before the next", enc)
			}
		}
		pw.Close()
	}
}

// readFrames decodes r and reports on read as each of frames comes out.
func readFrames(enc Encoding, r io.Reader, frames [][]byte, read chan<- error) {
	var zr io.Reader
	var err error
	if enc == Gzip {
		zr, err = gzip.NewReader(r)
	} else {
		var d *zstd.Decoder
		if d, err = zstd.NewReader(r); err == nil {
			defer d.Close()
		}
		zr = d
	}
	for _, f := range frames {
		if err != nil {
			read <- err
			return
		}
		got := make([]byte, len(f))
		if _, err = io.ReadFull(zr, got); err == nil && !bytes.Equal(got, f) {
			err = errors.New("read " + string(got))
		}
		read <- err
	}
}

// FuzzChunksReadBack: any bytes, cut anywhere, each part compressed or
// stored, read back through either coding as the same bytes.
func FuzzChunksReadBack(f *testing.F) {
	f.Add(statePage(20, 1), []byte{10, 200, 3, 0, 77})
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0}, 70000), []byte{255, 255, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		for _, enc := range []Encoding{Gzip, Zstd} {
			var chunks []Chunk
			rest := data
			for i, c := range cuts {
				n := min(int(c)*int(c), len(rest))
				if i%2 == 0 {
					chunks = append(chunks, Compress(enc, rest[:n]))
				} else {
					chunks = append(chunks, Store(enc, rest[:n]))
				}
				rest = rest[n:]
			}
			chunks = append(chunks, Compress(enc, rest))
			var got []byte
			var err error
			if enc == Gzip {
				var zr *gzip.Reader
				if zr, err = gzip.NewReader(bytes.NewReader(wire(enc, chunks, true))); err == nil {
					got, err = io.ReadAll(zr)
				}
			} else {
				var d *zstd.Decoder
				if d, err = zstd.NewReader(nil, zstd.WithDecoderMaxWindow(8<<20)); err == nil {
					got, err = d.DecodeAll(wire(enc, chunks, true), nil)
					d.Close()
				}
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%v: read %d of %d bytes, err %v", enc, len(got), len(data), err)
			}
		}
	})
}

func TestGzipEndWithoutChunksIsAnEmptyMember(t *testing.T) {
	s := NewStream(Gzip)
	for _, body := range [][]byte{s.End(nil), wire(Gzip, []Chunk{{}, Store(Gzip, nil), Compress(Gzip, nil)}, true)} {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || len(got) != 0 {
			t.Fatalf("read %q, err %v", got, err)
		}
	}
	if z := NewStream(Zstd); z.Next(Compress(Zstd, nil)) != nil || len(z.End(nil)) != 0 {
		t.Fatal("zstd stream has framing")
	}
}

func TestGzipTrailerLengthIsModuloFourGiB(t *testing.T) {
	s := NewStream(Gzip)
	for range 6 { // 6 GiB in chunks an int holds on 32-bit platforms too
		s.Next(Chunk{Len: 1 << 30, Enc: Gzip})
	}
	end := s.End(nil)
	if got, want := binary.LittleEndian.Uint32(end[len(end)-4:]), uint32(2<<30); got != want {
		t.Fatalf("ISIZE %d, want %d", got, want)
	}
}

func TestIdentityChunkIsThePlainBytes(t *testing.T) {
	plain := []byte("id:1\ndata:x\n\n")
	s := NewStream(Identity)
	c := Compress(Identity, plain)
	if &c.Data[0] != &plain[0] || s.Next(c) != nil || len(s.End(nil)) != 0 {
		t.Fatal("identity is not the plain bytes unframed")
	}
}

func TestStreamIsAFewWords(t *testing.T) {
	if n := unsafe.Sizeof(Stream{}); n > 16 {
		t.Fatalf("Stream is %d bytes", n)
	}
}

func TestAppendStoredIsTheStoredChunkAsTheStreamSendsIt(t *testing.T) {
	for _, enc := range []Encoding{Identity, Gzip, Zstd} {
		for _, n := range []int{0, 1, 13, maxStored, maxStored + 1, 300 << 10} {
			plain := statePage(1+n/100, 3)[:n]
			viaChunk, direct := NewStream(enc), NewStream(enc)
			for round := range 2 { // the first carries the gzip header, the second not
				want := viaChunk.Append([]byte("x"), Store(enc, plain))
				if got := direct.AppendStored([]byte("x"), plain); !bytes.Equal(got, want) {
					t.Fatalf("%v, %d bytes, round %d: AppendStored differs from Append(Store)", enc, n, round)
				}
			}
			if !bytes.Equal(viaChunk.End(nil), direct.End(nil)) {
				t.Fatalf("%v, %d bytes: the trailers differ", enc, n)
			}
		}
	}
}

// AppendStored copies the plain bytes once, into its result: no chunk is
// made and copied again. Counted in bytes allocated, which the race
// detector's own small allocations do not blur.
func TestAppendStoredCopiesThePlainBytesOnce(t *testing.T) {
	plain := bytes.Repeat(statePage(100, 1), 1+(256<<10)/len(statePage(100, 1)))[:256<<10]
	for _, enc := range []Encoding{Gzip, Zstd} {
		s := NewStream(enc)
		least := uint64(math.MaxUint64)
		var n int
		for range 5 {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			n = len(s.AppendStored(nil, plain))
			runtime.ReadMemStats(&after)
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > uint64(n)+uint64(n)/8 {
			t.Fatalf("%v: %d bytes allocated for a %d-byte result", enc, least, n)
		}
	}
}
