package cache

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// consume polls Kafka and applies what it fetches, reconciling ownership
// between polls whenever something woke it.
func (n *Node) consume(ctx context.Context) {
	var buf []byte
	var woke atomic.Bool
	woke.Store(true)
	for {
		if woke.Swap(false) {
			n.reconcile(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		pollCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-n.wake:
				woke.Store(true)
				cancel()
			case <-pollCtx.Done():
			}
		}()
		fetches := n.kcl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return // woken to reconcile
			}
			n.metrics.fetchErrors.Inc()
			n.log.Warn("fetch", LogKeyTopic, topic, LogKeyPartition, p, "err", err)
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			t := n.loaded(fp.Topic)
			if t == nil {
				return
			}
			ps := t.partition(fp.Partition)
			if ps == nil {
				return // released since the fetch
			}
			buf = n.applyAndPublish(t, ps, fp.Records, fp.HighWatermark, buf)
			n.maybeServeState(t, ps)
		})
		n.checkNodeCaughtUp()
	}
}

// applyAndPublish applies a batch to the partition's state, then publishes
// each record as a change (when this node is the primary), in offset order.
func (n *Node) applyAndPublish(t *topicState, ps *partitionState, recs []*kgo.Record, hwm int64, buf []byte) []byte {
	changes := make([]proto.Change, 0, len(recs))
	ps.mu.Lock()
	primary := ps.role == membership.RolePrimary
	for _, kr := range recs {
		from := ps.next
		r := toRecord(kr)
		if r.Offset < from {
			continue
		}
		if what := tooLarge(r); what != "" {
			n.metrics.recordsTooLarge.Inc()
			n.log.Warn("record too large for the cache: taken as a delete of its key", LogKeyTopic, t.name, LogKeyPartition, ps.partition,
				"offset", r.Offset, "field", what, "bytes", r.Size(), "max", proto.MaxValueBytes)
			asDelete(r, what)
		}
		if ps.apply(r) && len(r.Value) > 0 {
			n.values.set(t.name, ps.partition, r.Offset, r.Value)
		}
		// apply has set a tombstone's superseded headers on r: the change carries them.
		changes = append(changes, proto.Change{Epoch: t.epoch, Partition: ps.partition, From: from, Record: *r})
	}
	if hwm > ps.hwm {
		ps.hwm = hwm
	}
	if !ps.caughtUp && ps.next >= ps.endAtStart {
		ps.caughtUp = true
	}
	lag := max(ps.hwm-ps.next, 0)
	ps.mu.Unlock()
	part := strconv.Itoa(int(ps.partition))
	n.metrics.records.WithLabelValues(t.name, part).Add(float64(len(recs)))
	n.metrics.lag.WithLabelValues(t.name, part).Set(float64(lag))
	subject := n.subjects.Event(t.name, ps.partition)
	room := n.messageRoom()
	for i := range changes {
		buf = proto.AppendChange(buf[:0], &changes[i])
		if r := &changes[i].Record; len(buf) > room {
			// Too large for one message: the record goes apart, kept at
			// hand for the edges that ask for it next. Every holder keeps
			// it (the parts may be asked of any; a null key is in no index).
			n.apart.put(apartKey(t, ps.partition, r.Offset), proto.AppendRecord(nil, r))
			if !primary {
				continue
			}
			*r = apartStub(r, len(r.Value))
			buf = proto.AppendChange(buf[:0], &changes[i])
			n.metrics.recordsApart.Inc()
		}
		if !primary {
			continue
		}
		if err := n.cfg.NATS.Publish(subject, buf); err != nil {
			// Edges see the gap at the next change or head and fill it.
			n.metrics.publishErrors.Inc()
			n.log.Warn("publish", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "err", err)
			continue
		}
		n.metrics.published.Inc()
	}
	return buf
}

// tooLarge names what of r is over what the cache holds and the edges
// take (a key, value or header over proto.MaxValueBytes, or the record
// over proto.MaxRecordBytes); "" if r fits.
func tooLarge(r *proto.Record) string {
	switch {
	case len(r.Key) > proto.MaxValueBytes:
		return "key"
	case len(r.Value) > proto.MaxValueBytes:
		return "value"
	case r.Size() > proto.MaxRecordBytes:
		return "record"
	}
	for _, h := range r.Headers {
		if len(h.Key) > proto.MaxValueBytes || len(h.Value) > proto.MaxValueBytes {
			return "headers"
		}
	}
	return ""
}

// asDelete makes r, too large (what: tooLarge's answer), a tombstone of its
// key, so that the key's older value is not served as if current (docs/security.md:
// records larger than a NATS message). Its headers go if they were too large; a key too
// large makes it a null-key record: it advances the position and is not
// kept (no key that large is held either).
func asDelete(r *proto.Record, what string) {
	r.Value, r.Tombstone = nil, true
	if !r.EtagHeader {
		r.Etag = ""
	}
	if what == "key" {
		r.Key, r.KeyNull = nil, true
	}
	if tooLarge(r) != "" {
		r.Headers = nil
	}
}

// toRecord converts a fetched record. Key, value and headers are copied:
// franz-go's slices point into the whole fetched batch, which must not stay
// pinned by the index or the value cache.
func toRecord(kr *kgo.Record) *proto.Record {
	r := &proto.Record{
		Offset:    kr.Offset,
		TimeMs:    kr.Timestamp.UnixMilli(),
		Key:       bytes.Clone(kr.Key),
		KeyNull:   kr.Key == nil,
		Value:     bytes.Clone(kr.Value),
		Tombstone: kr.Value == nil,
	}
	for _, h := range kr.Headers {
		if h.Key == "etag" && !r.EtagHeader {
			r.Etag, r.EtagHeader = string(h.Value), true
		}
		r.Headers = append(r.Headers, proto.Header{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	if !r.EtagHeader && !r.Tombstone {
		r.Etag = strconv.FormatUint(xxhash.Sum64(kr.Value), 36)
	}
	return r
}

// publishHeads has every primary partition say where it stands (each
// HeadInterval), so that an edge that lost the last changes before a quiet
// spell notices.
func (n *Node) publishHeads() {
	for _, t := range n.loadedTopics() {
		for _, ps := range t.held() {
			ps.mu.RLock()
			primary, next, since := ps.role == membership.RolePrimary, ps.next, ps.since
			ps.mu.RUnlock()
			if primary {
				n.publishHead(t, ps.partition, next, since)
			}
		}
	}
}

// publishHead publishes a head, signed with this node's name and when it
// became primary of the partition (since): an edge sees a new primary in
// its first head.
func (n *Node) publishHead(t *topicState, partition int32, next, since int64) {
	b := proto.AppendHead(nil, &proto.Head{Epoch: t.epoch, Partition: partition, Next: next,
		Publisher: n.publisher, Generation: uint64(max(since, 0))})
	if err := n.cfg.NATS.Publish(n.subjects.Event(t.name, partition), b); err != nil {
		n.metrics.publishErrors.Inc()
	}
}
