package proto

import (
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

var sampleRecord = Record{
	Offset: 42, TimeMs: 1_800_000_000_000, Key: []byte("k"), Value: []byte("v\nw"),
	Etag: "revision=1", EtagHeader: true,
	Headers: []Header{{Key: "etag", Value: []byte("revision=1")}, {Key: "tenant", Value: []byte("a")}},
}

func sampleChange() Change {
	return Change{Epoch: 9, Partition: 2, From: 40, Record: sampleRecord}
}

func samplePage() StatePage {
	tomb := Record{Offset: 50, TimeMs: 3, Key: []byte("gone"), Tombstone: true}
	known := Record{Offset: 51, TimeMs: 4, Key: []byte("was"), Tombstone: true,
		Headers: []Header{{Key: "why", Value: []byte("x")}}, SupersededKnown: true,
		SupersededHeaders: []Header{{Key: "tenant", Value: []byte("a")}}}
	knownNone := Record{Offset: 52, TimeMs: 5, Key: []byte("bare"), Tombstone: true, SupersededKnown: true}
	apart := Record{Offset: 53, TimeMs: 6, Apart: true, ValueLen: 10 << 20}
	return StatePage{Status: StatusOK, Epoch: 9, Partition: 1, Next: 54, Cursor: 54, More: true,
		Records: []Record{sampleRecord, tomb, known, knownNone, apart}}
}

func TestMessagesRoundTrip(t *testing.T) {
	c := sampleChange()
	gotC, err := DecodeChange(AppendChange(nil, &c))
	if err != nil || !reflect.DeepEqual(gotC, c) {
		t.Fatalf("change: %+v, %v", gotC, err)
	}
	p := samplePage()
	gotP, err := DecodeStatePage(AppendStatePage(nil, &p))
	if err != nil || !reflect.DeepEqual(gotP, p) {
		t.Fatalf("page:\n got %+v\nwant %+v, %v", gotP, p, err)
	}
	q := StateRequest{Since: 1 << 62, MaxBytes: 1 << 20}
	gotQ, err := DecodeStateRequest(AppendStateRequest(nil, &q))
	if err != nil || gotQ != q {
		t.Fatalf("request: %+v, %v", gotQ, err)
	}
	m := Meta{Status: StatusOK, Epoch: 3, Partitions: 12, HorizonMs: 86_400_000, CaughtUp: true}
	gotM, err := DecodeMeta(AppendMeta(nil, &m))
	if err != nil || gotM != m {
		t.Fatalf("meta: %+v, %v", gotM, err)
	}
	if err := DecodeMetaRequest(AppendMetaRequest(nil)); err != nil {
		t.Fatal(err)
	}
	vq := ValueRequest{Offset: 1 << 40, From: 3 << 20, MaxBytes: 1 << 20}
	gotVQ, err := DecodeValueRequest(AppendValueRequest(nil, &vq))
	if err != nil || gotVQ != vq || !IsValueRequest(AppendValueRequest(nil, &vq)) || IsValueRequest(AppendStateRequest(nil, &q)) {
		t.Fatalf("value request: %+v, %v", gotVQ, err)
	}
	vp := ValuePart{Status: StatusOK, Epoch: 9, Partition: 2, Offset: 77, Total: 10, From: 4, Data: []byte("456789")}
	gotVP, err := DecodeValuePart(AppendValuePart(nil, &vp))
	if err != nil || !reflect.DeepEqual(gotVP, vp) {
		t.Fatalf("value part: %+v, %v", gotVP, err)
	}
	for _, vp := range []ValuePart{
		{Status: StatusNotYet, Error: "not applied", Epoch: 9, Partition: 2, Offset: 77, Next: 70, Data: []byte{}},
		{Status: StatusGone, Error: "superseded", Epoch: 9, Partition: 2, Offset: 77, Next: 1 << 40, Data: []byte{}},
		{Status: StatusGone, Epoch: 9, Offset: 77, Data: []byte{}}, // no position: a node before StatusNotYet
	} {
		gotVP, err := DecodeValuePart(AppendValuePart(nil, &vp))
		if err != nil || !reflect.DeepEqual(gotVP, vp) {
			t.Fatalf("value part %s: %+v, %v", vp.Status, gotVP, err)
		}
	}
	// A Gone part as a node before StatusNotYet wrote it (no position)
	// decodes with Next 0; an OK part carries no position.
	old := AppendValuePart(nil, &ValuePart{Status: StatusGone, Offset: 77, Next: 1})
	if got, err := DecodeValuePart(old[:len(old)-1]); err != nil || got.Next != 0 || got.Status != StatusGone {
		t.Fatalf("Gone without a position: %+v, %v", got, err)
	}
	if _, err := DecodeValuePart(append(AppendValuePart(nil, &vp), 5)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("an OK part with a position: %v, want ErrMalformed", err)
	}
	if StatusNotYet.String() != "not yet" {
		t.Fatalf("StatusNotYet: %q", StatusNotYet)
	}
	kq := KeyRequest{Key: []byte("k\x00ey")}
	gotKQ, err := DecodeKeyRequest(AppendKeyRequest(nil, &kq))
	if err != nil || !reflect.DeepEqual(gotKQ, kq) || !IsKeyRequest(AppendKeyRequest(nil, &kq)) || IsKeyRequest(AppendStateRequest(nil, &q)) {
		t.Fatalf("key request: %+v, %v", gotKQ, err)
	}
	for _, kr := range []KeyReply{
		{Status: StatusOK, Epoch: 4, Partition: 2, Found: true, Record: sampleRecord},
		{Status: StatusOK, Epoch: 4, Partition: 3},
		{Status: StatusNotOwner, Error: "not held", Epoch: 4, Partition: 1},
	} {
		got, err := DecodeKeyReply(AppendKeyReply(nil, &kr))
		if err != nil || !reflect.DeepEqual(got, kr) {
			t.Fatalf("key reply:\n got %+v\nwant %+v, %v", got, kr, err)
		}
	}
	h := Head{Epoch: 3, Partition: 7, Next: 1 << 40}
	enc := AppendHead(nil, &h)
	gotH, err := DecodeHead(enc)
	if err != nil || gotH != h || !IsHead(enc) || IsChange(enc) {
		t.Fatalf("head: %+v, %v", gotH, err)
	}
}

func TestMessagesRejectBadInput(t *testing.T) {
	c := sampleChange()
	enc := AppendChange(nil, &c)
	for i := range enc {
		if _, err := DecodeChange(enc[:i]); err == nil {
			t.Fatalf("truncated at %d decoded", i)
		}
	}
	bad := append([]byte{Version + 1}, enc[1:]...)
	if _, err := DecodeChange(bad); !errors.Is(err, ErrVersion) {
		t.Fatalf("future version: %v", err)
	}
	if _, err := DecodeStatePage(enc); err == nil {
		t.Fatal("a change decoded as a page")
	}
	if _, err := DecodeChange(append(enc, 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
}

// A value sent apart carries its length, never bytes; a part must lie
// within the value, so a receiver's buffer of Total bytes bounds it.
func TestRecordApartTravelsAsAStub(t *testing.T) {
	// Only offset, time, flags and the value's length travel; the rest is
	// read in parts.
	r := Record{Offset: 1, TimeMs: 2, Key: []byte("k"), Value: []byte("dropped"), Etag: "e", EtagHeader: true,
		Headers: []Header{{Key: "h", Value: []byte("v")}}, Apart: true, ValueLen: 7}
	got, err := DecodeChange(AppendChange(nil, &Change{Epoch: 1, Record: r}))
	want := Record{Offset: 1, TimeMs: 2, Apart: true, ValueLen: 7}
	if err != nil || !reflect.DeepEqual(got.Record, want) {
		t.Fatalf("apart change: %+v, %v", got.Record, err)
	}
	tomb := Record{Offset: 3, Tombstone: true, Key: []byte("k"), SupersededKnown: true, Apart: true}
	got, err = DecodeChange(AppendChange(nil, &Change{Epoch: 1, Record: tomb}))
	if err != nil || !reflect.DeepEqual(got.Record, Record{Offset: 3, Tombstone: true, Apart: true}) {
		t.Fatalf("a tombstone apart (a large key or headers): %+v, %v", got.Record, err)
	}
	// What the parts put together is the whole record.
	whole, err := DecodeRecord(AppendRecord(nil, &sampleRecord))
	if err != nil || !reflect.DeepEqual(whole, sampleRecord) {
		t.Fatalf("record: %+v, %v", whole, err)
	}
	if _, err := DecodeRecord(AppendRecord(nil, &want)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a stub as the parts' record: %v", err)
	}
	bad := AppendRecord(nil, &want)
	bad[len(bad)-2] |= flagEtagHeader // the flags byte, before the one-byte length
	if _, err := DecodeRecord(append([]byte(nil), bad...)); err == nil {
		t.Fatal("a stub with an etag flag decoded")
	}
	past := AppendValuePart(nil, &ValuePart{Total: 4, From: 2, Data: []byte("abc")})
	if _, err := DecodeValuePart(past); !errors.Is(err, ErrMalformed) {
		t.Fatalf("part past the end: %v", err)
	}
	huge := AppendValuePart(nil, &ValuePart{Total: MaxRecordBytes + 1})
	if _, err := DecodeValuePart(huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("record over MaxRecordBytes: %v", err)
	}
}

func TestSubjects(t *testing.T) {
	s := Subjects{Prefix: "ssekafka"}
	if got := s.State("a.b", 3); got != "ssekafka.state.a~b.3" {
		t.Fatal(got)
	}
	topic, p, err := s.ParseStateSubject(s.State("a.b-c_D", 7))
	if err != nil || topic != "a.b-c_D" || p != 7 {
		t.Fatal(topic, p, err)
	}
	if topic, err := s.ParseMetaSubject(s.Meta("x.y")); err != nil || topic != "x.y" {
		t.Fatal(topic, err)
	}
	for _, bad := range []string{"", ".", "..", "a b", "a/b", "a*", strings.Repeat("x", 250)} {
		if ValidTopic(bad) == nil {
			t.Errorf("topic %q accepted", bad)
		}
	}
}

func FuzzDecodeChange(f *testing.F) {
	c := sampleChange()
	f.Add(AppendChange(nil, &c))
	f.Add([]byte{Version, typeChange})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeChange(b)
		if err != nil {
			return
		}
		back, err := DecodeChange(AppendChange(nil, &c))
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("re-encode: %+v vs %+v, %v", back, c, err)
		}
	})
}

