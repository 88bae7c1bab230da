// Records too large for one NATS message (issue 11): Kafka accepts a record
// far over NATS's max payload (a 10 MiB value compresses under Kafka's 1 MB
// limit; keys and headers may be large too), and one change or state page
// that cannot be published stops its partition for every client. Such a
// record travels apart: the change or page carries a stub (offset, time,
// flags, the value's length), and edges read the record's encoding in parts
// (proto.ValueRequest) on the partition's state subject, so no new subject
// or permission is needed. Any holder of the partition may be asked (a queue
// group): each keeps the records apart it applied at hand, and one that has
// not applied the record yet says so (StatusNotYet) rather than Gone.

package cache

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// messageSlack is what a message keeps free of the server's max payload
// besides the records (the page or change header, an error string).
const messageSlack = 4 << 10

// defaultMaxPayload is assumed while the connection has not said its
// server's (a stock nats-server's).
const defaultMaxPayload = 1 << 20

// messageRoom is how many bytes of records one message to NATS may carry:
// the connected server's max payload (from its INFO; it can change with a
// reconnect to another server), less messageSlack.
func (n *Node) messageRoom() int {
	mp := n.cfg.NATS.MaxPayload()
	if mp <= 0 {
		mp = defaultMaxPayload
	}
	return max(int(mp)-messageSlack, 1<<10)
}

// recentValues holds the encodings of the last records sent apart (by this
// node as primary, or that it would send as one), newest last, within max bytes (Config.ApartBytes), for the parts edges ask next:
// ristretto may refuse a large value (its admission policy), and reading it
// back from Kafka for every part of every edge costs a fetch each. An
// encoding is never changed once stored.
type recentValues struct {
	max   int
	mu    sync.Mutex
	items []recentValue
	bytes int
}

type recentValue struct {
	key string
	enc encodedRecord
}

// encodedRecord is a record's encoding (proto.AppendRecord) and the
// checksum its parts carry, computed once.
type encodedRecord struct {
	bytes []byte
	sum   uint32
}

// apartKey names a value sent apart: by the topic's epoch too, since a
// topic deleted and created again starts its offsets at 0 anew, and an old
// value kept at hand must not stand for the new record at its offset.
func apartKey(t *topicState, partition int32, offset int64) string {
	return fmt.Sprintf("%s@%d", valueKey(t.name, partition, offset), t.epoch)
}

func (r *recentValues) get(key string) (encodedRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.items) - 1; i >= 0; i-- {
		if r.items[i].key == key {
			return r.items[i].enc, true
		}
	}
	return encodedRecord{}, false
}

