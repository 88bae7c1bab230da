package edge_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// A holder's parts that put together another record than the stub names
// are refused: another offset, tombstone or key-null flag, value length
// or time, or a stub in its parts. (A record that differs only in key,
// headers or bytes of its value cannot be told from the stub: whoever
// can answer on the state subject can forge a page as well.) The parts
// here come from a responder on a topic no cache node holds.
func TestForgedPartsOfAnotherRecordAreRefused(t *testing.T) {
	s := newStack(t, stackOptions{partitions: 1})
	stub := proto.Record{Offset: 5, TimeMs: 1000, Apart: true, ValueLen: 10}
	real := proto.Record{Offset: 5, TimeMs: 1000, Key: []byte("k"), Value: []byte("0123456789"), Etag: "e"}
	// forgeMixed answers the first part from first's encoding and the rest
	// from rest's, as two holders that encode a record differently would.
	forgeMixed := func(first, rest proto.Record) (proto.Record, error) {
		t.Helper()
		nc := s.connectNATS()
		encs := [][]byte{proto.AppendRecord(nil, &first), proto.AppendRecord(nil, &rest)}
		sub, err := nc.Subscribe(proto.Subjects{Prefix: "ssekafka"}.State("forged", 0), func(m *nats.Msg) {
			q, err := proto.DecodeValueRequest(m.Data)
			if err != nil {
				return
			}
			enc := encs[min(q.From, 1)]
			end := min(len(enc), q.From+3) // parts of 3 bytes
			_ = m.Respond(proto.AppendValuePart(nil, &proto.ValuePart{Status: proto.StatusOK, Epoch: 1, Offset: q.Offset,
				Total: len(enc), Sum: proto.PartSum(enc), From: q.From, Data: enc[q.From:end]}))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return edge.RequestApart(s.edge, ctx, "forged", 1, 0, stub)
	}
	forge := func(r proto.Record) (proto.Record, error) { t.Helper(); return forgeMixed(r, r) }
	if got, err := forge(real); err != nil || !reflect.DeepEqual(got, real) {
		t.Fatalf("the record the stub names: %+v, %v", got, err)
	}
	other := func(change func(*proto.Record)) proto.Record {
		r := real
		change(&r)
		return r
	}
	for name, r := range map[string]proto.Record{
		"another offset":       other(func(r *proto.Record) { r.Offset = 6 }),
		"a tombstone":          other(func(r *proto.Record) { r.Tombstone, r.Value = true, nil }),
		"a null key":           other(func(r *proto.Record) { r.KeyNull, r.Key = true, nil }),
		"another value length": other(func(r *proto.Record) { r.Value = []byte("012345678") }),
		"another time":         other(func(r *proto.Record) { r.TimeMs = 2000 }),
		"a stub":               stub,
	} {
		if got, err := forge(r); !errors.Is(err, proto.ErrMalformed) {
			t.Errorf("parts of %s: %+v, %v; want ErrMalformed", name, got, err)
		}
	}
	// Two holders' encodings of the same length (another key byte): each
	// part is true to its own, the whole to neither.
	if got, err := forgeMixed(real, other(func(r *proto.Record) { r.Key = []byte("K") })); !errors.Is(err, proto.ErrMalformed) {
		t.Errorf("parts from two encodings: %+v, %v; want ErrMalformed", got, err)
	}
}
