package cache

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ssekafka/ssekafka/proto"
)

func record(offset int64, key, value string) *proto.Record {
	r := &proto.Record{Offset: offset, TimeMs: offset * 1000, Key: []byte(key)}
	if value == "" {
		r.Tombstone = true
	} else {
		r.Value = []byte(value)
	}
	return r
}

// offsets lists a page as offset:key, with "-" for a tombstone; values are
// not in the index (see values.go).
func offsets(recs []proto.Record) string {
	s := ""
	for _, r := range recs {
		if r.Tombstone {
			s += fmt.Sprintf("%d:%s- ", r.Offset, r.Key)
		} else {
			s += fmt.Sprintf("%d:%s ", r.Offset, r.Key)
		}
	}
	return s
}

func TestPartitionStateKeepsLatestPerKey(t *testing.T) {
	s := newPartitionState(0, 0)
	for _, r := range []*proto.Record{
		record(0, "a", "1"), record(1, "b", "1"), record(2, "a", "2"), record(3, "c", "1"),
		record(4, "b", ""), // tombstone supersedes b
		{Offset: 5, KeyNull: true, Value: []byte("no key")},
		record(2, "a", "stale"), // a replay below next is ignored
	} {
		s.apply(r)
	}
	if s.next != 6 {
		t.Fatalf("next %d, want 6", s.next)
	}
	recs, more := s.page(0, 1<<20, 1<<30)
	if got := offsets(recs); got != "2:a 3:c 4:b- " || more {
		t.Fatalf("page: %s more=%v", got, more)
	}
	if recs, _ := s.page(3, 1<<20, 1<<30); offsets(recs) != "3:c 4:b- " {
		t.Fatalf("page since 3: %s", offsets(recs))
	}
	if recs, more := s.page(5, 1<<20, 1<<30); len(recs) != 0 || more {
		t.Fatalf("page past the end: %s", offsets(recs))
	}
}

func TestPartitionStatePagesBySize(t *testing.T) {
	s := newPartitionState(0, 0)
	for i := range 100 {
		s.apply(record(int64(i), fmt.Sprintf("k%d", i), "0123456789"))
	}
	size := (&proto.Record{Key: []byte("k10"), Value: []byte("0123456789")}).Size()
	var all []proto.Record
	since, pages := int64(0), 0
	for {
		recs, more := s.page(since, 10*size, 1<<30)
		pages++
		all = append(all, recs...)
		if !more {
			break
		}
		since = recs[len(recs)-1].Offset + 1
	}
	if len(all) != 100 || pages < 10 {
		t.Fatalf("%d records in %d pages", len(all), pages)
	}
	for i, r := range all {
		if r.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, r.Offset)
		}
	}
	// A page always holds at least one record, however small the budget.
	if recs, _ := s.page(0, 1, 1<<30); len(recs) != 1 {
		t.Fatalf("tiny budget gave %d records", len(recs))
	}
}

func TestDropTombstonesBefore(t *testing.T) {
	s := newPartitionState(0, 0)
	s.apply(record(1, "a", ""))
	s.apply(record(2, "b", "v"))
	s.apply(record(5, "c", ""))
	if n := s.dropTombstonesBefore(3000); n != 1 {
		t.Fatalf("dropped %d, want 1", n)
	}
	recs, _ := s.page(0, 1<<20, 1<<30)
	if offsets(recs) != "2:b 5:c- " || len(s.byKey) != 2 {
		t.Fatalf("after drop: %s", offsets(recs))
	}
	if s.bytes != int64((&proto.Record{Offset: 2, TimeMs: 2000, Key: []byte("b")}).Size()+record(5, "c", "").Size()) || s.values != 1 {
		t.Fatalf("bytes %d not kept in step", s.bytes)
	}
}

func BenchmarkPage(b *testing.B) {
	s := newPartitionState(0, 0)
	for i := range 100_000 {
		s.apply(record(int64(i), fmt.Sprintf("key-%d", i), "a value of some thirty bytes.."))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		recs, _ := s.page(int64(i%100_000), 16<<10, 1<<30)
		if len(recs) == 0 {
			b.Fatal("empty page")
		}
	}
}

// A tombstone keeps the headers of the record it deletes (a tombstone over a
// tombstone, what the first knew); one with nothing before it knows nothing.
func TestTombstoneKeepsSupersededHeaders(t *testing.T) {
	s := newPartitionState(0, 0)
	tenant := []proto.Header{{Key: "tenant", Value: []byte("a")}}
	a := record(0, "a", "1")
	a.Headers = tenant
	s.apply(a)
	delA := record(1, "a", "")
	s.apply(delA)
	s.apply(record(2, "a", "")) // a second tombstone
	s.apply(record(3, "b", "")) // nothing before it
	if !delA.SupersededKnown || fmt.Sprint(delA.SupersededHeaders) != fmt.Sprint(tenant) {
		t.Fatalf("the applied tombstone (published as the change) lacks the headers: %+v", delA)
	}
	recs, _ := s.page(0, 1<<20, 1<<30)
	if len(recs) != 2 || !recs[0].SupersededKnown || fmt.Sprint(recs[0].SupersededHeaders) != fmt.Sprint(tenant) {
		t.Fatalf("second tombstone in the page: %+v", recs)
	}
	if recs[1].SupersededKnown || recs[1].SupersededHeaders != nil {
		t.Fatalf("a tombstone with nothing before it: %+v", recs[1])
	}
}

