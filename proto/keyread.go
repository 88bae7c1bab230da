package proto

import "encoding/binary"

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
}

// AppendKeyRequest appends the encoded request to b.
func AppendKeyRequest(b []byte, q *KeyRequest) []byte {
	b = header(b, typeKeyReq)
	return appendBytes(b, q.Key)
}

// DecodeKeyRequest decodes a key request.
func DecodeKeyRequest(b []byte) (KeyRequest, error) {
	r, err := openMessage(b, typeKeyReq, "key request")
	if err != nil {
		return KeyRequest{}, err
	}
	q := KeyRequest{Key: r.bytes("key")}
	return q, r.end("key request")
}

// IsKeyRequest tells a key request from the other requests on the state subject.
func IsKeyRequest(b []byte) bool { return len(b) >= 2 && b[1] == typeKeyReq }

// KeyReply answers a KeyRequest. Found is set when the partition holds a
// live record of the key (a tombstone is not found); Record is then that
// record, its value inline or apart.
type KeyReply struct {
	Status    Status
	Error     string
	Epoch     uint32
	Partition int32
	Found     bool
	Record    Record
}

// AppendKeyReply appends the encoded reply to b.
func AppendKeyReply(b []byte, k *KeyReply) []byte {
	b = header(b, typeKeyReply)
	b = append(b, byte(k.Status))
	b = appendString(b, k.Error)
	b = binary.AppendUvarint(b, uint64(k.Epoch))
	b = binary.AppendUvarint(b, uint64(max(k.Partition, 0)))
	if !k.Found {
		return append(b, 0)
	}
	b = append(b, 1)
	return appendRecord(b, &k.Record)
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
	return k, r.end("key reply")
}
