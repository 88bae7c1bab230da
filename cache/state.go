package cache

import (
	"sync"

	"github.com/google/btree"
	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// partitionState is the compacted state of one partition: the latest record
// per key, indexed by key and by offset, so that "entries since offset o, up
// to N bytes" costs O(log n + page). Records are immutable once stored: an
// update replaces the pointer, so readers may keep a record after unlocking.
type partitionState struct {
	partition  int32
	endAtStart int64              // the end offset when the partition was taken up
	sub        *nats.Subscription // state requests; set before the state is shared

	mu       sync.RWMutex
	byKey    map[string]*proto.Record
	byOffset *btree.BTreeG[*proto.Record]
	next     int64 // next offset not yet applied
	hwm      int64 // high watermark seen in the last fetch
	caughtUp bool  // next reached endAtStart
	role     membership.Role
	bytes    int64 // sum of stored record sizes
}

func newPartitionState(partition int32, endAtStart int64) *partitionState {
	return &partitionState{
		partition:  partition,
		endAtStart: endAtStart,
		caughtUp:   endAtStart == 0,
		byKey:      make(map[string]*proto.Record),
		byOffset:   btree.NewG(32, func(a, b *proto.Record) bool { return a.Offset < b.Offset }),
	}
}

// newPartitionState builds the state of a partition this node takes up.
func (n *Node) newPartitionState(_ *topicState, partition int32, endAtStart int64) *partitionState {
	return newPartitionState(partition, endAtStart)
}

// release drops a partition this node no longer holds.
func (s *partitionState) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byKey, s.byOffset, s.bytes = nil, btree.NewG(2, func(a, b *proto.Record) bool { return a.Offset < b.Offset }), 0
}

// apply stores r as the latest record of its key. Null-key records have no
// place in a compacted state: they advance the position but are not kept.
// The caller holds mu.
func (s *partitionState) apply(r *proto.Record) {
	if r.Offset >= s.next {
		s.next = r.Offset + 1
	}
	if r.KeyNull {
		return
	}
	if old, ok := s.byKey[string(r.Key)]; ok {
		if old.Offset >= r.Offset {
			return // a replay of something already applied
		}
		s.byOffset.Delete(old)
		s.bytes -= int64(old.Size())
	}
	s.byKey[string(r.Key)] = r
	s.byOffset.ReplaceOrInsert(r)
	s.bytes += int64(r.Size())
}

// page returns copies of the records with offset >= since, in offset order,
// until their size reaches maxBytes (at least one record), and whether more
// follow. The caller holds mu for reading.
func (s *partitionState) page(since int64, maxBytes int) (recs []proto.Record, more bool) {
	size := 0
	s.byOffset.AscendGreaterOrEqual(&proto.Record{Offset: since}, func(r *proto.Record) bool {
		if len(recs) > 0 && size+r.Size() > maxBytes {
			more = true
			return false
		}
		recs = append(recs, *r)
		size += r.Size()
		return true
	})
	return recs, more
}

// dropTombstonesBefore removes tombstones older than cutoffMs and returns how
// many it removed. The caller holds mu.
func (s *partitionState) dropTombstonesBefore(cutoffMs int64) int {
	var old []*proto.Record
	s.byOffset.Ascend(func(r *proto.Record) bool {
		if r.Tombstone && r.TimeMs < cutoffMs {
			old = append(old, r)
		}
		return true
	})
	for _, r := range old {
		s.byOffset.Delete(r)
		delete(s.byKey, string(r.Key))
		s.bytes -= int64(r.Size())
	}
	return len(old)
}