// A key whose records did not all carry the same headers may be held by a
// header filter that no longer matches its latest record: its tombstone
// then says nothing of what it deletes, so every client whose key filter
// matches gets the delete (a tenant=a client holding "a" from offset 0 is
// not left with it when the key moved to tenant=b and was deleted).
func TestTombstoneAfterHeadersChangedReachesEveryone(t *testing.T) {
	s := newPartitionState(0, 0)
	a1 := record(0, "a", "1")
	a1.Headers = []proto.Header{{Key: "tenant", Value: []byte("a")}}
	a2 := record(1, "a", "2")
	a2.Headers = []proto.Header{{Key: "tenant", Value: []byte("b")}}
	s.apply(a1)
	s.apply(a2)
	del := record(2, "a", "")
	s.apply(del)
	if del.SupersededKnown || del.SupersededHeaders != nil {
		t.Fatalf("tombstone after the headers changed: %+v", del)
	}
	// Deleted, the key starts afresh: the next tombstone knows again.
	b1 := record(3, "a", "3")
	b1.Headers = a2.Headers
	s.apply(b1)
	del2 := record(4, "a", "")
	s.apply(del2)
	if !del2.SupersededKnown || fmt.Sprint(del2.SupersededHeaders) != fmt.Sprint(a2.Headers) {
		t.Fatalf("tombstone of a key with one set of headers: %+v", del2)
	}
}

// A record that would not fit in one message (room) goes with its value
// apart, and counts in the page's budget with it (the edge holds the
// values of a page's records together): it goes in a page of its own.
func TestPartitionStatePageSendsLargeValuesApart(t *testing.T) {
	s := newPartitionState(0, 0)
	s.apply(record(0, "small", "v"))
	s.apply(record(1, "big", string(make([]byte, 5000))))
	s.apply(record(2, "after", "w"))
	var recs []proto.Record
	for since, pages := int64(0), 0; ; pages++ {
		page, more := s.page(since, 1000, 1000)
		if len(page) == 0 || pages > 3 {
			t.Fatalf("page from %d: %s more=%v", since, offsets(page), more)
		}
		if len(page) > 1 && slices.ContainsFunc(page, func(r proto.Record) bool { return r.Apart }) {
			t.Fatalf("an apart record shares its page: %s", offsets(page))
		}
		recs = append(recs, page...)
		if !more {
			break
		}
		since = page[len(page)-1].Offset + 1
	}
	// The stub of the record apart has no key: it travels in the parts.
	if offsets(recs) != "0:small 1: 2:after " {
		t.Fatalf("pages: %s", offsets(recs))
	}
	for _, r := range recs {
		if apart := r.Offset == 1; r.Apart != apart || (apart && r.ValueLen != 5000) {
			t.Fatalf("%d: apart %v, %d bytes", r.Offset, r.Apart, r.ValueLen)
		}
	}
	if recs, more := s.page(1, 1000, 1<<20); len(recs) != 1 || recs[0].Apart || !more {
		t.Fatalf("with room, the value stays inline (alone in its page): %s apart=%v more=%v", offsets(recs), recs[0].Apart, more)
	}
}

// A record the cache cannot hold becomes a delete of its key: its value
// goes, headers too large go, a key too large makes it a null-key record
// (not kept); a record that fits is left alone.
func TestRecordTooLargeBecomesADelete(t *testing.T) {
	huge := make([]byte, proto.MaxValueBytes+1)
	for _, tc := range []struct {
		name            string
		r               proto.Record
		what            string
		keyNull, headed bool
	}{
		{"fits", proto.Record{Key: []byte("k"), Value: []byte("v"), Etag: "e", Headers: []proto.Header{{Key: "h", Value: []byte("x")}}}, "", false, true},
		{"value", proto.Record{Key: []byte("k"), Value: huge, Etag: "e", Headers: []proto.Header{{Key: "h", Value: []byte("x")}}}, "value", false, true},
		{"header", proto.Record{Key: []byte("k"), Value: []byte("v"), Headers: []proto.Header{{Key: "h", Value: huge}}}, "headers", false, false},
		{"key", proto.Record{Key: huge, Value: []byte("v")}, "key", true, false},
	} {
		r := tc.r
		what := tooLarge(&r)
		if what != tc.what {
			t.Fatalf("%s: tooLarge %q, want %q", tc.name, what, tc.what)
		}
		if what == "" {
			continue
		}
		asDelete(&r, what)
		if !r.Tombstone || r.Value != nil || r.Etag != "" || r.KeyNull != tc.keyNull || (len(r.Headers) > 0) != tc.headed || tooLarge(&r) != "" {
			t.Fatalf("%s: as a delete: tombstone %v, value %d bytes, etag %q, key null %v, %d headers", tc.name, r.Tombstone, len(r.Value), r.Etag, r.KeyNull, len(r.Headers))
		}
	}
}
