// Per-key JSON reads (beyond Zilla's sse): a GET on a keyed route (one key
// filter) that accepts application/json and not text/event-stream gets the
// key's current value from the cache tier, with an ETag and conditional
// requests, instead of a stream. Guards and CORS apply as for streams.

package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

// wantsJSON reports whether r asks for a JSON read: its Accept names
// application/json (with a q above 0) and not text/event-stream.
func wantsJSON(r *http.Request) bool {
	json, stream := false, false
	for _, accept := range r.Header.Values("Accept") {
		for _, part := range strings.Split(accept, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || refused(params["q"]) {
				continue
			}
			switch mt {
			case "application/json":
				json = true
			case "text/event-stream":
				stream = true
			}
		}
	}
	return json && !stream
}

// refused reports whether an Accept q value is zero, in any of its
// spellings ("0", "0.", "0.000"); a q that does not parse is not a refusal.
func refused(q string) bool {
	if q == "" {
		return false
	}
	f, err := strconv.ParseFloat(q, 64)
	return err == nil && f == 0
}

// readKey answers a JSON read of topic under filters.
func (e *Edge) readKey(w http.ResponseWriter, r *http.Request, topic string, filters []filter) {
	if len(filters) != 1 || filters[0].key == nil {
		e.metrics.keyReads.WithLabelValues("not_keyed").Inc()
		e.fail(w, http.StatusNotAcceptable, "application/json is served on routes with one key filter; this route is a stream: accept text/event-stream")
		return
	}
	reader := e.keyReaderOf(r)
	defer reader.release()
	if ok, wait := reader.allowRead(); !ok {
		e.refuseKeyRead(w, reader, "rate_limited", errRateLimited, wait)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.RequestTimeout)
	defer cancel()
	found, held, err := e.findValue(ctx, reader, topic, *filters[0].key)
	if held != nil {
		defer e.releaseValue(held)
	}
	switch {
	case errors.Is(err, errTopicNotFound):
		e.metrics.keyReads.WithLabelValues("not_found").Inc()
		e.fail(w, http.StatusNotFound, "no such topic")
		return
	case errors.Is(err, errRateLimited):
		e.refuseKeyRead(w, reader, "rate_limited", err, time.Second)
		return
	case errors.Is(err, errKeyReadsBusy):
		e.refuseKeyRead(w, reader, "busy", err, time.Second)
		return
	case err != nil:
		e.metrics.keyReads.WithLabelValues("unavailable").Inc()
		e.log.Warn("key read", "topic", topic, "err", err)
		w.Header().Set("Retry-After", "1")
		e.fail(w, http.StatusServiceUnavailable, "cache tier unavailable")
		return
	case found == nil || !matches(filters, &found.rec):
		e.metrics.keyReads.WithLabelValues("not_found").Inc()
		e.fail(w, http.StatusNotFound, "no such key")
		return
	}
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Expose-Headers", "ETag") // a page may send it back in If-None-Match
	}
	etag := found.entityTag()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept") // beside CORS's Vary: Origin
	if t := found.rec.TimeMs; t > 0 {
		h.Set("Last-Modified", time.UnixMilli(t).UTC().Format(http.TimeFormat))
	}
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		e.metrics.keyReads.WithLabelValues("not_modified").Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	e.metrics.keyReads.WithLabelValues("ok").Inc()
	if json.Valid(found.rec.Value) {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream") // a value that is not JSON is not called JSON
	}
	h.Set("Content-Length", strconv.Itoa(len(found.rec.Value)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := e.writeValue(w, found.rec.Value); err != nil {
		e.metrics.keyReadsCutOff.Inc()
		e.log.Warn("key read cut off", "topic", topic, "client", reader.String(), "bytes", len(found.rec.Value), "err", err)
	}
}

// findValue looks key up and holds its whole record (shared with the
// other reads of it in flight; the caller releases held), counting its
// value against the reader's address. found is nil when no partition
// holds the key.
func (e *Edge) findValue(ctx context.Context, reader *keyReader, topic, key string) (found *foundKey, held *heldValue, err error) {
	for attempt := 1; ; attempt++ {
		found, err = e.sharedLookup(ctx, topic, key, reader.chargeRequests)
		if err != nil || found == nil {
			return nil, nil, err
		}
		if !reader.reserve(found.size()) {
			return nil, nil, errKeyReadsBusy
		}
		held, err = e.holdValue(ctx, topic, found)
		if errors.Is(err, errValueGone) && attempt < keyReadAttempts {
			reader.release()
			e.metrics.valuesGone.Inc()
			continue // superseded meanwhile: read the newer record
		}
		if err != nil {
			return nil, nil, err
		}
		return &foundKey{rec: held.rec, epoch: found.epoch, partition: found.partition}, held, nil
	}
}

// refuseKeyRead answers a JSON read refused by a bound: 429 past a rate,
// 503 past the bytes in flight, with Retry-After; counted and logged
// (rate-limited) with the client address.
func (e *Edge) refuseKeyRead(w http.ResponseWriter, reader *keyReader, result string, err error, wait time.Duration) {
	e.metrics.keyReads.WithLabelValues(result).Inc()
	e.log.Warn("key read refused", "reason", result, "client", reader.String(), "err", err)
	retryAfter(w.Header(), wait)
	status := http.StatusServiceUnavailable
	if result == "rate_limited" {
		status = http.StatusTooManyRequests
	}
	http.Error(w, err.Error(), status) // not a bad request: e.fail would count it as one
}

// foundKey is a key's latest record and where it was.
type foundKey struct {
	rec       proto.Record
	epoch     uint32
	partition int32
}

// entityTag is the record's "etag" header when it has one that an ETag can
// carry, else its position: the topic's epoch, partition and offset.
func (f *foundKey) entityTag() string {
	if f.rec.EtagHeader && f.rec.Etag != "" && validETag(f.rec.Etag) {
		return `"` + f.rec.Etag + `"`
	}
	return fmt.Sprintf(`"%d-%d-%d"`, f.epoch, f.partition, f.rec.Offset)
}

// validETag reports whether s is made of RFC 9110 etagc characters.
func validETag(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != 0x21 && (c < 0x23 || c == 0x7f) {
			return false
		}
	}
	return true
}

