// Package tiertest is an in-memory cache tier for the edge's tests: a
// tier.Tier whose topics, pages, heads and live messages a test scripts —
// a holder that lags, NotOwner answers, forged messages — without a cache
// node or a NATS server; a fake clock; and a wrapper that holds a real
// tier's live messages or lookups. Only tests import it.
package tiertest

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// Tier is an in-memory cache tier: one holder per partition, which has
// applied every record appended (its position, Next), unless the test
// makes it lag. Safe for concurrent use.
type Tier struct {
	mu         sync.Mutex
	topics     map[string]*topic
	subs       map[string][]chan *tier.Msg
	maxPayload int
	apartBytes int
	reconnects atomic.Uint64
}

type topic struct {
	meta  proto.Meta
	parts []*partition
}

type partition struct {
	log      []proto.Record // every record appended, in offset order
	next     int64          // the primary's position
	lag      int64          // the holder that answers is this far behind next
	notOwner int            // requests still to be answered NotOwner
	requests int            // requests of any kind
}

var _ tier.Tier = (*Tier)(nil)

// New is an empty in-memory tier; its messages carry up to 1 MiB.
func New() *Tier {
	return &Tier{topics: map[string]*topic{}, subs: map[string][]chan *tier.Msg{}, maxPayload: 1 << 20, apartBytes: math.MaxInt}
}

// AddTopic makes topic, with n partitions, under epoch.
func (t *Tier) AddTopic(name string, n int32, epoch uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tp := &topic{meta: proto.Meta{Status: proto.StatusOK, Epoch: epoch, Partitions: n, HorizonMs: 24 * 3600 * 1000, CaughtUp: true}}
	for range n {
		tp.parts = append(tp.parts, &partition{})
	}
	t.topics[name] = tp
}

// SetApartBytes makes live changes of records whose value is longer than
// n carry a stub: the record is read in parts (Value).
func (t *Tier) SetApartBytes(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.apartBytes = n
}

// SetMaxPayload sets the largest message (parts are cut to fit it).
func (t *Tier) SetMaxPayload(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxPayload = n
}

func (t *Tier) part(name string, p int32) *partition {
	tp := t.topics[name]
	if tp == nil || p < 0 || int(p) >= len(tp.parts) {
		panic(fmt.Sprintf("tiertest: no partition %s/%d", name, p))
	}
	return tp.parts[p]
}

// Append adds a record of key (value nil: a tombstone) to partition p, as
// the holders apply it, without a live message (one lost on the way).
func (t *Tier) Append(name string, p int32, key string, value []byte, timeMs int64) proto.Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.part(name, p)
	r := proto.Record{Offset: pt.next, TimeMs: timeMs, Key: []byte(key), Value: value, Tombstone: value == nil, Etag: fmt.Sprintf("e%d", pt.next)}
	pt.log = append(pt.log, r)
	ch := proto.Change{Epoch: t.topics[name].meta.Epoch, Partition: p, From: pt.next, Record: r}
	pt.next++
	return ch
}

// Produce appends a record and publishes its live change; a value longer
// than SetApartBytes's travels apart (a stub).
func (t *Tier) Produce(name string, p int32, key string, value []byte, timeMs int64) proto.Change {
	ch := t.Append(name, p, key, value, timeMs)
	t.mu.Lock()
	live := ch
	if len(value) > t.apartBytes {
		live.Record = proto.Record{Offset: ch.Record.Offset, TimeMs: ch.Record.TimeMs, Tombstone: ch.Record.Tombstone, Apart: true, ValueLen: len(value)}
	}
	t.mu.Unlock()
	t.PublishChange(name, &live)
	return ch
}

// PublishChange publishes ch on topic's live subject as it is: a test
// forges one by making it up.
func (t *Tier) PublishChange(name string, ch *proto.Change) {
	t.Publish(name, ch.Partition, proto.AppendChange(nil, ch))
}

// PublishHead publishes partition p's head: the primary's position.
func (t *Tier) PublishHead(name string, p int32) {
	t.mu.Lock()
	h := proto.Head{Epoch: t.topics[name].meta.Epoch, Partition: p, Next: t.part(name, p).next}
	t.mu.Unlock()
	t.Publish(name, p, proto.AppendHead(nil, &h))
}

// Publish delivers data to topic's subscribers as a live message of
// partition p, as anyone able to publish could.
func (t *Tier) Publish(name string, p int32, data []byte) {
	t.mu.Lock()
	subs := t.subs[name]
	t.mu.Unlock()
	m := &tier.Msg{Subject: fmt.Sprintf("test.ev.%s.%d", name, p), Data: data}
	for _, ch := range subs {
		select {
		case ch <- m:
		default: // full: dropped, as over NATS
		}
	}
}

// Lag makes partition p's holder answer from n records behind the
// primary (a standby that lags): pages stop short, parts past it are
// NotYet, key replies say its position. 0 catches it up.
func (t *Tier) Lag(name string, p int32, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part(name, p).lag = n
}

// NotOwner makes the next n requests to partition p answered NotOwner (a
// node that released it, or is not caught up).
func (t *Tier) NotOwner(name string, p int32, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.part(name, p).notOwner = n
}

// Requests is how many requests partition p was asked.
func (t *Tier) Requests(name string, p int32) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.part(name, p).requests
}

// Reconnect counts a lost connection: Reconnects moves.
func (t *Tier) Reconnect() { t.reconnects.Add(1) }

