package hub

import (
	"fmt"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/internal/confcheck"
	"github.com/ssekafka/ssekafka/proto"
)

func testRec(offset int64, key string) *proto.Record {
	return &proto.Record{Offset: offset, Key: []byte(key), Value: []byte("value-" + key)}
}

// The ring's bounds move a partition's start past what they drop, a
// position before it is refused, and what remains conflates per key as the
// state does.
func TestRingBoundsAndConflation(t *testing.T) {
	t0 := time.Unix(1000, 0)
	size := testRec(0, "k0").Size() + 48
	r := newRing(5*size, time.Minute, []int64{10, 0})
	for i := range int64(4) {
		r.add(0, testRec(10+i, fmt.Sprint("k", i%2)), t0)
	}
	r.add(0, &proto.Record{Offset: 14, KeyNull: true, Value: []byte("no key")}, t0) // not kept
	if r.parts[0].start != 10 || r.bytes != 4*size {
		t.Fatalf("start %d, bytes %d: want 10, %d", r.parts[0].start, r.bytes, 4*size)
	}
	recs, ok := r.from(0, 11)
	if got := fmt.Sprint(offsets(resume.LatestPerKey(recs))); !ok || got != "[12 13]" {
		t.Fatalf("from 11: %v %s, want the latest of each key [12 13]", ok, got)
	}
	// Two more records pass the byte bound: the oldest goes.
	r.add(1, testRec(0, "k8"), t0.Add(time.Second))
	r.add(1, testRec(1, "k9"), t0.Add(time.Second))
	if r.parts[0].start != 11 || r.bytes != 5*size {
		t.Fatalf("after the byte bound: start %d, bytes %d", r.parts[0].start, r.bytes)
	}
	if _, ok := r.from(0, 10); ok {
		t.Fatal("a position before the ring's start was served")
	}
	// Age: partition 0's records are older than a minute, partition 1's not.
	r.trim(t0.Add(time.Minute + time.Millisecond))
	if r.parts[0].start != 14 || r.parts[1].start != 0 || r.bytes != 2*size {
		t.Fatalf("after the age bound: starts %d %d, bytes %d", r.parts[0].start, r.parts[1].start, r.bytes)
	}
	if recs, ok := r.from(0, 14); !ok || len(recs) != 0 {
		t.Fatalf("at the feed's position: %v %v", ok, recs)
	}
	off := newRing(confcheck.Off, time.Minute, []int64{0})
	off.add(0, testRec(0, "a"), t0)
	if _, ok := off.from(0, 0); ok {
		t.Fatal("a ring turned off served a position")
	}
}

func offsets(recs []*proto.Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Offset)
	}
	return out
}

// BenchmarkRingResume measures a resume from the ring: the records of a
// partition after a position, latest per key. One op is one resume.
func BenchmarkRingResume(b *testing.B) {
	const n = 20_000 // records in the ring, over 1000 keys
	r := newRing(1<<30, time.Hour, []int64{0})
	now := time.Now()
	for i := range int64(n) {
		r.add(0, testRec(i, fmt.Sprint("key-", i%1000)), now)
	}
	for _, behind := range []int64{10, 1000, n} {
		b.Run(fmt.Sprintf("behind-%d", behind), func(b *testing.B) {
			for b.Loop() {
				recs, ok := r.from(0, n-behind)
				if !ok || len(resume.LatestPerKey(recs)) == 0 {
					b.Fatal("not served")
				}
			}
		})
	}
}