// noneMatch reports whether If-None-Match values name etag (weak
// comparison, as RFC 9110 asks of If-None-Match), or are "*". The values
// are lists of entity tags, which may hold commas: they are read tag by
// tag, not split at commas; a malformed list matches nothing after the
// fault.
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		if strings.TrimSpace(v) == "*" {
			return true
		}
		for rest := v; ; {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				break
			}
			weak := strings.HasPrefix(rest, "W/")
			if weak {
				rest = rest[2:]
			}
			if !strings.HasPrefix(rest, `"`) {
				break
			}
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				break
			}
			if rest[:end+2] == etag {
				return true
			}
			rest = rest[end+2:]
		}
	}
	return false
}

// keyReadAttempts bounds how often a read starts again because the value
// it was given was superseded before it could be read in parts.
const keyReadAttempts = 3

// maxKeyRequests bounds the partitions asked at once by one read.
const maxKeyRequests = 64

// keyBehindBudget bounds how long a partition is asked again while the
// holders that answer are behind what the edge has delivered; past it the
// read is 503.
const keyBehindBudget = 2 * time.Second

// keyCall is one lookup of a key, shared by the reads that ask for it
// while it is in flight.
type keyCall struct {
	done  chan struct{} // closed once found, at and err are set
	found *foundKey     // read only, once done
	at    keyPosition   // the positions of the holders that answered
	err   error
}

type keyCallKey struct{ topic, key string }

// keyPosition is a position on a topic: its epoch and the next offset of
// each partition (nil: none).
type keyPosition struct {
	epoch   uint32
	offsets []int64
}

// covers reports whether answers from holders at p reflect everything
// seen holds: true when nothing was seen.
func (p keyPosition) covers(seen keyPosition) bool {
	if seen.offsets == nil {
		return true
	}
	if p.epoch != seen.epoch || len(p.offsets) != len(seen.offsets) {
		return false
	}
	for i, o := range seen.offsets {
		if p.offsets[i] < o {
			return false
		}
	}
	return true
}

