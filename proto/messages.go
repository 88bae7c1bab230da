package proto

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Version is the version byte every message starts with.
const Version = 1

// Message types, the byte after the version.
const (
	typeChange    = 'C'
	typeStateReq  = 'Q'
	typeStatePage = 'P'
	typeMetaReq   = 'M'
	typeMeta      = 'T'
	typeHead      = 'H'
	typeValueReq  = 'V'
	typeValuePart = 'W'
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one entry of a partition's compacted state, or one live change.
type Record struct {
	Offset int64
	// TimeMs is the Kafka record timestamp in Unix milliseconds.
	TimeMs  int64
	Key     []byte
	KeyNull bool
	// Value is nil for a tombstone.
	Value     []byte
	Tombstone bool
	// Etag is the value's etag: the record's "etag" header, or a hash of the value.
	Etag string
	// EtagHeader is set when Etag came from a record header (and so is shown in event ids).
	EtagHeader bool
	Headers    []Header
	// SupersededKnown is set on a tombstone when the cache knew the record it
	// deletes; SupersededHeaders are then that record's headers, so that a
	// header filter can tell whether a client could hold the key. (Sent only
	// when set, behind its own flag bit.)
	SupersededKnown   bool
	SupersededHeaders []Header
	// Apart is set on a record that did not fit in one NATS message (its
	// value, key or headers too large): only Offset, TimeMs, Tombstone,
	// KeyNull and ValueLen (the value's size) travel, and the receiver reads
	// the whole record in parts (ValueRequest by Offset; the parts put
	// together are AppendRecord's encoding).
	Apart    bool
	ValueLen int
}

// Size is the record's approximate encoded size, for page budgets.
func (r *Record) Size() int {
	n := 32 + len(r.Key) + len(r.Value) + len(r.Etag)
	for _, h := range r.Headers {
		n += 4 + len(h.Key) + len(h.Value)
	}
	for _, h := range r.SupersededHeaders {
		n += 4 + len(h.Key) + len(h.Value)
	}
	return n
}

const (
	flagTombstone  = 1 << 0
	flagKeyNull    = 1 << 1
	flagEtagHeader = 1 << 2
	flagSuperseded = 1 << 3 // the superseded record's headers follow the headers
	flagApart      = 1 << 4 // only the value's length follows: the record travels apart
)

// AppendRecord appends r's encoding (as in a change or a page) to b: what
// the parts of a record sent apart put together.
func AppendRecord(b []byte, r *Record) []byte { return appendRecord(b, r) }

// DecodeRecord decodes a record that AppendRecord encoded; one that is
// itself apart is malformed. The result does not alias b.
func DecodeRecord(b []byte) (Record, error) {
	rd := reader{b: b}
	var r Record
	rd.record(&r)
	if rd.err == nil && r.Apart {
		rd.fail(ErrMalformed, "record: apart within its parts")
	}
	return r, rd.end("record")
}

func appendRecord(b []byte, r *Record) []byte {
	b = binary.AppendUvarint(b, uint64(r.Offset))
	b = binary.AppendVarint(b, r.TimeMs)
	var flags byte
	if r.Tombstone {
		flags |= flagTombstone
	}
	if r.KeyNull {
		flags |= flagKeyNull
	}
	if r.EtagHeader {
		flags |= flagEtagHeader
	}
	if r.Apart {
		flags &^= flagEtagHeader
		b = append(b, flags|flagApart)
		return binary.AppendUvarint(b, uint64(max(r.ValueLen, 0)))
	}
	if r.SupersededKnown {
		flags |= flagSuperseded
	}
	b = append(b, flags)
	b = appendBytes(b, r.Key)
	b = appendBytes(b, r.Value)
	b = appendString(b, r.Etag)
	b = appendHeaders(b, r.Headers)
	if r.SupersededKnown {
		b = appendHeaders(b, r.SupersededHeaders)
	}
	return b
}

func appendHeaders(b []byte, hs []Header) []byte {
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		b = appendString(b, h.Key)
		b = appendBytes(b, h.Value)
	}
	return b
}

