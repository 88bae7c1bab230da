package proto

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
)

// Progress is a stream's position: for each partition of a topic, the next
// offset not yet reflected, plus the topic epoch it belongs to and the time of
// the position (used against the tombstone horizon, docs/architecture.md rule 3).
type Progress struct {
	// Epoch identifies the topic incarnation; 0 means unknown (a Zilla id).
	Epoch uint32
	// TimeMs is the position's time in Unix milliseconds; 0 means unknown.
	TimeMs int64
	// Offsets holds the next offset per partition, indexed by partition id.
	Offsets []int64
	// Zilla is set when the progress was read from Zilla's kind=1 format.
	Zilla bool
}

// Clone returns a deep copy.
func (p Progress) Clone() Progress {
	p.Offsets = append([]int64(nil), p.Offsets...)
	return p
}

// Offset returns the next offset for partition, 0 when the progress does not name it.
func (p Progress) Offset(partition int32) int64 {
	if int(partition) < len(p.Offsets) && partition >= 0 {
		return p.Offsets[partition]
	}
	return 0
}

// IsZero reports whether the progress is at the very start of every partition.
func (p Progress) IsZero() bool {
	for _, o := range p.Offsets {
		if o != 0 {
			return false
		}
	}
	return true
}

// Progress kinds: the first byte of a decoded id.
const (
	kindZilla    = 1 // Zilla: zigzag varint count, then (partition, next offset) pairs
	kindProgress = 2 // ours, version 1: epoch, time, count, next offsets
)

// MaxEventIDLen bounds the Last-Event-ID this codec reads. Longer ids are
// refused with ErrTooLarge (the edge then starts the client from zero).
const MaxEventIDLen = 256 << 10

var b64 = base64.RawURLEncoding

// KeyEncoding encodes a key in a key-form event id and in the data of
// "event:delete": base64url with padding, byte for byte what Zilla writes
// (Java's Base64.getUrlEncoder()). Our own progress is unpadded; Zilla's
// progress is padded: ParseEventID reads either.
var KeyEncoding = base64.URLEncoding

// AppendProgress appends the compact text form of p (base64url, no padding).
func AppendProgress(dst []byte, p *Progress) []byte {
	var scratch [256]byte
	bin := scratch[:0]
	bin = append(bin, kindProgress)
	bin = binary.AppendUvarint(bin, uint64(p.Epoch))
	bin = binary.AppendUvarint(bin, uint64(max(p.TimeMs, 0)))
	bin = binary.AppendUvarint(bin, uint64(len(p.Offsets)))
	for _, o := range p.Offsets {
		bin = binary.AppendUvarint(bin, uint64(max(o, 0)))
	}
	return b64.AppendEncode(dst, bin)
}

// IDFormat is a route's event id template.
type IDFormat uint8

const (
	// IDEtag is the template "${etag}" (the default).
	IDEtag IDFormat = iota
	// IDKeyEtag is the template `["${base64(key)}","${etag}"]`.
	IDKeyEtag
)

// ParseIDFormat maps a route's event.id template to its format.
func ParseIDFormat(template string) (IDFormat, error) {
	switch strings.ReplaceAll(template, " ", "") {
	case "", "${etag}":
		return IDEtag, nil
	case `["${base64(key)}","${etag}"]`:
		return IDKeyEtag, nil
	}
	return 0, fmt.Errorf("event id template %q: want %q or %q: %w", template, "${etag}", `["${base64(key)}","${etag}"]`, ErrMalformed)
}

// AppendEventID appends an SSE event id: the progress, then "/etag" when the
// record carried an etag header, wrapped with the key when the format asks.
// A nil key is written as JSON null. An etag that cannot stand in an id line
// (CR, LF or NUL, which makes browsers ignore the id) is left out; in the key
// form it is escaped as a JSON string.
func AppendEventID(dst []byte, f IDFormat, key []byte, keyNull bool, p *Progress, etagHeader string) []byte {
	if strings.ContainsAny(etagHeader, "\r\n\x00") {
		etagHeader = ""
	}
	if f == IDKeyEtag {
		if keyNull {
			dst = append(dst, `[null,"`...)
		} else {
			dst = append(dst, `["`...)
			dst = KeyEncoding.AppendEncode(dst, key)
			dst = append(dst, `","`...)
		}
	}
	dst = AppendProgress(dst, p)
	if etagHeader != "" {
		dst = append(dst, '/')
		if f == IDKeyEtag {
			dst = appendJSONEscaped(dst, etagHeader)
		} else {
			dst = append(dst, etagHeader...)
		}
	}
	if f == IDKeyEtag {
		dst = append(dst, `"]`...)
	}
	return dst
}