// ask counts a request of p and says how it is answered: the holder's
// position, or NotOwner.
func (t *Tier) ask(name string, p int32) (pt *partition, epoch uint32, held int64, notOwner bool, err error) {
	tp := t.topics[name]
	if tp == nil || p < 0 || int(p) >= len(tp.parts) {
		return nil, 0, 0, false, fmt.Errorf("%s/%d: no responders: %w", name, p, tier.ErrUnavailable)
	}
	pt = tp.parts[p]
	pt.requests++
	if pt.notOwner > 0 {
		pt.notOwner--
		return pt, tp.meta.Epoch, 0, true, nil
	}
	return pt, tp.meta.Epoch, max(pt.next-pt.lag, 0), false, nil
}

// Meta answers topic's metadata.
func (t *Tier) Meta(ctx context.Context, name string) (proto.Meta, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tp := t.topics[name]; tp != nil {
		return tp.meta, ctx.Err()
	}
	return proto.Meta{Status: proto.StatusUnknownTopic, Error: "no such topic"}, ctx.Err()
}

// current is the holder's latest record per key below held, at or after
// since, in offset order.
func (pt *partition) current(since, held int64) []proto.Record {
	latest := map[string]int64{}
	for _, r := range pt.log[:held] {
		latest[string(r.Key)] = r.Offset
	}
	var out []proto.Record
	for _, r := range pt.log[min(since, held):held] {
		if latest[string(r.Key)] == r.Offset {
			out = append(out, r)
		}
	}
	return out
}

// State answers a page: the holder's current records from Since, up to
// about MaxBytes.
func (t *Tier) State(ctx context.Context, name string, p int32, req proto.StateRequest) (proto.StatePage, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt, epoch, held, notOwner, err := t.ask(name, p)
	if err != nil || notOwner {
		return proto.StatePage{Status: proto.StatusNotOwner, Error: "not owner", Epoch: epoch, Partition: p}, err
	}
	page := proto.StatePage{Status: proto.StatusOK, Epoch: epoch, Partition: p, Next: held}
	size := 0
	for _, r := range pt.current(req.Since, held) {
		if size > 0 && size+r.Size() > req.MaxBytes {
			page.More, page.Cursor = true, r.Offset
			break
		}
		size += r.Size()
		page.Records = append(page.Records, r)
	}
	return page, ctx.Err()
}

// Value answers a part of the record at Offset: NotYet when the holder
// has not applied it, Gone when a newer record of its key superseded it.
func (t *Tier) Value(ctx context.Context, name string, p int32, req proto.ValueRequest) (proto.ValuePart, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt, epoch, held, notOwner, err := t.ask(name, p)
	part := proto.ValuePart{Epoch: epoch, Partition: p, Offset: req.Offset, From: req.From, Next: held}
	switch {
	case err != nil || notOwner:
		part.Status, part.Error = proto.StatusNotOwner, "not owner"
		return part, err
	case req.Offset >= held:
		part.Status, part.Error = proto.StatusNotYet, "not applied yet"
		return part, ctx.Err()
	}
	r := pt.log[req.Offset]
	if cur := pt.current(r.Offset, held); len(cur) == 0 || cur[0].Offset != r.Offset {
		part.Status, part.Error = proto.StatusGone, "superseded"
		return part, ctx.Err()
	}
	enc := proto.AppendRecord(nil, &r)
	end := min(len(enc), req.From+max(req.MaxBytes, 1))
	part.Status, part.Next = proto.StatusOK, 0
	part.Total, part.Sum, part.Data = len(enc), proto.PartSum(enc), enc[min(req.From, len(enc)):end]
	return part, ctx.Err()
}

// Key answers key's latest record; a holder behind Floor says only where
// it stands.
func (t *Tier) Key(ctx context.Context, name string, p int32, req proto.KeyRequest) (proto.KeyReply, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt, epoch, held, notOwner, err := t.ask(name, p)
	reply := proto.KeyReply{Status: proto.StatusOK, Epoch: epoch, Partition: p, Next: held}
	if err != nil || notOwner {
		reply.Status, reply.Error = proto.StatusNotOwner, "not owner"
		return reply, err
	}
	if held < req.Floor {
		return reply, ctx.Err()
	}
	for _, r := range pt.current(0, held) {
		if string(r.Key) == string(req.Key) && !r.Tombstone {
			reply.Found, reply.Record = true, r
		}
	}
	return reply, ctx.Err()
}

// Subscribe delivers topic's live messages into msgs until Unsubscribe.
func (t *Tier) Subscribe(ctx context.Context, name string, msgs chan *tier.Msg) (tier.Subscription, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.subs[name] = append(t.subs[name], msgs)
	return &subscription{t: t, topic: name, msgs: msgs}, ctx.Err()
}

type subscription struct {
	t     *Tier
	topic string
	msgs  chan *tier.Msg
}

func (s *subscription) Unsubscribe() error {
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	subs := s.t.subs[s.topic]
	for i, ch := range subs {
		if ch == s.msgs {
			s.t.subs[s.topic] = append(subs[:i:i], subs[i+1:]...)
			break
		}
	}
	return nil
}

// MaxPayload is SetMaxPayload's, 1 MiB by default.
func (t *Tier) MaxPayload() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.maxPayload
}

// Reconnects counts Reconnect's calls.
func (t *Tier) Reconnects() uint64 { return t.reconnects.Load() }
