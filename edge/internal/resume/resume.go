// Package resume holds the rules that decide what a stream's client gets
// between its request and its live frames (docs/architecture.md rules 2, 3, 5 and 8): where
// it starts, when it is reset, which source serves each partition, what a
// shared state page leaves out, and which pending live frames it keeps at
// ready. They are pure functions: no I/O, no clock (times are passed in), no
// locks; the edge's stream setup calls them and does the I/O around them.
package resume

import (
	"math"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// Topic is what a position is checked against: the feed's metadata and the
// cache tier's horizon for the topic.
type Topic struct {
	Epoch      uint32
	Partitions int
	Horizon    time.Duration // a position whose time is older may have lost deletes
}

// Zero is the position of a client that holds nothing.
func (t Topic) Zero() proto.Progress {
	return proto.Progress{Epoch: t.Epoch, Offsets: make([]int64, t.Partitions)}
}

// ID is a client's Last-Event-ID as its request carries it.
type ID struct {
	Value    string // the header's value, else the lastEventId query parameter's
	InHeader bool   // the Last-Event-ID header is present, maybe empty
	FromLive bool   // ?from=live
}

// Start is where a stream starts.
type Start struct {
	At      proto.Progress
	Reset   reason.Reason // not Unknown: At is zero and event:reset is sent first
	Resumed bool          // the client resumes from its id
	Err     error         // the id did not parse: At is zero (counted, never fatal)
}

// StartAt decides where a client starts: from its id, from live (the feed's
// position) with ?from=live and no id, else from zero. A header present but
// empty wins over the query parameter and means zero, as in Zilla. An id
// that cannot resume (ResetFor) starts from zero after event:reset.
func StartAt(id ID, t Topic, live proto.Progress, now time.Time) Start {
	if id.InHeader && id.Value == "" {
		return Start{At: t.Zero()}
	}
	if id.Value == "" {
		if id.FromLive {
			return Start{At: live}
		}
		return Start{At: t.Zero()}
	}
	p, err := proto.ParseEventID(id.Value)
	if err != nil {
		return Start{At: t.Zero(), Err: err}
	}
	if r := ResetFor(p, t, now); r != reason.Unknown {
		return Start{At: t.Zero(), Reset: r}
	}
	for len(p.Offsets) < t.Partitions {
		p.Offsets = append(p.Offsets, 0)
	}
	p.Epoch = t.Epoch
	return Start{At: p, Resumed: true}
}

// ResetFor is why position p cannot resume on t, known without asking the
// cache tier: another epoch (the topic was recreated; a Zilla id has none),
// more partitions than the topic has, or a time older than the horizon
// (deletes may have been dropped since). Unknown if it can.
func ResetFor(p proto.Progress, t Topic, now time.Time) reason.Reason {
	switch {
	case p.Epoch != 0 && p.Epoch != t.Epoch:
		return reason.ResetEpoch
	case len(p.Offsets) > t.Partitions:
		return reason.ResetPartitions
	case p.TimeMs != 0 && p.TimeMs < now.Add(-t.Horizon).UnixMilli():
		return reason.ResetHorizon
	}
	return reason.Unknown
}

// MustConfirm reports whether a start offset must be confirmed by the cache
// tier before it may resume: it lies past both the feed's position (live)
// and the cache's head as the feed last heard it (known). An offset the
// tier then does not reach (PastEnd) is from another incarnation, or made
// up: the stream is reset (reason.ResetOffsets).
func MustConfirm(offset, live, known int64) bool { return offset > live && offset > known }

// PastEnd reports whether offset lies past next, the partition's end as a
// caught-up node answered it.
func PastEnd(offset, next int64) bool { return next < offset }

// LostReaches reports whether a live record the edge could not read (a
// null-key record apart: reason.ResetLost) may have matched a view, whose
// live streams are then reset: a view with no filter entries, or with one
// that does not filter by key (keylessEntry).
func LostReaches(entries int, keylessEntry bool) bool { return entries == 0 || keylessEntry }

// StateTime is the time a state part's ids carry: now in whole seconds (a
// time a little early is safe against the horizon, and streams starting
// together get the same ids and share frames), never later than the
// client's own position's time.
func StateTime(start proto.Progress, now time.Time) int64 {
	ms := now.UnixMilli() / 1000 * 1000
	if start.TimeMs != 0 {
		ms = min(ms, start.TimeMs)
	}
	return ms
}

// KeepPending reports whether a live frame that arrived while the client's
// state part was written, for the record at (partition, offset), is still
// to be sent at ready: the state part, which reached at, does not cover it.
func KeepPending(partition int32, offset int64, at proto.Progress) bool {
	return offset >= at.Offset(partition)
}

// ReadyAt moves at, where a state part ended, to the position its ready
// marker carries: the feed's (live) where it is ahead, at the earlier of
// the two times. The client holds all that position names: the state part,
// then its pending frames. It changes at in place.
func ReadyAt(at *proto.Progress, live proto.Progress) {
	for p, o := range live.Offsets {
		if p < len(at.Offsets) {
			at.Offsets[p] = max(at.Offsets[p], o)
		}
	}
	at.TimeMs = min(at.TimeMs, live.TimeMs)
}

// FirstSkip is the offset below which a partition's state part leaves out
// tombstones before its first page: all of them for a client that starts
// from zero there (it cannot hold their keys), none for a resume.
func FirstSkip(since int64) int64 {
	if since == 0 {
		return math.MaxInt64
	}
	return -1
}

// Send reports whether a state record is written to the client: not a
// tombstone below skipBelow (the client cannot hold its key) or without a
// key, and not a key superseded by a newer change the client gets anyway.
// Filters are the edge's to apply.
func Send(rec *proto.Record, skipBelow int64, superseded map[string]struct{}) bool {
	if rec.Tombstone && (rec.Offset < skipBelow || rec.KeyNull) {
		return false
	}
	_, old := superseded[string(rec.Key)]
	return !old
}
