package cache

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// handleKey answers a key request: the key's latest record in the
// partition, with its value (apart, if it would not fit in one message),
// or not found (no record, or a tombstone); with this node's position,
// and nothing else when that is below the request's floor. The reply has
// the request's form: a request without a floor (an edge of the previous
// release sends none) gets a reply without the position.
func (n *Node) handleKey(t *topicState, ps *partitionState, m *nats.Msg) {
	var q proto.KeyRequest
	reply := func(k *proto.KeyReply) {
		if m.Reply != "" {
			_ = m.Respond(proto.AppendKeyReplyFor(nil, k, &q))
		}
	}
	n.metrics.keyRequests.Inc()
	t.used()
	q, err := proto.DecodeKeyRequest(m.Data)
	if err != nil {
		n.metrics.badRequests.Inc()
		reply(&proto.KeyReply{Status: proto.StatusError, Error: err.Error()})
		return
	}
	kr := proto.KeyReply{Status: proto.StatusOK, Epoch: t.epoch, Partition: ps.partition}
	ps.mu.RLock()
	if !ps.answers() {
		ps.mu.RUnlock()
		n.metrics.notOwnerReplies.Inc()
		kr.Status, kr.Error = proto.StatusNotOwner, "partition not held or not caught up"
		reply(&kr)
		return
	}
	e := ps.byKey[string(q.Key)]
	kr.Next = ps.next // what the answer reflects, read with it
	ps.mu.RUnlock()
	if kr.Next < q.Floor {
		// Behind what the asking edge has delivered (a standby a moment
		// behind the primary): what it holds may be older than what the
		// reader saw. Say so; the edge asks again (another holder, or later).
		n.metrics.keyRequestsBehind.Inc()
		reply(&kr)
		return
	}
	if e == nil || e.rec.Tombstone {
		reply(&kr)
		return
	}
	rec := e.rec
	if e.size() > n.messageRoom() {
		n.metrics.recordsApart.Inc()
		kr.Found, kr.Record = true, apartStub(&rec, e.valueLen)
		reply(&kr)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, _, err := n.fillValues(ctx, t, ps.partition, []proto.Record{rec})
	if err != nil {
		n.log.Warn("key read value", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "err", err)
		kr.Status, kr.Error = proto.StatusError, err.Error()
		reply(&kr)
		return
	}
	if len(recs) == 1 { // else gone from Kafka: not found
		kr.Found, kr.Record = true, recs[0]
	}
	reply(&kr)
}