func (rd *reader) record(r *Record) {
	r.Offset = int64(rd.uvarint("offset") & (1<<63 - 1))
	r.TimeMs = rd.varint("time")
	flags := rd.byte("flags")
	if flags&^(flagTombstone|flagKeyNull|flagEtagHeader|flagSuperseded|flagApart) != 0 {
		// A field this version does not know: fail as a version mismatch, loudly.
		rd.fail(ErrVersion, "record flags")
	}
	r.Tombstone = flags&flagTombstone != 0
	r.KeyNull = flags&flagKeyNull != 0
	if flags&flagApart != 0 {
		if flags&(flagEtagHeader|flagSuperseded) != 0 {
			rd.fail(ErrMalformed, "record apart: with fields that travel apart")
		}
		r.Apart = true
		r.ValueLen = rd.count("value length", MaxValueBytes)
		return
	}
	r.EtagHeader = flags&flagEtagHeader != 0
	r.Key = rd.bytes("key")
	r.Value = rd.bytes("value")
	if r.Tombstone {
		r.Value = nil
	}
	r.Etag = rd.string("etag")
	r.Headers = rd.headers("header count", "header key", "header value")
	r.SupersededKnown = flags&flagSuperseded != 0
	if r.SupersededKnown {
		r.SupersededHeaders = rd.headers("superseded header count", "superseded header key", "superseded header value")
	}
}

func (rd *reader) headers(count, key, value string) []Header {
	n := rd.count(count, maxHeaders)
	if n == 0 || rd.err != nil {
		return nil
	}
	// Each header takes at least two bytes: a hostile count allocates no
	// more than the message could hold.
	hs := make([]Header, 0, min(n, len(rd.b)/2+1))
	for i := 0; i < n && rd.err == nil; i++ {
		hs = append(hs, Header{Key: rd.string(key), Value: rd.bytes(value)})
	}
	return hs
}

func header(b []byte, typ byte) []byte { return append(b, Version, typ) }

func openMessage(b []byte, typ byte, what string) (reader, error) {
	if len(b) < 2 {
		return reader{}, fmt.Errorf("%s: %w", what, ErrTruncated)
	}
	if b[0] != Version {
		return reader{}, fmt.Errorf("%s version %d: %w", what, b[0], ErrVersion)
	}
	if b[1] != typ {
		return reader{}, fmt.Errorf("%s: type %q: %w", what, b[1], ErrMalformed)
	}
	return reader{b: b[2:]}, nil
}

// Change is a live change of one partition, published by its primary.
//
// Gaps are found by offsets, not by a publisher's sequence, so that any
// owner's changes and pages agree: From is the publisher's next offset
// before this record. A subscriber whose position is below From missed
// something and fills it from state pages; one whose position is past
// Record.Offset already has this change.
type Change struct {
	// Epoch is the topic epoch.
	Epoch     uint32
	Partition int32
	From      int64
	Record    Record
}

// AppendChange appends the encoded change to b.
func AppendChange(b []byte, c *Change) []byte {
	b = header(b, typeChange)
	b = binary.AppendUvarint(b, uint64(c.Epoch))
	b = binary.AppendUvarint(b, uint64(c.Partition))
	b = binary.AppendUvarint(b, uint64(max(c.From, 0)))
	return appendRecord(b, &c.Record)
}

// IsChange and IsHead tell the live messages apart without decoding them.
func IsChange(b []byte) bool { return len(b) >= 2 && b[1] == typeChange }

// IsHead reports whether b is an encoded Head.
func IsHead(b []byte) bool { return len(b) >= 2 && b[1] == typeHead }

// Head is a primary's position in a partition, published on the live subject
// when it becomes primary and then periodically: a subscriber behind Next
// lost changes (the last ones before a quiet spell, or a failover) and fills
// them from state pages.
//
// Publisher and Generation say who published it: the cache node's name and
// when (Unix nanoseconds) it became primary of the partition, so that an
// edge, which is no memberlist member, sees the primary change (a crash, a
// handover, a restart under the same name) in the first head of the new
// one. They travel after Next only when set; a head without them (from a
// cache node before they existed) decodes with them empty. A decoder that
// predates them refuses a head that has them (trailing bytes): upgrade
// edges before cache nodes.
type Head struct {
	Epoch      uint32
	Partition  int32
	Next       int64
	Publisher  string
	Generation uint64
}