func FuzzDecodeStatePage(f *testing.F) {
	p := samplePage()
	f.Add(AppendStatePage(nil, &p))
	f.Add(AppendStatePage(nil, &StatePage{Status: StatusUnknownTopic, Error: "unknown topic"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeStatePage(b)
		if err != nil {
			return
		}
		back, err := DecodeStatePage(AppendStatePage(nil, &p))
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("re-encode: %+v vs %+v, %v", back, p, err)
		}
	})
}

func FuzzDecodeRequestsAndMeta(f *testing.F) {
	f.Add(AppendStateRequest(nil, &StateRequest{Since: 5, MaxBytes: 100}))
	f.Add(AppendMeta(nil, &Meta{Epoch: 1, Partitions: 3, HorizonMs: 5}))
	f.Add(AppendMetaRequest(nil))
	f.Add(AppendHead(nil, &Head{Epoch: 1, Partition: 2, Next: 3}))
	f.Add(AppendHead(nil, &Head{Epoch: 1, Partition: 2, Next: 3, Publisher: "cache-1", Generation: 1_800_000_000_000_000_000}))
	f.Add(AppendHead(nil, &Head{Epoch: 1, Partition: 2, Next: 3, Generation: 7}))
	f.Add(AppendValueRequest(nil, &ValueRequest{Offset: 5, From: 6, MaxBytes: 7}))
	f.Add(AppendKeyRequest(nil, &KeyRequest{Key: []byte("k")}))
	f.Add(AppendRecord(nil, &sampleRecord))
	f.Add(AppendKeyReply(nil, &KeyReply{Found: true, Record: sampleRecord}))
	f.Add(AppendValuePart(nil, &ValuePart{Offset: 5, Total: 9, From: 6, Data: []byte("abc")}))
	f.Add(AppendValuePart(nil, &ValuePart{Status: StatusNotYet, Error: "not yet applied", Offset: 5, Next: 3}))
	f.Add(AppendValuePart(nil, &ValuePart{Status: StatusGone, Error: "superseded", Offset: 5, Next: 9}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := DecodeValueRequest(b); err == nil {
			if back, err := DecodeValueRequest(AppendValueRequest(nil, &q)); err != nil || back != q {
				t.Fatalf("value request re-encode: %+v vs %+v", back, q)
			}
		}
		if r, err := DecodeRecord(b); err == nil {
			if back, err := DecodeRecord(AppendRecord(nil, &r)); err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("record re-encode: %+v vs %+v", back, r)
			}
		}
		if q, err := DecodeKeyRequest(b); err == nil {
			if back, err := DecodeKeyRequest(AppendKeyRequest(nil, &q)); err != nil || !reflect.DeepEqual(back, q) {
				t.Fatalf("key request re-encode: %+v vs %+v", back, q)
			}
		}
		if k, err := DecodeKeyReply(b); err == nil {
			if back, err := DecodeKeyReply(AppendKeyReply(nil, &k)); err != nil || !reflect.DeepEqual(back, k) {
				t.Fatalf("key reply re-encode: %+v vs %+v", back, k)
			}
		}
		if v, err := DecodeValuePart(b); err == nil {
			if back, err := DecodeValuePart(AppendValuePart(nil, &v)); err != nil || !reflect.DeepEqual(back, v) {
				t.Fatalf("value part re-encode: %+v vs %+v", back, v)
			}
		}
		if h, err := DecodeHead(b); err == nil {
			if back, err := DecodeHead(AppendHead(nil, &h)); err != nil || back != h {
				t.Fatalf("head re-encode: %+v vs %+v", back, h)
			}
		}
		if q, err := DecodeStateRequest(b); err == nil {
			if back, err := DecodeStateRequest(AppendStateRequest(nil, &q)); err != nil || back != q {
				t.Fatalf("state request re-encode: %+v vs %+v", back, q)
			}
		}
		if m, err := DecodeMeta(b); err == nil {
			if back, err := DecodeMeta(AppendMeta(nil, &m)); err != nil || back != m {
				t.Fatalf("meta re-encode: %+v vs %+v", back, m)
			}
		}
		_ = DecodeMetaRequest(b)
	})
}

