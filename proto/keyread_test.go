package proto

import (
	"encoding/hex"
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

// A request without a floor (an edge of the previous release, 63c3e19)
// gets its reply in that release's form, byte for byte: that release's
// decoder refuses a reply with the position (trailing bytes). A request
// with a floor gets the position. The golden bytes are 63c3e19's
// AppendKeyRequest and AppendKeyReply of the same values.
func TestKeyReplyHasTheFormOfItsRequest(t *testing.T) {
	rec := Record{Offset: 41, TimeMs: 1700000000123, Key: []byte("k1"), Value: []byte(`{"v":1}`)}
	golden := []struct {
		reply KeyReply
		hex   string
	}{
		{KeyReply{Status: StatusOK, Epoch: 7, Partition: 2, Found: true, Record: rec, Next: 50},
			"0152000007020129f6a1abfef96200026b31077b2276223a317d0000"},
		{KeyReply{Status: StatusOK, Epoch: 7, Partition: 1, Next: 3}, "01520000070100"},
		{KeyReply{Status: StatusNotOwner, Error: "partition not held or not caught up", Epoch: 7, Partition: 1},
			"01520223706172746974696f6e206e6f742068656c64206f72206e6f7420636175676874207570070100"},
	}
	oldReq := AppendKeyRequest(nil, &KeyRequest{Key: []byte("k1")})
	if got := hex.EncodeToString(oldReq); got != "014b026b31" {
		t.Fatalf("a request without a floor: %s, want 63c3e19's 014b026b31", got)
	}
	q, err := DecodeKeyRequest(oldReq)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range golden {
		if got := hex.EncodeToString(AppendKeyReplyFor(nil, &g.reply, &q)); got != g.hex {
			t.Errorf("reply to a request without a floor:\n got %s\nwant %s (63c3e19)", got, g.hex)
		}
		withFloor := AppendKeyReplyFor(nil, &g.reply, &KeyRequest{Key: []byte("k1"), Floor: 9})
		back, err := DecodeKeyReply(withFloor)
		if err != nil || !reflect.DeepEqual(back, g.reply) {
			t.Errorf("reply to a request with a floor: %+v, %v; want %+v", back, err, g.reply)
		}
	}
}

// The previous release's answer to a request with a floor is a refusal
// that RefusesFloor tells (63c3e19's bytes); other errors are not.
func TestRefusalOfAFloorIsTold(t *testing.T) {
	b, _ := hex.DecodeString("0152032c6b657920726571756573743a20747261696c696e672062797465733a206d616c666f726d656420696e707574000000")
	k, err := DecodeKeyReply(b)
	if err != nil || !RefusesFloor(&k) {
		t.Fatalf("63c3e19's refusal of a floor: %+v, %v", k, err)
	}
	for _, k := range []KeyReply{
		{Status: StatusError, Error: "fetch: broker down"},
		{Status: StatusNotOwner, Error: "partition not held or not caught up"},
		{Status: StatusOK},
	} {
		if RefusesFloor(&k) {
			t.Errorf("%+v read as a refusal of the floor", k)
		}
	}
}
