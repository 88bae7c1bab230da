package cache

import (
	"bytes"
	"slices"
	"sync"

	"github.com/google/btree"
	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// entry is the latest record of a key. The index keeps everything but a
// non-empty value, which lives in the node's value cache (or, evicted, only
// in Kafka): rec.Value is nil for such an entry, and valueLen says its size.
// Entries are immutable once stored: an update replaces the pointer.
type entry struct {
	rec      proto.Record
	valueLen int
	// headersChanged: the key's records since its last tombstone did not
	// all carry the same headers, so a header filter may hold an older one.
	headersChanged bool
}

// size is what the entry counts for in a page budget.
func (e *entry) size() int { return e.rec.Size() + e.valueLen }

// partitionState is the compacted state of one partition: the latest record
// per key, indexed by key and by offset, so that "entries since offset o, up
// to N bytes" costs O(log n + page).
type partitionState struct {
	partition  int32
	endAtStart int64              // the end offset when the partition was taken up
	sub        *nats.Subscription // state requests, once caught up; only the consume goroutine touches it

	mu       sync.RWMutex
	byKey    map[string]*entry
	byOffset *btree.BTreeG[*entry]
	next     int64 // next offset not yet applied
	hwm      int64 // high watermark seen in the last fetch
	caughtUp bool  // next reached endAtStart
	released bool  // no longer held: requests still in flight are answered NotOwner
	role     membership.Role
	since    int64 // when this node became primary, Unix nanoseconds: its heads' generation
	bytes    int64 // index bytes, values excluded
	values   int64 // bytes of the values of the entries (wherever they are)
}

func byOffset(a, b *entry) bool { return a.rec.Offset < b.rec.Offset }

func newPartitionState(partition int32, endAtStart int64) *partitionState {
	return &partitionState{
		partition:  partition,
		endAtStart: endAtStart,
		caughtUp:   endAtStart == 0,
		byKey:      make(map[string]*entry),
		byOffset:   btree.NewG(32, byOffset),
	}
}

// release drops a partition this node no longer holds.
func (s *partitionState) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byKey, s.byOffset, s.bytes, s.values = map[string]*entry{}, btree.NewG(2, byOffset), 0, 0
	s.released = true
}

// answers reports whether this node may answer state requests for the
// partition: it holds it and has caught up (docs/architecture.md rule 5: only a node
// caught up on a partition answers for it). The caller holds mu.
func (s *partitionState) answers() bool { return s.caughtUp && !s.released }

// apply stores r as the latest record of its key and reports whether it did
// (a replay of something already applied is not). Null-key records have no
// place in a compacted state: they advance the position but are not kept.
// A non-empty value is not kept in the index: the caller puts it in the
// value cache. A tombstone gets the superseded record's headers (set on r
// too, so the published change carries them). The caller holds mu.
func (s *partitionState) apply(r *proto.Record) bool {
	if r.Offset < s.next {
		return false
	}
	s.next = r.Offset + 1
	if r.KeyNull {
		return false
	}
	old, hadOld := s.byKey[string(r.Key)]
	changed := hadOld && !old.rec.Tombstone && (old.headersChanged || !slices.EqualFunc(old.rec.Headers, r.Headers, sameHeader))
	if r.Tombstone && hadOld {
		// Say what the tombstone deletes, for header filters at the edge;
		// a tombstone over a tombstone passes on what the first one knew.
		// When the key's headers changed since it was last deleted, a
		// client may hold any of its records: the delete goes to all whose
		// key filter matches.
		switch {
		case old.rec.Tombstone:
			r.SupersededKnown, r.SupersededHeaders = old.rec.SupersededKnown, old.rec.SupersededHeaders
		case old.headersChanged:
			r.SupersededKnown, r.SupersededHeaders = false, nil
		default:
			r.SupersededKnown, r.SupersededHeaders = true, old.rec.Headers
		}
	}
	e := &entry{rec: *r, headersChanged: changed && !r.Tombstone}
	if len(r.Value) > 0 {
		e.rec.Value, e.valueLen = nil, len(r.Value)
	}
	if hadOld {
		s.byOffset.Delete(old)
		s.bytes -= int64(old.rec.Size())
		s.values -= int64(old.valueLen)
	}
	s.byKey[string(r.Key)] = e
	s.byOffset.ReplaceOrInsert(e)
	s.bytes += int64(e.rec.Size())
	s.values += int64(e.valueLen)
	return true
}

// page returns copies of the records with offset >= since, in offset order,
// until their size with values reaches maxBytes (at least one record), and
// whether more follow. Values not in the index are nil: see fillValues. A
// record larger than room (one message's worth) goes with its value apart,
// and still counts with its value: an edge reads every apart value of a
// page into memory before it delivers the page, so maxBytes bounds what a
// page stands for, not only its message (with maxBytes <= room, as
// handleState asks, such a record goes alone). The caller holds mu for
// reading.
func (s *partitionState) page(since int64, maxBytes, room int) (recs []proto.Record, more bool) {
	size := 0
	s.byOffset.AscendGreaterOrEqual(&entry{rec: proto.Record{Offset: since}}, func(e *entry) bool {
		r, n := e.rec, e.size()
		if n > room {
			r = apartStub(&e.rec, e.valueLen)
		}
		if len(recs) > 0 && size+n > maxBytes {
			more = true
			return false
		}
		recs = append(recs, r)
		size += n
		return true
	})
	return recs, more
}

func sameHeader(a, b proto.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }

// dropTombstonesBefore removes tombstones older than cutoffMs and returns how
// many it removed. The caller holds mu.
func (s *partitionState) dropTombstonesBefore(cutoffMs int64) int {
	var old []*entry
	s.byOffset.Ascend(func(e *entry) bool {
		if e.rec.Tombstone && e.rec.TimeMs < cutoffMs {
			old = append(old, e)
		}
		return true
	})
	for _, e := range old {
		s.byOffset.Delete(e)
		delete(s.byKey, string(e.rec.Key))
		s.bytes -= int64(e.rec.Size())
	}
	return len(old)
}