// keyReads are the lookups in flight, and the partition count last seen
// per topic (what a new lookup will cost the cache tier). mu comes before
// keyReadAddrs.mu (a new lookup is charged under it), and nothing else.
type keyReads struct {
	mu         sync.Mutex
	inflight   map[keyCallKey]*keyCall
	partitions map[string]int32
}

// maxKnownPartitions bounds the topics whose partition count is kept.
const maxKnownPartitions = 4096

// sharedLookup is lookupKey, shared by the reads of the same key at once: a
// page polled by a large audience costs one lookup (one request per
// partition) per round, not one per reader. The lookup has a context of
// its own, so that a reader that leaves does not fail the others. A read
// that starts a lookup pays for its cache requests first (charge, with
// their count: a metadata request and one per partition); one that joins
// pays nothing. charge false: errRateLimited. A read that joined a lookup
// whose holders had not applied what this edge's feed had delivered when
// the read began (the lookup started earlier) asks again with its own.
func (e *Edge) sharedLookup(ctx context.Context, topic, key string, charge func(requests int) bool) (*foundKey, error) {
	seen := e.feedPosition(topic)
	s := &e.keyReads
	k := keyCallKey{topic, key}
	for fresh := false; ; fresh = true {
		s.mu.Lock()
		c := s.inflight[k]
		if c != nil && !fresh {
			e.metrics.keyReadsShared.Inc()
		} else {
			if !charge(1 + int(max(s.partitions[topic], 1))) {
				s.mu.Unlock()
				return nil, errRateLimited
			}
			c = e.startLookup(k, seen)
		}
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err != nil || fresh || c.at.covers(seen) {
			return c.found, c.err
		}
	}
}

// startLookup starts a lookup of k, with seen as its floors, for the reads
// that join it; the caller holds keyReads.mu.
func (e *Edge) startLookup(k keyCallKey, seen keyPosition) *keyCall {
	s := &e.keyReads
	c := &keyCall{done: make(chan struct{})}
	if s.inflight == nil {
		s.inflight = map[keyCallKey]*keyCall{}
	}
	s.inflight[k] = c // an older one in flight ends for the reads that joined it
	go func() {
		if e.holdKeyRead != nil {
			e.holdKeyRead()
		}
		lctx, cancel := context.WithTimeout(context.Background(), e.cfg.RequestTimeout)
		c.found, c.at, c.err = e.lookupKey(lctx, k.topic, []byte(k.key), seen)
		cancel()
		s.mu.Lock()
		if s.inflight[k] == c {
			delete(s.inflight, k)
		}
		if n := int32(len(c.at.offsets)); n > 0 {
			if s.partitions == nil || len(s.partitions) >= maxKnownPartitions {
				s.partitions = map[string]int32{}
			}
			s.partitions[k.topic] = n
		}
		s.mu.Unlock()
		close(c.done)
	}()
	return c
}

// lookupKey asks every partition of topic for key's latest record (a
// producer may place keys by any partitioner) and returns the newest one
// found (newestKey), its value inline or apart; nil when no partition
// holds the key. Every partition must answer: one that could not be asked
// may hold the newest record, so the read fails rather than pass an older
// one for current. Each request carries floors' offset for its partition
// (the edge's feed position as the lookup began, when of this epoch), so
// that no holder behind what a reader may already have seen answers. at is
// the positions of the holders that answered.
func (e *Edge) lookupKey(ctx context.Context, topic string, key []byte, floors keyPosition) (found *foundKey, at keyPosition, err error) {
	meta, err := e.requestMeta(ctx, topic)
	if err != nil {
		return nil, keyPosition{}, err
	}
	if floors.epoch != meta.Epoch || len(floors.offsets) != int(meta.Partitions) {
		floors.offsets = nil // of another epoch, or no feed: no floor
	}
	replies := make([]proto.KeyReply, meta.Partitions)
	errs := make([]error, meta.Partitions)
	sem := make(chan struct{}, maxKeyRequests)
	var wg sync.WaitGroup
	for p := range meta.Partitions {
		var floor int64
		if floors.offsets != nil {
			floor = floors.offsets[p]
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			replies[p], errs[p] = e.requestKey(ctx, topic, meta.Epoch, p, key, floor)
		})
	}
	wg.Wait()
	at = keyPosition{epoch: meta.Epoch, offsets: make([]int64, meta.Partitions)}
	for p := range replies {
		at.offsets[p] = replies[p].Next
	}
	if err := errors.Join(errs...); err != nil {
		return nil, at, err
	}
	i := newestKey(replies)
	if i < 0 {
		return nil, at, nil
	}
	return &foundKey{rec: replies[i].Record, epoch: meta.Epoch, partition: replies[i].Partition}, at, nil
}

