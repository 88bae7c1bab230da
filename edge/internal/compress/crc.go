package compress

// CRC-32 combine. A gzip trailer carries the CRC-32 of everything the
// stream sent; each chunk's CRC is computed once, and a Stream combines
// them: crc(A‖B) = crc(A)·x^(8·len(B)) mod P ⊕ crc(B). hash/crc32 has no
// combine, so this is ours: zlib's crc32_combine (1.2.12 and later, the
// x^(8n) mod P method, after Mark Adler), on the reflected IEEE
// polynomial. crcShift computes the multiplier in O(log n) once per chunk;
// crcCombine is then one multiplication mod P per chunk per stream.

// crcPoly is the IEEE polynomial, reflected (crc32.IEEE).
const crcPoly = 0xedb88320

// multModP returns a(x)·b(x) mod P(x), reflected: bit 31 is x^0. It is
// branch-free but for the loop, which ends with a's last term: a stream
// pays it once per chunk, and over chunks of varied lengths a branch per
// term of a, mispredicted half the time, made it 8 times slower.
func multModP(a, b uint32) uint32 {
	var p uint32
	for ; a != 0; a <<= 1 {
		p ^= b & -(a >> 31) // a has the term x^i: add b·x^i
		b = b>>1 ^ crcPoly&-(b&1)
	}
	return p
}

// x2nTable[k] is x^(2^k) mod P. x^(2^32) is x again (the order of x
// divides 2^32-1), so 32 entries serve every power.
var x2nTable = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	t[0] = p
	for k := 1; k < len(t); k++ {
		p = multModP(p, p)
		t[k] = p
	}
	return t
}()

// crcShift returns x^(8·n) mod P: what moves a CRC past n bytes.
func crcShift(n int64) uint32 {
	p := uint32(1) << 31 // x^0
	k := 3               // 8·n = n·2^3
	for u := uint64(n); u != 0; u >>= 1 {
		if u&1 != 0 {
			p = multModP(x2nTable[k&31], p)
		}
		k++
	}
	return p
}

// crcCombine returns the CRC-32 of A‖B from crc1 = crc(A), crc2 = crc(B)
// and shift = crcShift(len(B)).
func crcCombine(crc1, crc2, shift uint32) uint32 {
	return multModP(shift, crc1) ^ crc2
}
