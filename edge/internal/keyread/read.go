// Per-key JSON reads (beyond Zilla's sse): a GET on a keyed route (one key
// filter) that accepts application/json and not text/event-stream gets the
// key's current value from the cache tier, with an ETag and conditional
// requests, instead of a stream. Guards and CORS apply as for streams.

package keyread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// WantsJSON reports whether r asks for a JSON read: its Accept names
// application/json (with a q above 0) and not text/event-stream.
func WantsJSON(r *http.Request) bool {
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

// read answers a JSON read of topic under filters.
func (k *Reads) read(w http.ResponseWriter, r *http.Request, topic string, filters []route.Filter, offer []compress.Encoding) {
	if offer == nil {
		offer = k.cfg.Compression
	}
	if len(filters) != 1 || filters[0].Key == nil {
		k.metrics.KeyReads.WithLabelValues("not_keyed").Inc()
		k.fail(w, http.StatusNotAcceptable, "application/json is served on routes with one key filter; this route is a stream: accept text/event-stream")
		return
	}
	reader := k.readerOf(r)
	defer reader.release()
	if ok, wait := reader.allowRead(); !ok {
		k.refuse(w, reader, "rate_limited", errRateLimited, wait)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), k.cfg.RequestTimeout)
	defer cancel()
	found, held, err := k.findValue(ctx, reader, topic, *filters[0].Key)
	if held != nil {
		defer k.releaseValue(held)
	}
	switch {
	case errors.Is(err, tier.ErrTopicNotFound):
		k.metrics.KeyReads.WithLabelValues("not_found").Inc()
		k.fail(w, http.StatusNotFound, "no such topic")
		return
	case errors.Is(err, errRateLimited):
		k.refuse(w, reader, "rate_limited", err, time.Second)
		return
	case errors.Is(err, errKeyReadsBusy):
		k.refuse(w, reader, "busy", err, time.Second)
		return
	case err != nil:
		k.metrics.KeyReads.WithLabelValues("unavailable").Inc()
		k.log.Warn("key read", "topic", topic, "err", err)
		w.Header().Set("Retry-After", "1")
		k.fail(w, http.StatusServiceUnavailable, "cache tier unavailable")
		return
	case found == nil || !route.Matches(filters, &found.rec):
		k.metrics.KeyReads.WithLabelValues("not_found").Inc()
		k.fail(w, http.StatusNotFound, "no such key")
		return
	}
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Expose-Headers", "ETag") // a page may send it back in If-None-Match
	}
	// The coding is chosen first: a coded body is another representation,
	// so its ETag is weak (RFC 9110 8.8.3; noneMatch compares weakly).
	enc := coding(r, len(found.rec.Value), offer)
	etag := found.entityTag()
	if enc != compress.Identity {
		etag = "W/" + etag
	}
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept") // beside CORS's Vary: Origin
	if offersCoding(offer) {
		h.Add("Vary", "Accept-Encoding")
	}
	if t := found.rec.TimeMs; t > 0 {
		h.Set("Last-Modified", time.UnixMilli(t).UTC().Format(http.TimeFormat))
	}
	if noneMatch(r.Header.Values("If-None-Match"), strings.TrimPrefix(etag, "W/")) { // weak comparison
		k.metrics.KeyReads.WithLabelValues("not_modified").Inc()
		w.WriteHeader(http.StatusNotModified)
		return
	}
	k.metrics.KeyReads.WithLabelValues("ok").Inc()
	if json.Valid(found.rec.Value) {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "application/octet-stream") // a value that is not JSON is not called JSON
	}
	if enc != compress.Identity {
		h.Set("Content-Encoding", enc.String())
	}
	if r.Method == http.MethodHead {
		// No body, so nothing is compressed (a HEAD costs no compressor);
		// its coded length is not known: no Content-Length (RFC 9110 9.3.2).
		if enc == compress.Identity {
			h.Set("Content-Length", strconv.Itoa(len(found.rec.Value)))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	body := found.rec.Value
	if enc != compress.Identity {
		body = held.body(enc, k.metrics)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if err := k.writeValue(w, body); err != nil {
		k.metrics.KeyReadsCutOff.Inc()
		k.log.Warn("key read cut off", "topic", topic, "client", reader.String(), "bytes", len(found.rec.Value), "err", err)
	}
}

// findValue looks key up and holds its whole record (shared with the
// other reads of it in flight; the caller releases held), counting its
// value against the reader's address. found is nil when no partition
// holds the key.
func (k *Reads) findValue(ctx context.Context, reader *keyReader, topic, key string) (found *foundKey, held *heldValue, err error) {
	for attempt := 1; ; attempt++ {
		found, err = k.sharedLookup(ctx, topic, key, reader.chargeRequests)
		if err != nil || found == nil {
			return nil, nil, err
		}
		if !reader.reserve(found.size()) {
			return nil, nil, errKeyReadsBusy
		}
		held, err = k.holdValue(ctx, topic, found)
		if errors.Is(err, tier.ErrValueGone) && attempt < keyReadAttempts {
			reader.release()
			k.metrics.ValuesGone.Inc()
			continue // superseded meanwhile: read the newer record
		}
		if err != nil {
			return nil, nil, err
		}
		return &foundKey{rec: held.rec, epoch: found.epoch, partition: found.partition}, held, nil
	}
}

// refuse answers a JSON read refused by a bound: 429 past a rate,
// 503 past the bytes in flight, with Retry-After; counted and logged
// (rate-limited) with the client address.
func (k *Reads) refuse(w http.ResponseWriter, reader *keyReader, result string, err error, wait time.Duration) {
	k.metrics.KeyReads.WithLabelValues(result).Inc()
	k.log.Warn("key read refused", "reason", result, "client", reader.String(), "err", err)
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

type keyCallKey struct{ topic, key string }

// Position is a position on a topic: its epoch and the next offset of
// each partition (nil: none).
type Position struct {
	Epoch   uint32
	Offsets []int64
}

// covers reports whether answers from holders at p reflect everything
// seen holds: true when nothing was seen.
func (p Position) covers(seen Position) bool {
	if seen.Offsets == nil {
		return true
	}
	if p.Epoch != seen.Epoch || len(p.Offsets) != len(seen.Offsets) {
		return false
	}
	for i, o := range seen.Offsets {
		if p.Offsets[i] < o {
			return false
		}
	}
	return true
}

// Reads answers JSON reads: the lookups in flight (shared by the reads
// of a key at once), the partition count last seen per topic (what a new
// lookup will cost the cache tier), the values held and what each client
// address's reads hold and may start. lookups.mu comes before partitions.mu and
// keyReadAddrs.mu (a new lookup is charged under it), and nothing else.
type Reads struct {
	tier       Tier
	cfg        *Config
	metrics    *metrics.Edge
	log        *slog.Logger
	clock      tier.Clock
	clientKey  func(*http.Request) netip.Prefix       // the address a read counts against (accept.Server.ClientKey)
	positionOf func(topic string) Position            // what the edge may have delivered of topic
	fail       func(http.ResponseWriter, int, string) // a refusal, counted as the edge's

	lookups    tier.Share[keyCallKey, keyLookup] // in flight only
	partitions tier.Share[string, int32]         // answers only: each topic's count, the oldest forgotten first
	addrs      keyReadAddrs
	values     valueShare
}

// keyLookup is what a lookup found, and where its holders stood.
type keyLookup struct {
	found *foundKey // read only
	at    Position  // the positions of the holders that answered
}

// New makes the key reads of an edge.
func New(cfg Config) *Reads {
	c := cfg
	return &Reads{
		tier: cfg.Tier, cfg: &c, metrics: cfg.Metrics, log: cfg.Log, clock: cfg.Clock, clientKey: cfg.ClientKey,
		positionOf: cfg.PositionOf,
		fail:       cfg.Fail,
		partitions: tier.Share[string, int32]{
			Age:     func(int32, error) time.Duration { return knownPartitionsAge },
			MaxCost: maxKnownPartitions,
			Clock:   cfg.Clock,
		},
	}
}

// maxKnownPartitions bounds the topics whose partition count is kept, for
// up to knownPartitionsAge (a topic's count changes rarely).
const (
	maxKnownPartitions = 4096
	knownPartitionsAge = time.Hour
)

// sharedLookup is lookupKey, shared by the reads of the same key at once: a
// page polled by a large audience costs one lookup (one request per
// partition) per round, not one per reader. The lookup has a context of
// its own, so that a reader that leaves does not fail the others. A read
// that starts a lookup pays for its cache requests first (charge, with
// their count: a metadata request and one per partition); one that joins
// pays nothing. charge false: errRateLimited. A read that joined a lookup
// whose holders had not applied what this edge's feed had delivered when
// the read began (the lookup started earlier) asks again with its own.
func (k *Reads) sharedLookup(ctx context.Context, topic, key string, charge func(requests int) bool) (*foundKey, error) {
	seen := k.positionOf(topic)
	ck := keyCallKey{topic, key}
	for fresh := false; ; fresh = true {
		l, _, err := k.lookups.Do(ctx, ck, tier.Ask[keyLookup]{
			Fresh:  fresh, // an older one in flight ends for the reads that joined it
			Joined: k.metrics.KeyReadsShared.Inc,
			Admit: func() error {
				if !charge(1 + int(max(k.partitionsOf(topic), 1))) {
					return errRateLimited
				}
				return nil
			},
			Do: func(ctx context.Context) (keyLookup, error) { return k.lookup(ctx, ck, seen) },
		})
		if err != nil || fresh || l.at.covers(seen) {
			return l.found, err
		}
	}
}

// lookup looks ck up, with seen as its floors, for the reads that join it,
// and notes the topic's partition count.
func (k *Reads) lookup(ctx context.Context, ck keyCallKey, seen Position) (keyLookup, error) {
	lctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout)
	defer cancel()
	found, at, err := k.lookupKey(lctx, ck.topic, []byte(ck.key), seen)
	if n := int32(len(at.Offsets)); n > 0 {
		k.partitions.Put(ck.topic, n)
	}
	return keyLookup{found, at}, err
}

// partitionsOf is topic's partition count as last seen (0: not seen).
func (k *Reads) partitionsOf(topic string) int32 {
	n, _ := k.partitions.Get(topic)
	return n
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
func (k *Reads) lookupKey(ctx context.Context, topic string, key []byte, floors Position) (found *foundKey, at Position, err error) {
	meta, err := k.tier.Meta(ctx, topic)
	if err != nil {
		return nil, Position{}, err
	}
	if floors.Epoch != meta.Epoch || len(floors.Offsets) != int(meta.Partitions) {
		floors.Offsets = nil // of another epoch, or no feed: no floor
	}
	replies := make([]proto.KeyReply, meta.Partitions)
	errs := make([]error, meta.Partitions)
	sem := make(chan struct{}, maxKeyRequests)
	var wg sync.WaitGroup
	for p := range meta.Partitions {
		var floor int64
		if floors.Offsets != nil {
			floor = floors.Offsets[p]
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			replies[p], errs[p] = k.tier.Key(ctx, topic, meta.Epoch, p, key, floor)
		})
	}
	wg.Wait()
	at = Position{Epoch: meta.Epoch, Offsets: make([]int64, meta.Partitions)}
	for p := range replies {
		at.Offsets[p] = replies[p].Next
		if floors.Offsets != nil && errs[p] == nil {
			// An answer behind its floor came without one (a cache node of
			// the previous release refuses floors: tier.Client.Key): it
			// cannot say more, and asking again would not either.
			at.Offsets[p] = max(at.Offsets[p], floors.Offsets[p])
		}
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

// compressMin is the smallest value sent compressed: below it the framing
// and the work gain little. compressMax is the largest: a value's coded
// body lives only while reads of it are in flight, so each read of a
// large value may compress it again (about 8 ms a MiB here), and a
// client asking again and again must not cost a core.
const (
	compressMin = 1 << 10
	compressMax = 1 << 20
)

// offersCoding reports whether offer has a coding besides identity.
func offersCoding(offer []compress.Encoding) bool {
	for _, e := range offer {
		if e != compress.Identity {
			return true
		}
	}
	return false
}

// coding is the coding of offer a value of n bytes is sent in to r.
func coding(r *http.Request, n int, offer []compress.Encoding) compress.Encoding {
	if n < compressMin || n > compressMax || !offersCoding(offer) {
		return compress.Identity
	}
	enc, _ := compress.Negotiate(r.Header.Values("Accept-Encoding"), offer)
	return enc
}
