package proto

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Limits that keep a hostile or corrupt message from allocating without bound.
const (
	maxBytesField = 64 << 20 // one key, value or string
	maxRecords    = 1 << 20  // records in one state page
	maxHeaders    = 1 << 24  // headers of one record: Kafka has no limit; each takes two bytes or more, so a count allocates no more than the message holds
	MaxPartitions = 1 << 16  // partitions of one topic
)

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// reader decodes fields in order and remembers the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error, what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w", what, err)
	}
}

func (r *reader) byte(what string) byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.fail(ErrTruncated, what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(ErrTruncated, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(ErrTruncated, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// fixed32 reads a big-endian uint32.
func (r *reader) fixed32(what string) uint32 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 4 {
		r.fail(ErrTruncated, what)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

// count reads a length or count no larger than max.
func (r *reader) count(what string, max int) int {
	v := r.uvarint(what)
	if r.err != nil {
		return 0
	}
	if v > uint64(max) {
		r.fail(ErrTooLarge, what)
		return 0
	}
	return int(v)
}

// uint32 reads a uvarint no larger than math.MaxUint32 (an epoch). It does
// not go through count, whose int limit overflows on 32-bit platforms.
func (r *reader) uint32(what string) uint32 {
	v := r.uvarint(what)
	if v > math.MaxUint32 {
		r.fail(ErrTooLarge, what)
		return 0
	}
	return uint32(v)
}

// bytes returns a copy, so decoded messages never alias the input buffer.
func (r *reader) bytes(what string) []byte {
	n := r.count(what, maxBytesField)
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(ErrTruncated, what)
		return nil
	}
	v := make([]byte, n)
	copy(v, r.b[:n])
	r.b = r.b[n:]
	return v
}

func (r *reader) string(what string) string {
	n := r.count(what, maxBytesField)
	if r.err != nil {
		return ""
	}
	if len(r.b) < n {
		r.fail(ErrTruncated, what)
		return ""
	}
	v := string(r.b[:n])
	r.b = r.b[n:]
	return v
}

func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.fail(ErrMalformed, what+": trailing bytes")
	}
	return r.err
}
