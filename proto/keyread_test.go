package proto

import (
	"reflect"
	"testing"
)

// A key request carries the asking edge's floor and a key reply the
// holder's position; both read the encodings of nodes built before them
// (no floor: 0; no position: 0).
func TestKeyFloorAndPositionRoundTrip(t *testing.T) {
	q := KeyRequest{Key: []byte("k"), Floor: 1 << 40}
	got, err := DecodeKeyRequest(AppendKeyRequest(nil, &q))
	if err != nil || !reflect.DeepEqual(got, q) {
		t.Fatalf("key request: %+v, %v", got, err)
	}
	old := appendBytes(header(nil, typeKeyReq), []byte("k"))
	if got, err := DecodeKeyRequest(old); err != nil || got.Floor != 0 || string(got.Key) != "k" {
		t.Fatalf("key request without a floor: %+v, %v", got, err)
	}
	for _, kr := range []KeyReply{
		{Status: StatusOK, Epoch: 4, Partition: 2, Found: true, Record: sampleRecord, Next: 99},
		{Status: StatusOK, Epoch: 4, Partition: 3, Next: 7},
	} {
		enc := AppendKeyReply(nil, &kr)
		got, err := DecodeKeyReply(enc)
		if err != nil || !reflect.DeepEqual(got, kr) {
			t.Fatalf("key reply:\n got %+v\nwant %+v, %v", got, kr, err)
		}
		// A node built before the position wrote none: it decodes as 0.
		kr.Next = 0
		old := AppendKeyReply(nil, &kr)
		if got, err := DecodeKeyReply(old[:len(old)-1]); err != nil || !reflect.DeepEqual(got, kr) {
			t.Fatalf("key reply without a position: %+v, %v", got, err)
		}
	}
	if _, err := DecodeKeyReply(append(AppendKeyReply(nil, &KeyReply{Next: 1}), 0)); err == nil {
		t.Fatal("a key reply with bytes after its position decoded")
	}
}
