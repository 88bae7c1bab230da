package hub

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
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
	c := newClient(100, 1<<20)
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
	c := newClient(2, 1<<20)
	c.push(0, 1, frame("a"))
	c.push(0, 2, frame("b"))
	c.push(0, 3, frame("c"))
	if _, overflow, _ := c.take(); !overflow || c.pending != nil {
		t.Fatalf("want overflow with pending dropped, got overflow=%v pending=%d", overflow, len(c.pending))
	}
}

// A live client whose queue is full keeps only the newest frame per key,
// in order, with markers and keyless frames untouched (docs/architecture.md rule 6).
func TestClientConflates(t *testing.T) {
	c := newClient(8, 1<<20)
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
	c := newClient(4, 1<<20)
	c.live = true
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c.push(0, 0, keyedFrame(k, k))
	}
	if frames, overflow, _ := c.take(); !overflow || frames != nil {
		t.Fatalf("want overflow and nothing queued, got overflow=%v frames=%v", overflow, taken(frames))
	}
}

// A client's queue is bounded in bytes as well as in frames: past
// maxBytes it is conflated, and if that leaves it over half of maxBytes it
// is disconnected; its queued bytes never pass the bound.
func TestClientBoundedInBytes(t *testing.T) {
	big := func(key string, i int) queued {
		return keyedFrame(key, fmt.Sprintf("%s%d-%s", key, i, strings.Repeat("x", 1000)))
	}
	t.Run("conflated", func(t *testing.T) {
		c := newClient(1000, 4500)
		c.live = true
		conflated := 0
		for i := range 10 {
			for _, k := range []string{"a", "b"} {
				n, _ := c.push(0, 0, big(k, i))
				conflated += n
				if c.queueBytes > c.maxBytes {
					t.Fatalf("push %s%d: %d bytes queued, bound %d", k, i, c.queueBytes, c.maxBytes)
				}
			}
		}
		frames, overflow, _ := c.take()
		got := taken(frames)
		if overflow || conflated == 0 || len(got) > 4 || !strings.HasPrefix(got[len(got)-1], "b9-") || !strings.HasPrefix(got[len(got)-2], "a9-") {
			t.Fatalf("overflow=%v conflated=%d, got %d frames ending %.3q", overflow, conflated, len(got), got[max(0, len(got)-2):])
		}
		if c.queueBytes != 0 {
			t.Fatalf("%d bytes counted after take", c.queueBytes)
		}
	})
	t.Run("cut off", func(t *testing.T) {
		c := newClient(1000, 4500)
		c.live = true
		for i := range 5 {
			c.push(0, 0, big(fmt.Sprint("k", i), i))
		}
		if frames, overflow, _ := c.take(); !overflow || frames != nil {
			t.Fatalf("want overflow and nothing queued, got overflow=%v frames=%d", overflow, len(taken(frames)))
		}
	})
	t.Run("state part", func(t *testing.T) {
		c := newClient(1000, 4500)
		for i := range 4 {
			c.push(0, int64(i), big("a", i))
		}
		if _, overflow, _ := c.take(); overflow {
			t.Fatal("overflow below the bound")
		}
		// The largest frame is not counted (one frame always fits): a
		// fifth fits too, a sixth is over.
		c.push(0, 4, big("a", 4))
		if _, overflow, _ := c.take(); overflow {
			t.Fatal("overflow at the bound beside one frame")
		}
		c.push(0, 5, big("a", 5))
		if _, overflow, _ := c.take(); !overflow || c.pending != nil {
			t.Fatalf("want overflow with pending dropped, got overflow=%v pending=%d", overflow, len(c.pending))
		}
	})
}

// One frame always fits an empty queue, however large: a record Kafka
// accepted reaches a client that reads, whatever MaxQueueBytes says.
func TestOneFrameOverTheByteBoundStillFits(t *testing.T) {
	for _, live := range []bool{true, false} {
		c := newClient(16384, 64<<10)
		c.live = live
		c.push(0, 0, keyedFrame("k", strings.Repeat("x", 100<<10)))
		if c.overflow {
			t.Fatalf("live=%v: a 100 KiB frame into an empty queue bounded at 64 KiB cut the client off", live)
		}
	}
}

// A client is one of many thousands per edge: 192 bytes (a size class of
// the allocator), as before streams had codings.
func TestClientIsThreeCacheLines(t *testing.T) {
	if n := unsafe.Sizeof(client{}); n > 192 {
		t.Fatalf("client is %d bytes", n)
	}
}
