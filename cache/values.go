package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ssekafka/ssekafka/proto"
)

// values holds record values in ristretto, bounded by cost (the value's
// size). It is never the only copy: a value it evicted, or refused to admit
// (ristretto's admission policy drops Sets, and a Set becomes visible only
// later), is read back from Kafka by offset. So eviction never loses state
// and never changes what a client receives.
type values struct {
	c *ristretto.Cache[string, []byte]
}

func newValues(maxBytes int64) (*values, error) {
	// About ten counters per item that fits, for items of ~256 bytes.
	counters := min(max(maxBytes/256*10, 10_000), 100_000_000)
	c, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        counters,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("value cache: %w", err)
	}
	return &values{c: c}, nil
}

func valueKey(topic string, partition int32, offset int64) string {
	var b [12]byte
	binary.BigEndian.PutUint32(b[:4], uint32(partition))
	binary.BigEndian.PutUint64(b[4:], uint64(offset))
	return topic + "\x00" + string(b[:])
}

func (v *values) set(topic string, partition int32, offset int64, value []byte) {
	v.c.Set(valueKey(topic, partition, offset), value, int64(len(value)))
}

func (v *values) get(topic string, partition int32, offset int64) ([]byte, bool) {
	return v.c.Get(valueKey(topic, partition, offset))
}

func (v *values) close() { v.c.Close() }

// fillValues puts the values into recs (records of one partition, in offset
// order, whose Value is nil while not tombstones): from ristretto, else read
// back from Kafka in as few fetches as the offsets allow. A record Kafka no
// longer has (superseded and compacted since the page was read) is dropped:
// its key's newer record comes later in the stream.
//
// When a read-back fails after records whose values are in hand, the page is
// cut before the first record it lacks and cut is that record's offset (the
// edge asks again from there); otherwise cut is -1. Only a page whose first
// value cannot be read fails.
func (n *Node) fillValues(ctx context.Context, t *topicState, partition int32, recs []proto.Record) (_ []proto.Record, cut int64, _ error) {
	missing := n.valuesAtHand(t, partition, recs)
	cut = -1
	if len(missing) == 0 {
		return recs, cut, nil
	}
	n.metrics.valueMisses.Add(float64(len(missing)))
	found := make(map[int64][]byte, len(missing))
	wanted := make(map[int64]struct{}, len(missing))
	for _, i := range missing {
		wanted[recs[i].Offset] = struct{}{}
	}
	for next := 0; next < len(missing); {
		from := recs[missing[next]].Offset
		got, logStart, err := n.fetchFrom(ctx, t, partition, from)
		if err != nil {
			if missing[next] == 0 {
				return nil, cut, fmt.Errorf("read back %s/%d@%d: %w", t.name, partition, from, err)
			}
			n.log.Warn("state page cut short: read back failed", LogKeyTopic, t.name, LogKeyPartition, partition, "offset", from, "err", err)
			n.metrics.pagesCut.Inc()
			cut = from
			recs, missing = recs[:missing[next]], missing[:next]
			break
		}
		for _, kr := range got {
			if _, want := wanted[kr.Offset]; want {
				found[kr.Offset] = bytes.Clone(kr.Value) // not the whole fetch buffer
			}
		}
		// Skip every missing offset the fetch covered (found or compacted
		// away), or that lies below the log's start.
		last := from
		if len(got) > 0 {
			last = got[len(got)-1].Offset
		}
		if logStart > from {
			last = logStart - 1
		}
		for next < len(missing) && recs[missing[next]].Offset <= last {
			next++
		}
	}
	return n.putReadBack(t, partition, recs, missing, found), cut, nil
}

// valuesAtHand puts into recs the values ristretto holds and returns the
// indexes of the records whose values must be read back from Kafka.
func (n *Node) valuesAtHand(t *topicState, partition int32, recs []proto.Record) (missing []int) {
	for i := range recs {
		r := &recs[i]
		if r.Tombstone || r.Value != nil || r.Apart {
			continue
		}
		if v, ok := n.values.get(t.name, partition, r.Offset); ok {
			r.Value = v
			n.metrics.valueHits.Inc()
			continue
		}
		missing = append(missing, i)
	}
	return missing
}

// putReadBack puts the values read back (found, by offset) into the
// records at missing, keeping them in ristretto, and drops the records
// Kafka no longer has.
func (n *Node) putReadBack(t *topicState, partition int32, recs []proto.Record, missing []int, found map[int64][]byte) []proto.Record {
	dropped := 0
	for _, i := range missing {
		if v, ok := found[recs[i].Offset]; ok && v != nil {
			recs[i].Value = v
			n.values.set(t.name, partition, recs[i].Offset, v)
		} else {
			recs[i].Offset = -1 // mark: gone from Kafka
			dropped++
		}
	}
	if dropped > 0 {
		n.metrics.valuesGone.Add(float64(dropped))
		recs = slices.DeleteFunc(recs, func(r proto.Record) bool { return r.Offset < 0 })
	}
	return recs
}