// appendJSONEscaped appends s escaped for the inside of a JSON string.
func appendJSONEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, fmt.Sprintf("\\u%04x", c)...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// ParseEventID reads the progress out of a Last-Event-ID in any form this
// project or Zilla writes: the bare progress, "<progress>/<etag>", or the
// key form `["<key>","<progress>[/<etag>]"]`, with the progress in our
// format or Zilla's kind=1 format. The key part is not read (ids written
// before the key moved to base64url carry it in the standard alphabet), and
// the progress may be padded or not.
func ParseEventID(id string) (Progress, error) {
	if len(id) > MaxEventIDLen {
		return Progress{}, fmt.Errorf("event id of %d bytes: %w", len(id), ErrTooLarge)
	}
	id = strings.TrimSpace(id)
	if strings.HasPrefix(id, "[") {
		var parts []*string
		if err := json.Unmarshal([]byte(id), &parts); err != nil || len(parts) != 2 || parts[1] == nil {
			return Progress{}, fmt.Errorf("event id key form: %w", ErrMalformed)
		}
		id = *parts[1]
	}
	if i := strings.IndexByte(id, '/'); i >= 0 {
		id = id[:i]
	}
	bin, err := b64.DecodeString(strings.TrimRight(id, "="))
	if err != nil {
		return Progress{}, fmt.Errorf("event id base64: %w", ErrMalformed)
	}
	if len(bin) == 0 {
		return Progress{}, fmt.Errorf("event id empty: %w", ErrMalformed)
	}
	switch bin[0] {
	case kindZilla:
		return decodeZillaProgress(bin[1:])
	case kindProgress:
		return decodeProgress(bin[1:])
	}
	return Progress{}, fmt.Errorf("event id kind %d: %w", bin[0], ErrVersion)
}

func decodeProgress(bin []byte) (Progress, error) {
	r := reader{b: bin}
	var p Progress
	p.Epoch = r.uint32("epoch")
	p.TimeMs = int64(r.uvarint("time") & (1<<63 - 1))
	n := r.count("partition count", MaxPartitions)
	if r.err == nil {
		p.Offsets = make([]int64, 0, min(n, len(r.b)))
	}
	for i := 0; i < n && r.err == nil; i++ {
		p.Offsets = append(p.Offsets, int64(r.uvarint("offset")&(1<<63-1)))
	}
	if err := r.end("progress"); err != nil {
		return Progress{}, err
	}
	return p, nil
}

// decodeZillaProgress reads Zilla's progress: zigzag varint32 partition count,
// then zigzag varint32 partition id and zigzag varint64 next offset pairs.
func decodeZillaProgress(bin []byte) (Progress, error) {
	r := reader{b: bin}
	n := r.varint("zilla partition count")
	if r.err == nil && (n < 0 || n > MaxPartitions) {
		r.fail(ErrTooLarge, "zilla partition count")
	}
	p := Progress{Zilla: true}
	for i := int64(0); i < n && r.err == nil; i++ {
		id := r.varint("zilla partition id")
		off := r.varint("zilla offset")
		if r.err != nil {
			break
		}
		if id < 0 || id >= MaxPartitions || off < 0 {
			r.fail(ErrMalformed, "zilla partition")
			break
		}
		for int64(len(p.Offsets)) <= id {
			p.Offsets = append(p.Offsets, 0)
		}
		p.Offsets[id] = off
	}
	if err := r.end("zilla progress"); err != nil {
		return Progress{}, err
	}
	return p, nil
}