// MaxPublisherBytes bounds a head's Publisher (AppendHead cuts a longer one).
const MaxPublisherBytes = 255

// AppendHead appends the encoded head to b.
func AppendHead(b []byte, h *Head) []byte {
	b = header(b, typeHead)
	b = binary.AppendUvarint(b, uint64(h.Epoch))
	b = binary.AppendUvarint(b, uint64(h.Partition))
	b = binary.AppendUvarint(b, uint64(max(h.Next, 0)))
	if h.Publisher == "" && h.Generation == 0 {
		return b
	}
	b = appendString(b, h.Publisher[:min(len(h.Publisher), MaxPublisherBytes)])
	return binary.AppendUvarint(b, h.Generation)
}

// DecodeHead decodes a head, with or without its publisher.
func DecodeHead(b []byte) (Head, error) {
	r, err := openMessage(b, typeHead, "head")
	if err != nil {
		return Head{}, err
	}
	var h Head
	h.Epoch = r.uint32("epoch")
	h.Partition = int32(r.count("partition", MaxPartitions))
	h.Next = int64(r.uvarint("next") & (1<<63 - 1))
	if r.err == nil && len(r.b) > 0 {
		if h.Publisher = r.string("publisher"); len(h.Publisher) > MaxPublisherBytes {
			r.fail(ErrTooLarge, "publisher")
		}
		h.Generation = r.uvarint("generation")
	}
	return h, r.end("head")
}

// DecodeChange decodes a change; the result does not alias b.
func DecodeChange(b []byte) (Change, error) {
	r, err := openMessage(b, typeChange, "change")
	if err != nil {
		return Change{}, err
	}
	var c Change
	c.Epoch = r.uint32("epoch")
	c.Partition = int32(r.count("partition", MaxPartitions))
	c.From = int64(r.uvarint("from") & (1<<63 - 1))
	r.record(&c.Record)
	return c, r.end("change")
}

// StateRequest asks for one page of a partition's state: the current entries
// with offset >= Since, in offset order, up to about MaxBytes.
type StateRequest struct {
	Since    int64
	MaxBytes int
}

// AppendStateRequest appends the encoded request to b.
func AppendStateRequest(b []byte, q *StateRequest) []byte {
	b = header(b, typeStateReq)
	b = binary.AppendUvarint(b, uint64(max(q.Since, 0)))
	return binary.AppendUvarint(b, uint64(max(q.MaxBytes, 0)))
}

// DecodeStateRequest decodes a state request.
func DecodeStateRequest(b []byte) (StateRequest, error) {
	r, err := openMessage(b, typeStateReq, "state request")
	if err != nil {
		return StateRequest{}, err
	}
	var q StateRequest
	q.Since = int64(r.uvarint("since") & (1<<63 - 1))
	q.MaxBytes = r.count("max bytes", 1<<30)
	return q, r.end("state request")
}

// Status is a reply's outcome.
type Status uint8

const (
	StatusOK Status = iota
	// StatusUnknownTopic: the topic does not exist in Kafka.
	StatusUnknownTopic
	// StatusNotOwner: the node asked does not hold this partition.
	StatusNotOwner
	// StatusError: anything else; the reply's Error says what.
	StatusError
	// StatusGone: the record asked for is no longer held (a ValuePart):
	// final only when the part's Next is past its Offset (the holder has
	// applied the record, and its key's newer record since).
	StatusGone
	// StatusNotYet: the holder asked has not applied the record yet (a
	// ValuePart; its Next says where it stands): another holder has, or
	// this one soon will. Never final.
	StatusNotYet
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusUnknownTopic:
		return "unknown topic"
	case StatusNotOwner:
		return "not owner"
	case StatusGone:
		return "gone"
	case StatusNotYet:
		return "not yet"
	}
	return "error"
}

// StatePage answers a StateRequest. Next is read atomically with Records:
// the page reflects every change of the partition below Next.
type StatePage struct {
	Status    Status
	Error     string
	Epoch     uint32
	Partition int32
	// Next is the next offset the answering node has not yet applied.
	Next int64
	// Cursor is the Since of the next page; meaningful when More is set.
	Cursor  int64
	More    bool
	Records []Record
}

