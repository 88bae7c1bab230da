package edge

import (
	"fmt"
	"testing"
)

// A wake with nothing queued must not leave the queue sharing memory with
// the writer's spare slice (frames were lost and doubled that way once).
func TestClientTakeAfterEmptyWake(t *testing.T) {
	c := newClient(100)
	c.live = true
	spare := make([][]byte, 0, 8)
	var got []string
	for round := range 4 {
		if empty, _, _ := c.take(spare); len(empty) != 0 { // a wake with nothing to do
			t.Fatalf("round %d: unexpected frames %q", round, empty)
		}
		c.push(0, 1, []byte(fmt.Sprintf("r%d-a", round)))
		frames, _, _ := c.take(spare)
		c.push(0, 2, []byte(fmt.Sprintf("r%d-b", round))) // while the writer holds frames
		for _, f := range frames {
			got = append(got, string(f))
		}
		clear(frames)
		spare = frames
		frames, _, _ = c.take(spare)
		for _, f := range frames {
			got = append(got, string(f))
		}
		clear(frames)
		spare = frames
	}
	want := "[r0-a r0-b r1-a r1-b r2-a r2-b r3-a r3-b]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
}

func TestClientOverflow(t *testing.T) {
	c := newClient(2)
	c.push(0, 1, []byte("a"))
	c.push(0, 2, []byte("b"))
	c.push(0, 3, []byte("c"))
	if _, overflow, _ := c.take(nil); !overflow || c.pending != nil {
		t.Fatalf("want overflow with pending dropped, got overflow=%v pending=%d", overflow, len(c.pending))
	}
}
