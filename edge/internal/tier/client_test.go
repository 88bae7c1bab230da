package tier_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/edge/internal/tiertest"
	"github.com/ssekafka/ssekafka/proto"
)

var start = time.Unix(1_800_000_000, 0)

type count struct{ n atomic.Int64 }

func (c *count) Inc() { c.n.Add(1) }

func newClient(t tier.Tier, clock tier.Clock, c tier.Counters) *tier.Client {
	return tier.NewClient(t, tier.Config{PageTimeout: time.Second, RequestTimeout: 15 * time.Second, PageBytes: 1 << 20, Clock: clock, Counters: c})
}

// catchingUp is a tier whose lagging holder catches up after some parts
// were asked of it.
type catchingUp struct {
	*tiertest.Tier
	after int
	asked int
}

func (c *catchingUp) Value(ctx context.Context, topic string, p int32, req proto.ValueRequest) (proto.ValuePart, error) {
	if c.asked++; c.asked > c.after {
		c.Lag(topic, p, 0)
	}
	return c.Tier.Value(ctx, topic, p, req)
}

// A record read in parts from a holder that has not applied it yet
// (NotYet) is asked again with backoff until one has, then read whole, in
// parts that fit the tier's messages.
func TestApartAsksAgainWhileTheHolderIsBehindTheRecord(t *testing.T) {
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, 3)
	mem.SetMaxPayload(4 << 10)
	value := []byte(strings.Repeat("v", 20<<10))
	ch := mem.Append("tasks", 0, "k", value, 1)
	mem.Lag("tasks", 0, 1)
	notYet, parts := &count{}, &count{}
	clock := tiertest.Jumping(start)
	c := newClient(&catchingUp{Tier: mem, after: 3}, clock, tier.Counters{ValuesNotYet: notYet, ValueRequests: parts})
	stub := proto.Record{Offset: ch.Record.Offset, TimeMs: 1, Apart: true, ValueLen: len(value)}
	r, err := c.Apart(context.Background(), "tasks", 3, 0, &stub)
	if err != nil || string(r.Value) != string(value) || string(r.Key) != "k" {
		t.Fatalf("record: %v, %d bytes of key %q", err, len(r.Value), r.Key)
	}
	if notYet.n.Load() != 3 || parts.n.Load() < 3+6 {
		t.Fatalf("%d parts answered NotYet, %d asked; want 3 NotYet, then a 20 KiB record in 4 KiB parts", notYet.n.Load(), parts.n.Load())
	}
	if waited := clock.Now().Sub(start); waited != (5+10+20)*time.Millisecond {
		t.Fatalf("waited %v before asking again, want 5, 10, 20 ms", waited)
	}
}

// A holder that never gets to the record: the read gives up once
// RequestTimeout has passed on the clock, as unavailable.
func TestApartGivesUpAtItsBudget(t *testing.T) {
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, 3)
	ch := mem.Append("tasks", 0, "k", []byte("v"), 1)
	mem.Lag("tasks", 0, 1)
	clock := tiertest.Jumping(start)
	c := newClient(mem, clock, tier.Counters{})
	stub := proto.Record{Offset: ch.Record.Offset, TimeMs: 1, Apart: true, ValueLen: 1}
	_, err := c.Apart(context.Background(), "tasks", 3, 0, &stub)
	if !errors.Is(err, tier.ErrUnavailable) || !errors.Is(err, tier.ErrNotYet) {
		t.Fatalf("err %v, want unavailable: not yet", err)
	}
	if waited := clock.Now().Sub(start); waited < 15*time.Second || waited > 16*time.Second {
		t.Fatalf("gave up after %v, want RequestTimeout (15s)", waited)
	}
}

// A page answered NotOwner is asked again (another holder answers, or
// soon will); a page of another epoch is an error, not asked again.
func TestPageRetryingAsksAgainAfterNotOwner(t *testing.T) {
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, 3)
	mem.Append("tasks", 0, "k", []byte("v"), 1)
	mem.NotOwner("tasks", 0, 3)
	c := newClient(mem, tiertest.Jumping(start), tier.Counters{})
	page, err := c.PageRetrying(context.Background(), "tasks", 3, 0, 0)
	if err != nil || len(page.Records) != 1 || page.Next != 1 {
		t.Fatalf("page %+v, %v", page, err)
	}
	if n := mem.Requests("tasks", 0); n != 4 {
		t.Fatalf("%d requests, want 3 NotOwner and 1 answered", n)
	}
	if _, err := c.PageRetrying(context.Background(), "tasks", 4, 0, 0); err == nil || errors.Is(err, tier.ErrUnavailable) {
		t.Fatalf("a page of another epoch: %v", err)
	}
	if n := mem.Requests("tasks", 0); n != 5 {
		t.Fatalf("%d requests, want the other epoch's asked once", n)
	}
}