// newestKey is the index of the reply that holds the key's current record:
// of those found, the one with the latest time; on equal times, the lowest
// partition. -1 when none is found.
func newestKey(replies []proto.KeyReply) int {
	best := -1
	for i := range replies {
		k := &replies[i]
		if !k.Found {
			continue
		}
		if best < 0 || k.Record.TimeMs > replies[best].Record.TimeMs ||
			k.Record.TimeMs == replies[best].Record.TimeMs && k.Partition < replies[best].Partition {
			best = i
		}
	}
	return best
}

// feedPosition is the position of the topic's running feed: what this
// edge may have delivered to a reader's own stream already (no offsets
// without a feed).
func (e *Edge) feedPosition(topic string) keyPosition {
	e.mu.Lock()
	f := e.feeds[topic]
	e.mu.Unlock()
	if f == nil {
		return keyPosition{}
	}
	select {
	case <-f.ready:
	default:
		return keyPosition{} // starting: it has delivered nothing yet
	}
	if f.err != nil {
		return keyPosition{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return keyPosition{epoch: f.progress.Epoch, offsets: slices.Clone(f.progress.Offsets)}
}

// requestKey asks partition p for key, again while its holders do not
// answer or answer NotOwner, until ctx ends; and again, for up to
// keyBehindBudget, while the holder that answers is behind floor.
func (e *Edge) requestKey(ctx context.Context, topic string, epoch uint32, p int32, key []byte, floor int64) (proto.KeyReply, error) {
	req := proto.AppendKeyRequest(nil, &proto.KeyRequest{Key: key, Floor: floor})
	var behindSince time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.PageTimeout)
		msg, err := e.cfg.NATS.RequestWithContext(rctx, e.subjects.State(topic, p), req)
		cancel()
		var k proto.KeyReply
		if err == nil {
			k, err = proto.DecodeKeyReply(msg.Data)
		}
		switch {
		case err == nil && k.Status == proto.StatusNotOwner:
			err = fmt.Errorf("key %s/%d: %w: %s", topic, p, errUnavailable, k.Error)
		case err == nil && k.Status != proto.StatusOK:
			return k, fmt.Errorf("key %s/%d: %s: %s", topic, p, k.Status, k.Error)
		case err == nil && (k.Epoch != epoch || k.Partition != p):
			return k, fmt.Errorf("key %s/%d: a reply of epoch %d, partition %d: %w", topic, p, k.Epoch, k.Partition, proto.ErrMalformed)
		case err == nil && k.Next < floor:
			// A holder behind what this edge delivered (a standby a moment
			// behind): its answer may be older than what a reader saw.
			e.metrics.keyRepliesBehind.Inc()
			if behindSince.IsZero() {
				behindSince = time.Now()
			}
			err = fmt.Errorf("key %s/%d: %w: the holder that answers is at %d, behind %d delivered", topic, p, errUnavailable, k.Next, floor)
			if time.Since(behindSince) > keyBehindBudget {
				return k, err
			}
		case err == nil:
			return k, nil
		default:
			err = fmt.Errorf("key %s/%d: %w: %w", topic, p, errUnavailable, err)
		}
		if !retryPause(ctx) {
			return k, err
		}
	}
}
