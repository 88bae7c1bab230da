package edge

import (
	"fmt"
	"testing"
)

func frame(s string) queued { return marker([]byte(s)) }

func keyedFrame(key, s string) queued {
	return queued{buf: []byte(s + key), frameLen: uint32(len(s)), keyed: true}
}

func taken(iv *iovecs) []string {
	var got []string
	if iv != nil {
		for _, b := range iv.bufs {
			got = append(got, string(b))
		}
	}
	putIovecs(iv)
	return got
}

// Frames pushed while a writer holds what it took are neither lost nor
// doubled, and a taken queue's array goes back to the pool.
func TestClientTakeWhileWriting(t *testing.T) {
	c := newClient(100)
	c.live = true
	var got []string
	for round := range 4 {
		if empty, _, _ := c.take(); empty != nil { // a wake with nothing to do
			t.Fatalf("round %d: unexpected frames %q", round, taken(empty))
		}
		c.push(0, 1, frame(fmt.Sprintf("r%d-a", round)))
		frames, _, _ := c.take()
		c.push(0, 2, frame(fmt.Sprintf("r%d-b", round))) // while the writer holds frames
		got = append(got, taken(frames)...)
		frames, _, _ = c.take()
		got = append(got, taken(frames)...)
	}
	want := "[r0-a r0-b r1-a r1-b r2-a r2-b r3-a r3-b]"
	if fmt.Sprint(got) != want {
		t.Fatalf("got %v\nwant %s", got, want)
	}
	if c.queue != nil || c.qptr != nil {
		t.Fatal("an empty client holds a queue array")
	}
}

func TestClientOverflowBeforeLive(t *testing.T) {
	c := newClient(2)
	c.push(0, 1, frame("a"))
	c.push(0, 2, frame("b"))
	c.push(0, 3, frame("c"))
	if _, overflow, _ := c.take(); !overflow || c.pending != nil {
		t.Fatalf("want overflow with pending dropped, got overflow=%v pending=%d", overflow, len(c.pending))
	}
}

// A live client whose queue is full keeps only the newest frame per key,
// in order, with markers and keyless frames untouched (DESIGN rule 6).
func TestClientConflates(t *testing.T) {
	c := newClient(8)
	c.live = true
	for _, q := range []queued{keyedFrame("a", "a1"), keyedFrame("b", "b1"), frame(":keepalive"),
		keyedFrame("a", "a2"), keyedFrame("", "empty-key"), keyedFrame("b", "b2"), keyedFrame("a", "a3"), keyedFrame("b", "b3")} {
		if n, _ := c.push(0, 0, q); n != 0 {
			t.Fatalf("conflated %d before the queue was full", n)
		}
	}
	n, _ := c.push(0, 0, keyedFrame("a", "a4"))
	if n != 5 {
		t.Fatalf("conflated %d frames, want 5 (a1 b1 a2 b2 a3)", n)
	}
	frames, overflow, _ := c.take()
	got := fmt.Sprint(taken(frames))
	if want := "[:keepalive empty-key b3 a4]"; got != want || overflow {
		t.Fatalf("got %s overflow=%v, want %s", got, overflow, want)
	}
}

// Conflation that cannot bring the queue under half its bound (too many
// distinct keys behind) disconnects the client.
func TestClientOverflowsWhenConflationIsNotEnough(t *testing.T) {
	c := newClient(4)
	c.live = true
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c.push(0, 0, keyedFrame(k, k))
	}
	if frames, overflow, _ := c.take(); !overflow || frames != nil {
		t.Fatalf("want overflow and nothing queued, got overflow=%v frames=%v", overflow, taken(frames))
	}
}