// AppendStatePage appends the encoded page to b.
func AppendStatePage(b []byte, p *StatePage) []byte {
	b = header(b, typeStatePage)
	b = append(b, byte(p.Status))
	b = appendString(b, p.Error)
	b = binary.AppendUvarint(b, uint64(p.Epoch))
	b = binary.AppendUvarint(b, uint64(p.Partition))
	b = binary.AppendUvarint(b, uint64(max(p.Next, 0)))
	b = binary.AppendUvarint(b, uint64(max(p.Cursor, 0)))
	if p.More {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Records)))
	for i := range p.Records {
		b = appendRecord(b, &p.Records[i])
	}
	return b
}

// DecodeStatePage decodes a state page; the result does not alias b.
func DecodeStatePage(b []byte) (StatePage, error) {
	r, err := openMessage(b, typeStatePage, "state page")
	if err != nil {
		return StatePage{}, err
	}
	var p StatePage
	p.Status = Status(r.byte("status"))
	p.Error = r.string("error")
	p.Epoch = r.uint32("epoch")
	p.Partition = int32(r.count("partition", MaxPartitions))
	p.Next = int64(r.uvarint("next") & (1<<63 - 1))
	p.Cursor = int64(r.uvarint("cursor") & (1<<63 - 1))
	p.More = r.byte("more") != 0
	n := r.count("record count", maxRecords)
	if n > 0 && r.err == nil {
		p.Records = make([]Record, 0, min(n, len(r.b)/4+1))
		for i := 0; i < n && r.err == nil; i++ {
			p.Records = append(p.Records, Record{})
			r.record(&p.Records[len(p.Records)-1])
		}
	}
	return p, r.end("state page")
}

// MaxValueBytes bounds a value, and MaxRecordBytes a record sent apart
// (its value, key and headers), which a receiver assembles in memory.
const (
	MaxValueBytes  = maxBytesField
	MaxRecordBytes = 2 * maxBytesField
)

// ValueRequest asks for part of the record at Offset of a partition (one
// sent Apart): the bytes of its encoding (AppendRecord) from From, up to
// MaxBytes. It goes on the partition's state subject.
type ValueRequest struct {
	Offset   int64
	From     int
	MaxBytes int
}

// AppendValueRequest appends the encoded request to b.
func AppendValueRequest(b []byte, q *ValueRequest) []byte {
	b = header(b, typeValueReq)
	b = binary.AppendUvarint(b, uint64(max(q.Offset, 0)))
	b = binary.AppendUvarint(b, uint64(max(q.From, 0)))
	return binary.AppendUvarint(b, uint64(max(q.MaxBytes, 0)))
}

// DecodeValueRequest decodes a value request.
func DecodeValueRequest(b []byte) (ValueRequest, error) {
	r, err := openMessage(b, typeValueReq, "value request")
	if err != nil {
		return ValueRequest{}, err
	}
	var q ValueRequest
	q.Offset = int64(r.uvarint("offset") & (1<<63 - 1))
	q.From = r.count("from", MaxRecordBytes)
	q.MaxBytes = r.count("max bytes", 1<<30)
	return q, r.end("value request")
}

// IsValueRequest tells a value request from a state request on the state subject.
func IsValueRequest(b []byte) bool { return len(b) >= 2 && b[1] == typeValueReq }

// ValuePart answers a ValueRequest: Data is the record encoding's bytes
// from From; Total is the whole encoding's length. StatusGone: the record is
// no longer there (superseded and compacted away): its key's newer record
// follows. StatusNotYet: the holder has not applied the record.
type ValuePart struct {
	Status    Status
	Error     string
	Epoch     uint32
	Partition int32
	Offset    int64
	Total     int
	// Sum is the CRC-32C (Castagnoli) of the whole encoding: holders may
	// encode a record differently (a tombstone's superseded headers), and a
	// read whose parts come from two of them must not pass for one record.
	Sum  uint32
	From int
	Data []byte
	// Next is the answering holder's next offset not yet applied, on a
	// Gone or NotYet part (it follows Data, only on those: an OK part is
	// as before). A Gone part without it (0: a node older than
	// StatusNotYet, which answered Gone for what it had not applied) is
	// not final.
	Next int64
}

