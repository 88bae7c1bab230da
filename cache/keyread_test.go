package cache

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/proto"
)

// A key request answers with the holder's position; one whose floor is
// past that position (the asking edge delivered more than this holder has
// applied) gets the position only, never the holder's older record
// (issue 19.4). A request without a floor (floor 0 is none on the wire:
// the previous release's form) gets the reply in the previous form,
// without the position: that release's edges cannot decode it.
func TestKeyRequestBelowItsFloorAnswersPositionOnly(t *testing.T) {
	tt := newTestTier(t)
	produceValues(t, tt.prod, &kgo.Record{Key: []byte("k"), Value: []byte("v0")}, &kgo.Record{Key: []byte("k"), Value: []byte("v1")})
	tt.run(t, Config{Bootstrap: []string{"v"}})
	ask := func(floor int64) proto.KeyReply {
		t.Helper()
		var k proto.KeyReply
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := poll.Wait(ctx, 10*time.Millisecond, func() bool {
			msg, err := tt.nc.Request(proto.Subjects{Prefix: "ssekafka"}.State("v", 0),
				proto.AppendKeyRequest(nil, &proto.KeyRequest{Key: []byte("k"), Floor: floor}), time.Second)
			if err != nil {
				return false
			}
			k, err = proto.DecodeKeyReply(msg.Data)
			want := int64(2)
			if floor == 0 && err == nil && k.Found {
				want = 0 // no position in the previous form
				if enc := proto.AppendKeyReply(nil, &k); len(msg.Data) != len(enc)-1 {
					return false
				}
			}
			return err == nil && k.Status == proto.StatusOK && k.Next == want
		}); err != nil {
			t.Fatalf("no reply at position 2 (floor 0: in the previous form) to floor %d: %+v", floor, k)
		}
		return k
	}
	for _, floor := range []int64{0, 1, 2} {
		if k := ask(floor); !k.Found || string(k.Record.Value) != "v1" {
			t.Fatalf("floor %d: %+v", floor, k)
		}
	}
	if k := ask(3); k.Found {
		t.Fatalf("floor 3, past the holder's position 2: answered %+v", k)
	}
}
