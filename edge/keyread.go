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
	ctx, cancel := context.WithTimeout(r.Context(), e.cfg.RequestTimeout)
	defer cancel()
	found, err := e.sharedLookup(ctx, topic, *filters[0].key)
	switch {
	case errors.Is(err, errTopicNotFound):
		e.metrics.keyReads.WithLabelValues("not_found").Inc()
		e.fail(w, http.StatusNotFound, "no such topic")
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
	_, _ = w.Write(found.rec.Value)
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

// keyCall is one lookup of a key, shared by the reads that ask for it
// while it is in flight.
type keyCall struct {
	done  chan struct{} // closed once found and err are set
	found *foundKey     // read only, once done
	err   error
}

type keyCallKey struct{ topic, key string }

// keyReads are the lookups in flight. mu is a leaf.
type keyReads struct {
	mu       sync.Mutex
	inflight map[keyCallKey]*keyCall
}

// sharedLookup is lookupKey, shared by the reads of the same key at once: a
// page polled by a large audience costs one lookup (one request per
// partition, one copy of a value read in parts) per round, not one per
// reader. The lookup has a context of its own, so that a reader that
// leaves does not fail the others.
func (e *Edge) sharedLookup(ctx context.Context, topic, key string) (*foundKey, error) {
	s := &e.keyReads
	k := keyCallKey{topic, key}
	s.mu.Lock()
	c := s.inflight[k]
	if c != nil {
		e.metrics.keyReadsShared.Inc()
	} else {
		c = &keyCall{done: make(chan struct{})}
		if s.inflight == nil {
			s.inflight = map[keyCallKey]*keyCall{}
		}
		s.inflight[k] = c
		go func() {
			if e.holdKeyRead != nil {
				e.holdKeyRead()
			}
			lctx, cancel := context.WithTimeout(context.Background(), e.cfg.RequestTimeout)
			c.found, c.err = e.lookupKey(lctx, topic, []byte(key))
			cancel()
			s.mu.Lock()
			delete(s.inflight, k)
			s.mu.Unlock()
			close(c.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-c.done:
		return c.found, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lookupKey asks every partition of topic for key's latest record (a
// producer may place keys by any partitioner) and returns the newest one
// found, with its value; nil when no partition holds the key.
func (e *Edge) lookupKey(ctx context.Context, topic string, key []byte) (*foundKey, error) {
	meta, err := e.requestMeta(ctx, topic)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		replies := make([]proto.KeyReply, meta.Partitions)
		errs := make([]error, meta.Partitions)
		sem := make(chan struct{}, maxKeyRequests)
		var wg sync.WaitGroup
		for p := range meta.Partitions {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				replies[p], errs[p] = e.requestKey(ctx, topic, meta.Epoch, p, key)
			})
		}
		wg.Wait()
		var best *proto.KeyReply
		for i := range replies {
			if k := &replies[i]; errs[i] == nil && k.Found && (best == nil || k.Record.TimeMs > best.Record.TimeMs) {
				best = k
			}
		}
		if best == nil {
			return nil, errors.Join(errs...) // nil: no partition has it
		}
		rec := best.Record
		if rec.Apart {
			whole, err := e.requestApart(ctx, topic, meta.Epoch, best.Partition, &rec)
			if errors.Is(err, errValueGone) && attempt < keyReadAttempts {
				e.metrics.valuesGone.Inc()
				continue // superseded meanwhile: read the newer record
			}
			if err != nil {
				return nil, err
			}
			rec = whole
		}
		return &foundKey{rec: rec, epoch: meta.Epoch, partition: best.Partition}, nil
	}
}

// requestKey asks partition p for key, again while its holders do not
// answer or answer NotOwner, until ctx ends.
func (e *Edge) requestKey(ctx context.Context, topic string, epoch uint32, p int32, key []byte) (proto.KeyReply, error) {
	req := proto.AppendKeyRequest(nil, &proto.KeyRequest{Key: key})
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