// hasNext reports whether a part of status s carries Next.
func hasNext(s Status) bool { return s == StatusGone || s == StatusNotYet }

// PartSum is the checksum of a record's encoding that its parts carry.
func PartSum(enc []byte) uint32 { return crc32.Checksum(enc, castagnoli) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// AppendValuePart appends the encoded part to b.
func AppendValuePart(b []byte, v *ValuePart) []byte {
	b = header(b, typeValuePart)
	b = append(b, byte(v.Status))
	b = appendString(b, v.Error)
	b = binary.AppendUvarint(b, uint64(v.Epoch))
	b = binary.AppendUvarint(b, uint64(max(v.Partition, 0)))
	b = binary.AppendUvarint(b, uint64(max(v.Offset, 0)))
	b = binary.AppendUvarint(b, uint64(max(v.Total, 0)))
	b = binary.BigEndian.AppendUint32(b, v.Sum)
	b = binary.AppendUvarint(b, uint64(max(v.From, 0)))
	b = appendBytes(b, v.Data)
	if hasNext(v.Status) {
		b = binary.AppendUvarint(b, uint64(max(v.Next, 0)))
	}
	return b
}

// DecodeValuePart decodes a value part; the result does not alias b. A
// part that does not lie within Total is malformed.
func DecodeValuePart(b []byte) (ValuePart, error) {
	r, err := openMessage(b, typeValuePart, "value part")
	if err != nil {
		return ValuePart{}, err
	}
	var v ValuePart
	v.Status = Status(r.byte("status"))
	v.Error = r.string("error")
	v.Epoch = r.uint32("epoch")
	v.Partition = int32(r.count("partition", MaxPartitions))
	v.Offset = int64(r.uvarint("offset") & (1<<63 - 1))
	v.Total = r.count("total", MaxRecordBytes)
	v.Sum = r.fixed32("sum")
	v.From = r.count("from", MaxRecordBytes)
	v.Data = r.bytes("data")
	if hasNext(v.Status) && len(r.b) > 0 {
		v.Next = int64(r.uvarint("next") & (1<<63 - 1))
	}
	if r.err == nil && v.From+len(v.Data) > v.Total {
		r.fail(ErrMalformed, "value part: past the value's end")
	}
	return v, r.end("value part")
}

// AppendMetaRequest appends a metadata request (the topic is in the subject).
func AppendMetaRequest(b []byte) []byte { return header(b, typeMetaReq) }

// DecodeMetaRequest checks a metadata request.
func DecodeMetaRequest(b []byte) error {
	r, err := openMessage(b, typeMetaReq, "meta request")
	if err != nil {
		return err
	}
	return r.end("meta request")
}

// Meta describes a topic as the cache tier holds it.
type Meta struct {
	Status     Status
	Error      string
	Epoch      uint32
	Partitions int32
	// HorizonMs is how old a position may be and still resume: one older
	// than this may have missed a dropped tombstone (docs/architecture.md rule 3).
	HorizonMs int64
	// CaughtUp is set when the cache had consumed every partition up to the
	// end offsets seen when it took the topic up.
	CaughtUp bool
}

// AppendMeta appends the encoded metadata to b.
func AppendMeta(b []byte, m *Meta) []byte {
	b = header(b, typeMeta)
	b = append(b, byte(m.Status))
	b = appendString(b, m.Error)
	b = binary.AppendUvarint(b, uint64(m.Epoch))
	b = binary.AppendUvarint(b, uint64(max(m.Partitions, 0)))
	b = binary.AppendVarint(b, m.HorizonMs)
	if m.CaughtUp {
		return append(b, 1)
	}
	return append(b, 0)
}

// DecodeMeta decodes metadata.
func DecodeMeta(b []byte) (Meta, error) {
	r, err := openMessage(b, typeMeta, "meta")
	if err != nil {
		return Meta{}, err
	}
	var m Meta
	m.Status = Status(r.byte("status"))
	m.Error = r.string("error")
	m.Epoch = r.uint32("epoch")
	m.Partitions = int32(r.count("partitions", MaxPartitions))
	m.HorizonMs = r.varint("horizon")
	m.CaughtUp = r.byte("caught up") != 0
	return m, r.end("meta")
}
