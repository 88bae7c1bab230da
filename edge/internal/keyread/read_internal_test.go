package keyread

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/proto"
)

// The rule for the current record of a key found in several partitions:
// the latest time, then the lowest partition; not found is never chosen.
func TestNewestKeyRule(t *testing.T) {
	at := func(p int32, ms int64) proto.KeyReply {
		return proto.KeyReply{Partition: p, Found: true, Record: proto.Record{TimeMs: ms}}
	}
	none := func(p int32) proto.KeyReply { return proto.KeyReply{Partition: p} }
	for _, c := range []struct {
		name    string
		replies []proto.KeyReply
		want    int
	}{
		{"none found", []proto.KeyReply{none(0), none(1)}, -1},
		{"one found", []proto.KeyReply{none(0), at(1, 5), none(2)}, 1},
		{"newer in a higher partition", []proto.KeyReply{at(0, 5), at(1, 9), at(2, 7)}, 1},
		{"newer in the first partition", []proto.KeyReply{at(0, 9), at(1, 5), at(2, 7)}, 0},
		{"equal times: the lowest partition", []proto.KeyReply{none(0), at(1, 7), at(2, 7)}, 1},
		{"equal times, replies out of order", []proto.KeyReply{at(2, 7), at(1, 7), at(0, 3)}, 1},
	} {
		if got := newestKey(c.replies); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// A value over compressMax is sent uncompressed, as one under compressMin:
// each read of it could compress it again.
func TestLargeValuesAreReadUncompressed(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/k", nil)
	r.Header.Set("Accept-Encoding", "gzip")
	offer := []compress.Encoding{compress.Gzip}
	for n, want := range map[int]compress.Encoding{
		compressMin - 1: compress.Identity, compressMin: compress.Gzip,
		compressMax: compress.Gzip, compressMax + 1: compress.Identity,
	} {
		if got := coding(r, n, offer); got != want {
			t.Errorf("a value of %d bytes: %v, want %v", n, got, want)
		}
	}
}
