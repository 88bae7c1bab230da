package edge

import (
	"math"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

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

// KeyReads' fields have defaults, keep Off, and a bad value is an error
// naming the field.
func TestKeyReadLimitsDefaultsAndErrors(t *testing.T) {
	c := Config{NATS: &nats.Conn{}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if k := c.KeyReads; k.MinRate != 64<<10 || k.MaxBytes != 256<<20 || k.MaxBytesPerIP != 64<<20 || k.RatePerIP != 100 || k.CacheRequestsPerIP != 2000 {
		t.Fatalf("defaults: %+v", k)
	}
	c = Config{NATS: &nats.Conn{}, KeyReads: KeyReadLimits{MinRate: Off, MaxBytes: Off, MaxBytesPerIP: Off, RatePerIP: Off, CacheRequestsPerIP: Off}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if k := c.KeyReads; k.MinRate != Off || k.MaxBytes != Off || k.MaxBytesPerIP != Off || k.RatePerIP != Off || k.CacheRequestsPerIP != Off {
		t.Fatalf("Off not kept: %+v", k)
	}
	for field, tweak := range map[string]func(*KeyReadLimits){
		"KeyReads.MinRate":            func(k *KeyReadLimits) { k.MinRate = -2 },
		"KeyReads.MaxBytes":           func(k *KeyReadLimits) { k.MaxBytes = -2 },
		"KeyReads.MaxBytesPerIP":      func(k *KeyReadLimits) { k.MaxBytesPerIP = -5 },
		"KeyReads.RatePerIP":          func(k *KeyReadLimits) { k.RatePerIP = -0.5 },
		"KeyReads.CacheRequestsPerIP": func(k *KeyReadLimits) { k.CacheRequestsPerIP = math.Inf(1) },
	} {
		c := Config{NATS: &nats.Conn{}}
		tweak(&c.KeyReads)
		if err := c.setDefaults(); err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: %v", field, err)
		}
	}
}
