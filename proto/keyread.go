package proto

import (
	"encoding/binary"
	"strings"
)

// Message types of per-key reads, on a partition's state subject.
const (
	typeKeyReq   = 'K'
	typeKeyReply = 'R'
)

// KeyRequest asks a partition's holder for the latest record of one key
// (a JSON read of a keyed route: the edge asks every partition, since a
// producer's partitioner is not known).
type KeyRequest struct {
	Key []byte
	// Floor is the position the asking edge has already delivered for the
	// partition (its feed's next offset; 0 without a feed): a holder whose
	// own position is below it answers with its position only (KeyReply.Next),
	// never with what it has. Sent only when above 0, and only then does the
	// reply carry Next (AppendKeyReplyFor): a request without it is in the
	// form of a release before it, and so is its reply.
	Floor int64
}

// AppendKeyRequest appends the encoded request to b.
func AppendKeyRequest(b []byte, q *KeyRequest) []byte {
	b = header(b, typeKeyReq)
	b = appendBytes(b, q.Key)
	if q.Floor > 0 {
		b = binary.AppendUvarint(b, uint64(q.Floor))
	}
	return b
}

// DecodeKeyRequest decodes a key request.
func DecodeKeyRequest(b []byte) (KeyRequest, error) {
	r, err := openMessage(b, typeKeyReq, "key request")
	if err != nil {
		return KeyRequest{}, err
	}
	q := KeyRequest{Key: r.bytes("key")}
	if r.err == nil && len(r.b) > 0 {
		q.Floor = int64(r.uvarint("floor") & (1<<63 - 1))
	}
	return q, r.end("key request")
}

// IsKeyRequest tells a key request from the other requests on the state subject.
func IsKeyRequest(b []byte) bool { return len(b) >= 2 && b[1] == typeKeyReq }

// KeyReply answers a KeyRequest. Found is set when the partition holds a
// live record of the key (a tombstone is not found); Record is then that
// record, its value inline or apart. Next is the answering holder's
// position (the next offset it has not applied), read with the record: a
// reply whose Next is below the request's Floor is "behind" (never Found),
// and the edge asks again. A reply without it (to a request without a
// floor, or from a node built before it) decodes with Next 0.
type KeyReply struct {
	Status    Status
	Error     string
	Epoch     uint32
	Partition int32
	Found     bool
	Record    Record
	Next      int64
}

// AppendKeyReply appends the encoded reply to b, Next included.
func AppendKeyReply(b []byte, k *KeyReply) []byte {
	return appendKeyReply(b, k, true)
}

// AppendKeyReplyFor appends k encoded in the form q was asked in: with Next
// when q carries a floor, else as before Next existed (an edge built before
// Next sends no floor, and its decoder refuses a reply with Next: trailing
// bytes). An edge that sends no floor needs no Next: it decodes as 0.
func AppendKeyReplyFor(b []byte, k *KeyReply, q *KeyRequest) []byte {
	return appendKeyReply(b, k, q.Floor > 0)
}

func appendKeyReply(b []byte, k *KeyReply, next bool) []byte {
	b = header(b, typeKeyReply)
	b = append(b, byte(k.Status))
	b = appendString(b, k.Error)
	b = binary.AppendUvarint(b, uint64(k.Epoch))
	b = binary.AppendUvarint(b, uint64(max(k.Partition, 0)))
	if !k.Found {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendRecord(b, &k.Record)
	}
	if !next {
		return b
	}
	return binary.AppendUvarint(b, uint64(max(k.Next, 0)))
}

// RefusesFloor reports whether k is a cache node's refusal of a request's
// floor: a node built before KeyRequest.Floor decodes a request with one
// as malformed (trailing bytes) and answers StatusError saying so. Asked
// again without the floor, it answers.
func RefusesFloor(k *KeyReply) bool {
	return k.Status == StatusError && strings.Contains(k.Error, "key request: trailing bytes")
}

// DecodeKeyReply decodes a key reply; the result does not alias b.
func DecodeKeyReply(b []byte) (KeyReply, error) {
	r, err := openMessage(b, typeKeyReply, "key reply")
	if err != nil {
		return KeyReply{}, err
	}
	var k KeyReply
	k.Status = Status(r.byte("status"))
	k.Error = r.string("error")
	k.Epoch = r.uint32("epoch")
	k.Partition = int32(r.count("partition", MaxPartitions))
	switch r.byte("found") {
	case 0:
	case 1:
		k.Found = true
		r.record(&k.Record)
	default:
		r.fail(ErrMalformed, "key reply: found")
	}
	if r.err == nil && len(r.b) > 0 {
		k.Next = int64(r.uvarint("next") & (1<<63 - 1))
	}
	return k, r.end("key reply")
}