// A key read asks again while the holder is behind the floor, for up to
// two seconds, then says so.
func TestKeyBehindTheFloorGivesUpAfterItsBudget(t *testing.T) {
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, 3)
	mem.Append("tasks", 0, "k", []byte("v0"), 1)
	mem.Append("tasks", 0, "k", []byte("v1"), 2)
	mem.Lag("tasks", 0, 1)
	behind := &count{}
	clock := tiertest.Jumping(start)
	c := newClient(mem, clock, tier.Counters{KeyRepliesBehind: behind})
	_, err := c.Key(context.Background(), "tasks", 3, 0, []byte("k"), 2)
	if !errors.Is(err, tier.ErrUnavailable) || behind.n.Load() < 40 {
		t.Fatalf("err %v after %d replies behind", err, behind.n.Load())
	}
	if waited := clock.Now().Sub(start); waited < 2*time.Second || waited > 3*time.Second {
		t.Fatalf("gave up after %v, want about 2s", waited)
	}
	mem.Lag("tasks", 0, 0)
	k, err := c.Key(context.Background(), "tasks", 3, 0, []byte("k"), 2)
	if err != nil || !k.Found || string(k.Record.Value) != "v1" {
		t.Fatalf("caught up: %+v, %v", k, err)
	}
}

// floorless plays a cache node of the previous release (63c3e19): it
// refuses a key request with a floor as that release's decoder does.
type floorless struct {
	*tiertest.Tier
	floors, asked int
}

func (f *floorless) Key(ctx context.Context, topic string, p int32, req proto.KeyRequest) (proto.KeyReply, error) {
	f.asked++
	if req.Floor > 0 {
		f.floors++
		return proto.KeyReply{Status: proto.StatusError, Error: "key request: trailing bytes: malformed input"}, nil
	}
	return f.Tier.Key(ctx, topic, p, req)
}

// A key read whose floor a cache node of the previous release refuses is
// asked again at once without it, and answers; the reads after it send no
// floor (no more refusals) for a minute, and one then tries a floor again.
// The edge is told once per refusal, not per request.
func TestKeyReadDropsAFloorThePreviousReleaseRefuses(t *testing.T) {
	mem := tiertest.New()
	mem.AddTopic("tasks", 1, 3)
	mem.Append("tasks", 0, "k", []byte("v1"), 1)
	old := &floorless{Tier: mem}
	clock := tiertest.NewClock(start)
	var told []string
	c := tier.NewClient(old, tier.Config{PageTimeout: time.Second, RequestTimeout: 15 * time.Second, Clock: clock,
		FloorsRefused: func(reply string) { told = append(told, reply) }})
	read := func() {
		t.Helper()
		k, err := c.Key(context.Background(), "tasks", 3, 0, []byte("k"), 1)
		if err != nil || !k.Found || string(k.Record.Value) != "v1" {
			t.Fatalf("key read: %+v, %v", k, err)
		}
	}
	read()
	if old.floors != 1 || old.asked != 2 || len(told) != 1 || !strings.Contains(told[0], "trailing bytes") {
		t.Fatalf("first read: %d floors refused of %d requests, told %q; want 1 of 2, told once", old.floors, old.asked, told)
	}
	clock.Advance(59 * time.Second)
	read()
	if old.floors != 1 || old.asked != 3 {
		t.Fatalf("within the minute: %d floors refused of %d requests, want no floor sent", old.floors, old.asked)
	}
	clock.Advance(2 * time.Second)
	read()
	if old.floors != 2 || old.asked != 5 || len(told) != 2 {
		t.Fatalf("after the minute: %d floors refused of %d requests, told %d times; want a floor tried again", old.floors, old.asked, len(told))
	}
}
