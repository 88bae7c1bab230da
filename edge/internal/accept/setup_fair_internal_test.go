package accept

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// The setup queue is fair between client addresses: one address holds at
// most its share of workers and of waiting places, and the addresses with
// a stream waiting take turns, so a crowd from one address does not stand
// in front of another's stream. (On 63c3e19 the queue was one line: 200
// streams from one address were all served before the next address's.)
func TestSetupQueueSharesWorkersBetweenAddresses(t *testing.T) {
	a := netip.MustParsePrefix("192.0.2.1/32")
	b := netip.MustParsePrefix("192.0.2.2/32")
	q := newSetupQueue(100, 1, 2)
	req := func(key netip.Prefix, id int) setupRequest {
		return setupRequest{key: key, queued: time.Unix(int64(id), 0)}
	}
	for i := range 2 {
		if refusal := q.push(req(a, i)); refusal != reason.Unknown {
			t.Fatalf("a's stream %d refused: %s", i, refusal)
		}
	}
	if refusal := q.push(req(a, 2)); refusal != reason.SetupPerAddress {
		t.Fatalf("a's third waiting stream: refusal %q, want %q", refusal, reason.SetupPerAddress)
	}
	if refusal := q.push(req(b, 10)); refusal != reason.Unknown {
		t.Fatalf("b's stream refused: %s", refusal)
	}
	if r, _ := q.pop(); r.key != a || r.queued.Unix() != 0 {
		t.Fatalf("first pop %v %v, want a's first", r.key, r.queued.Unix())
	}
	if r, _ := q.pop(); r.key != b {
		t.Fatalf("second pop %v, want b's stream before a's second (a holds its share)", r.key)
	}
	q.mu.Lock()
	turns, waiting := len(q.turns), q.waiting
	q.mu.Unlock()
	if turns != 0 || waiting != 1 {
		t.Fatalf("%d addresses in turn with %d waiting, want none while a holds its share", turns, waiting)
	}
	q.done(a, time.Millisecond)
	if r, _ := q.pop(); r.key != a || r.queued.Unix() != 1 {
		t.Fatalf("after a's setup ended: %v %v, want a's second", r.key, r.queued.Unix())
	}
	q.done(a, time.Millisecond)
	q.done(b, time.Millisecond)
	if _, idle := q.stats(); !idle || len(q.addrs) != 0 {
		t.Fatalf("idle %v with %d addresses kept, want idle and none", idle, len(q.addrs))
	}
}