// put keeps enc under key, within max, and returns it with its checksum
// (kept or not).
func (r *recentValues) put(key string, enc []byte) encodedRecord {
	er := encodedRecord{bytes: enc, sum: proto.PartSum(enc)}
	if len(enc) > r.max {
		return er
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range r.items {
		if it.key == key {
			return it.enc
		}
	}
	r.items = append(r.items, recentValue{key, er})
	r.bytes += len(enc)
	drop := 0
	for r.bytes > r.max {
		r.bytes -= len(r.items[drop].enc.bytes)
		r.items[drop] = recentValue{}
		drop++
	}
	r.items = append(r.items[:0], r.items[drop:]...)
	return er
}

// handleValue answers a value request: part of the record at the requested
// offset, while that record is its key's latest or at hand. Holders share a
// queue group, so the request may reach one that has not applied the
// offset yet: it answers NotYet with its position (another holder has it,
// or this one soon will), never Gone. Gone comes only from a holder past
// the offset, for a record superseded there (the edge fills from its
// position instead, and gets the key's newer record). A null-key record is
// never in the index: one not at hand is read back from Kafka, so every
// holder that has applied it answers for it.
func (n *Node) handleValue(t *topicState, ps *partitionState, m *nats.Msg) {
	reply := func(v *proto.ValuePart) {
		if m.Reply != "" {
			_ = m.Respond(proto.AppendValuePart(nil, v))
		}
	}
	n.metrics.valueRequests.Inc()
	q, err := proto.DecodeValueRequest(m.Data)
	if err != nil {
		n.metrics.badRequests.Inc()
		reply(&proto.ValuePart{Status: proto.StatusError, Error: err.Error()})
		return
	}
	part := proto.ValuePart{Epoch: t.epoch, Partition: ps.partition, Offset: q.Offset}
	ps.mu.RLock()
	if !ps.answers() {
		ps.mu.RUnlock()
		n.metrics.notOwnerReplies.Inc()
		part.Status, part.Error = proto.StatusNotOwner, "partition not held or not caught up"
		reply(&part)
		return
	}
	next := ps.next
	if q.Offset >= next {
		ps.mu.RUnlock()
		n.metrics.valuesNotYet.Inc()
		part.Status, part.Error, part.Next = proto.StatusNotYet, "record not applied yet", next
		reply(&part)
		return
	}
	e, held := ps.byOffset.Get(&entry{rec: proto.Record{Offset: q.Offset}})
	ps.mu.RUnlock()
	// A record just sent apart is at hand, held in the index or not (a
	// null key never is).
	key := apartKey(t, ps.partition, q.Offset)
	enc, atHand := n.apart.get(key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !atHand {
		var b []byte
		if held {
			b, err = n.encodeApart(ctx, t, ps.partition, e)
		} else {
			b, err = n.readBackNullKey(ctx, t, ps.partition, q.Offset)
		}
		if b != nil {
			enc = n.apart.put(key, b)
		}
	}
	switch {
	case err != nil:
		n.log.Warn("value part", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "offset", q.Offset, "err", err)
		part.Status, part.Error = proto.StatusError, err.Error()
	case enc.bytes == nil && !held:
		part.Status, part.Error, part.Next = proto.StatusGone, "not the key's latest record, nor a null-key record Kafka still has", next
	case enc.bytes == nil:
		part.Status, part.Error, part.Next = proto.StatusGone, "no longer in Kafka", next
	case q.From > len(enc.bytes):
		part.Status, part.Error = proto.StatusError, fmt.Sprintf("from %d past the record's %d bytes", q.From, len(enc.bytes))
	default:
		room := n.messageRoom()
		if q.MaxBytes > 0 {
			room = min(room, q.MaxBytes)
		}
		part.Status, part.Total, part.Sum, part.From = proto.StatusOK, len(enc.bytes), enc.sum, q.From
		part.Data = enc.bytes[q.From:min(len(enc.bytes), q.From+room)]
		n.metrics.valueParts.Inc()
	}
	reply(&part)
}

// readBackNullKey makes the encoding of the record at offset from Kafka
// when it has a null key (no index holds one); nil for any other record
// (superseded: its key's newer record is in the index) and when Kafka no
// longer has it.
func (n *Node) readBackNullKey(ctx context.Context, t *topicState, partition int32, offset int64) ([]byte, error) {
	n.metrics.valueMisses.Inc()
	recs, _, err := n.fetchFrom(ctx, t, partition, offset)
	if err != nil {
		return nil, fmt.Errorf("read back %s/%d@%d: %w", t.name, partition, offset, err)
	}
	for _, kr := range recs {
		if kr.Offset == offset && kr.Key == nil {
			return proto.AppendRecord(nil, toRecord(kr)), nil
		}
	}
	return nil, nil
}

// encodeApart makes the encoding of e's record, value included, that a
// record sent apart is read in parts of. It is nil when Kafka no longer has
// the value.
func (n *Node) encodeApart(ctx context.Context, t *topicState, partition int32, e *entry) ([]byte, error) {
	rec := e.rec
	if e.valueLen > 0 {
		v, err := n.valueAt(ctx, t, partition, rec.Offset)
		if err != nil || v == nil {
			return nil, err
		}
		if len(v) != e.valueLen {
			return nil, fmt.Errorf("value of %d bytes read, %d held", len(v), e.valueLen)
		}
		rec.Value = v
	}
	return proto.AppendRecord(nil, &rec), nil
}

// apartStub is what travels of a record sent apart.
func apartStub(r *proto.Record, valueLen int) proto.Record {
	return proto.Record{Offset: r.Offset, TimeMs: r.TimeMs, Tombstone: r.Tombstone, KeyNull: r.KeyNull, Apart: true, ValueLen: valueLen}
}

// valueAt returns the value of the record at offset: from the value cache,
// or read back from Kafka. It is nil when Kafka no longer has the record.
func (n *Node) valueAt(ctx context.Context, t *topicState, partition int32, offset int64) ([]byte, error) {
	if v, ok := n.values.get(t.name, partition, offset); ok {
		n.metrics.valueHits.Inc()
		return v, nil
	}
	n.metrics.valueMisses.Inc()
	recs, _, err := n.fetchFrom(ctx, t, partition, offset)
	if err != nil {
		return nil, fmt.Errorf("read back %s/%d@%d: %w", t.name, partition, offset, err)
	}
	for _, kr := range recs {
		if kr.Offset == offset && kr.Value != nil {
			return append([]byte(nil), kr.Value...), nil
		}
	}
	n.metrics.valuesGone.Inc()
	return nil, nil
}