// readBackAttempts bounds how often one read-back follows a moved leader.
const readBackAttempts = 4

// fetchFrom reads the records of one partition from offset on, one fetch's
// worth (at least the batch holding offset). When offset is below the log's
// start (compaction or retention removed it), it returns no records and the
// log start offset. It follows the partition's leader: when the broker it
// asked is not (or no longer) the leader, or cannot be reached, it reads the
// leader from fresh metadata and asks again.
func (n *Node) fetchFrom(ctx context.Context, t *topicState, partition int32, offset int64) (recs []*kgo.Record, logStart int64, err error) {
	for attempt := 1; ; attempt++ {
		recs, logStart, err = n.fetchOnce(ctx, t, partition, offset)
		if err == nil || !leaderMoved(err) || attempt == readBackAttempts || ctx.Err() != nil {
			return recs, logStart, err
		}
		n.metrics.readBackRetries.Inc()
		if rerr := n.refreshLeader(ctx, t, partition); rerr != nil {
			n.log.Debug("read back: leader refresh", LogKeyTopic, t.name, LogKeyPartition, partition, "err", rerr)
		}
	}
}

// leaderMoved says whether a fetch failed because it went to a broker that
// does not lead the partition (any more), or to one it could not reach.
func leaderMoved(err error) bool {
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return errors.Is(err, kerr.NotLeaderForPartition) || errors.Is(err, kerr.FencedLeaderEpoch) ||
			errors.Is(err, kerr.UnknownLeaderEpoch) || errors.Is(err, kerr.LeaderNotAvailable) ||
			errors.Is(err, kerr.ReplicaNotAvailable)
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// refreshLeader reads the partition's leader from a metadata request sent
// to a broker directly (the client's own metadata may be older than the
// move) and keeps it in the topic's state.
func (n *Node) refreshLeader(ctx context.Context, t *topicState, partition int32) error {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(t.name)
	req.Topics = append(req.Topics, rt)
	var resp *kmsg.MetadataResponse
	var err error
	brokers := n.reader.DiscoveredBrokers()
	if len(brokers) == 0 {
		resp, err = req.RequestWith(ctx, n.reader)
	}
	for _, b := range brokers {
		if resp, err = req.RequestWith(ctx, b); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("metadata for %s: %w", t.name, err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != t.name {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			return fmt.Errorf("metadata for %s: %w", t.name, err)
		}
		for _, mp := range mt.Partitions {
			if mp.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(mp.ErrorCode); err != nil {
				return fmt.Errorf("metadata for %s/%d: %w", t.name, partition, err)
			}
			t.setLeader(partition, mp.Leader)
			return nil
		}
	}
	return fmt.Errorf("metadata for %s/%d: partition not listed", t.name, partition)
}

// fetchOnce is one fetch from the partition's leader as last known, or from
// any broker while none is known.
func (n *Node) fetchOnce(ctx context.Context, t *topicState, partition int32, offset int64) (recs []*kgo.Record, logStart int64, err error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 4 << 20
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = t.name
	rt.TopicID = t.id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.CurrentLeaderEpoch = -1
	rp.LogStartOffset = -1
	rp.PartitionMaxBytes = 1 << 20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	var resp *kmsg.FetchResponse
	if leader := t.leader(partition); leader >= 0 {
		resp, err = req.RequestWith(ctx, n.reader.Broker(int(leader)))
	} else {
		resp, err = req.RequestWith(ctx, n.reader)
	}
	if err != nil {
		return nil, 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, 0, err
	}
	if len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) == 0 {
		return nil, 0, nil
	}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: t.name, Partition: partition},
		&resp.Topics[0].Partitions[0], kgo.DefaultDecompressor(), nil)
	switch {
	case errors.Is(fp.Err, kerr.OffsetOutOfRange) && fp.LogStartOffset > offset:
		return nil, fp.LogStartOffset, nil
	case errors.Is(fp.Err, kerr.OffsetOutOfRange):
		// Some brokers do not say where the log starts with this error.
		starts, err := n.adm.ListStartOffsets(ctx, t.name)
		if err != nil {
			return nil, 0, err
		}
		if o, ok := starts.Lookup(t.name, partition); ok && o.Err == nil && o.Offset > offset {
			return nil, o.Offset, nil
		}
		return nil, 0, fp.Err
	case fp.Err != nil:
		return nil, 0, fp.Err
	}
	return fp.Records, fp.LogStartOffset, nil
}
