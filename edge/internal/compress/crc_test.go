package compress

import (
	"bytes"
	"hash/crc32"
	"testing"
)

func TestCRCCombineEqualsChecksumOfConcatenation(t *testing.T) {
	long := bytes.Repeat([]byte("id:1\ndata:{\"price\":12.5}\n\n"), 40000) // > 1 MiB
	tests := []struct {
		name string
		a, b []byte
	}{
		{"both empty", nil, nil},
		{"empty second", []byte("abc"), nil},
		{"empty first", nil, []byte("abc")},
		{"one byte each", []byte{0}, []byte{0xff}},
		{"check value halves", []byte("1234"), []byte("56789")},
		{"short and long", []byte("data:"), long},
		{"long and short", long, []byte("\n\n")},
		{"long and long", long, long[7:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := crcCombine(crc32.ChecksumIEEE(tt.a), crc32.ChecksumIEEE(tt.b), crcShift(int64(len(tt.b))))
			want := crc32.ChecksumIEEE(append(append([]byte{}, tt.a...), tt.b...))
			if got != want {
				t.Fatalf("combine = %08x, crc32 of the concatenation = %08x", got, want)
			}
		})
	}
}

func TestCRCShiftOfLengthsPastFourGiB(t *testing.T) {
	// x^(8n) for n and n + period: the order of x mod P divides 2^32-1,
	// so x^(8·(2^32-1)) is 1 and a shift by that many bytes is none.
	for _, n := range []int64{0, 1, 1000, 1 << 20} {
		if got, want := crcShift(n+(1<<32-1)), crcShift(n); got != want {
			t.Fatalf("crcShift(%d + 2^32-1) = %08x, crcShift(%d) = %08x", n, got, n, want)
		}
	}
	// Zeros: crc(A‖0^n) is combine(crc(A), crc(0^n), shift(n)).
	zeros := make([]byte, 3<<20)
	a := []byte("state")
	got := crcCombine(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(zeros), crcShift(int64(len(zeros))))
	if want := crc32.ChecksumIEEE(append(a, zeros...)); got != want {
		t.Fatalf("combine over 3 MiB of zeros = %08x, want %08x", got, want)
	}
}

// FuzzCRCCombine: for any split of any bytes into three parts, combining
// the parts' CRCs in order gives the CRC of the whole.
func FuzzCRCCombine(f *testing.F) {
	f.Add([]byte("id:1\ndata:{}\n\n"), uint16(3), uint16(7))
	f.Add([]byte{}, uint16(0), uint16(0))
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint16(100), uint16(299))
	f.Fuzz(func(t *testing.T, data []byte, i, j uint16) {
		x, y := int(i), int(j)
		x = min(x, len(data))
		y = max(min(y, len(data)), x)
		crc := uint32(0)
		for _, part := range [][]byte{data[:x], data[x:y], data[y:]} {
			crc = crcCombine(crc, crc32.ChecksumIEEE(part), crcShift(int64(len(part))))
		}
		if want := crc32.ChecksumIEEE(data); crc != want {
			t.Fatalf("combined %08x, want %08x (split %d, %d of %d)", crc, want, x, y, len(data))
		}
	})
}