// The largest epoch round-trips and one above it is refused, on 32-bit
// platforms too (the bound must not be an int constant).
func TestEpochBound(t *testing.T) {
	h := Head{Epoch: math.MaxUint32, Partition: 1, Next: 2}
	if got, err := DecodeHead(AppendHead(nil, &h)); err != nil || got != h {
		t.Fatalf("max epoch: %+v, %v", got, err)
	}
	enc := binary.AppendUvarint([]byte{Version, typeHead}, math.MaxUint32+1)
	enc = binary.AppendUvarint(enc, 1)
	enc = binary.AppendUvarint(enc, 2)
	if _, err := DecodeHead(enc); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("epoch 1<<32: %v, want ErrTooLarge", err)
	}
}

// A head carries its publisher and generation when set; one without them
// (as cache nodes before them sent) decodes with them empty, and a
// publisher past the bound is refused.
func TestHeadPublisher(t *testing.T) {
	for _, h := range []Head{
		{Epoch: 9, Partition: 3, Next: 1 << 40, Publisher: "cache-2", Generation: 1_800_000_000_123_456_789},
		{Epoch: 9, Partition: 3, Next: 5, Generation: 1},
		{Epoch: 9, Partition: 3, Next: 5, Publisher: "n"},
		{Epoch: 9, Partition: 3, Next: 5},
	} {
		got, err := DecodeHead(AppendHead(nil, &h))
		if err != nil || got != h {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, h)
		}
	}
	// The encoding of a head before publishers: three fields, no more.
	old := binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint([]byte{Version, typeHead}, 9), 3), 5)
	if got, err := DecodeHead(old); err != nil || got != (Head{Epoch: 9, Partition: 3, Next: 5}) {
		t.Fatalf("head without publisher: %+v, %v", got, err)
	}
	if !reflect.DeepEqual(old, AppendHead(nil, &Head{Epoch: 9, Partition: 3, Next: 5})) {
		t.Fatal("a head without publisher is not encoded as before")
	}
	long := Head{Epoch: 1, Partition: 0, Next: 1, Publisher: strings.Repeat("x", MaxPublisherBytes+1), Generation: 2}
	if got, err := DecodeHead(AppendHead(nil, &long)); err != nil || len(got.Publisher) != MaxPublisherBytes {
		t.Fatalf("a long publisher is cut to the bound when encoded: %d bytes, %v", len(got.Publisher), err)
	}
	over := appendString(old, strings.Repeat("x", MaxPublisherBytes+1))
	over = binary.AppendUvarint(over, 2)
	if _, err := DecodeHead(over); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("publisher of %d bytes: %v, want ErrTooLarge", MaxPublisherBytes+1, err)
	}
	if _, err := DecodeHead(appendString(old, "n")); !errors.Is(err, ErrTruncated) {
		t.Fatalf("publisher without generation: %v, want ErrTruncated", err)
	}
}
