// What JSON reads may cost (issue 20): values shared by the reads that
// write them at once, bytes in flight bounded per edge and per client
// address, reads and the cache requests they cause rate-limited per
// address, and a value written at a minimum rate or cut off.

package keyread

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/internal/confcheck"
	"github.com/ssekafka/ssekafka/proto"
)

// Limits bounds what per-key JSON reads cost the edge and the cache
// tier. Zero means the documented default; Off turns a limit off.
type Limits struct {
	// MinRate is the slowest a value is written to a reader, in bytes a
	// second: the whole value must be written within Config.WriteTimeout
	// plus its size at this rate (and each write within WriteTimeout), or
	// the connection is closed. Default 64 KiB/s; Off: each write within
	// WriteTimeout only.
	MinRate int
	// MaxBytes bounds the values held for JSON reads being answered, each
	// counted once however many reads share it; a read that would hold
	// more is answered 503 with Retry-After. Default 256 MiB; Off: none.
	MaxBytes int
	// MaxBytesPerIP bounds, per client address (the forwarded one behind
	// a trusted proxy; an IPv6 /64 counts as one), the bytes of the values
	// its reads in flight are sent, each read counting its value; past it
	// 503 with Retry-After. Default 64 MiB; Off: none.
	MaxBytesPerIP int
	// RatePerIP is the JSON reads a second one client address may start,
	// in bursts of up to twice as many; past it 429 with Retry-After.
	// Default 100; Off: none.
	RatePerIP float64
	// CacheRequestsPerIP is the cache-tier requests a second one client
	// address's JSON reads may cause (a read that starts a lookup costs a
	// metadata request and one per partition, at most the burst; one that
	// joins a lookup in flight costs none), in bursts of up to twice as
	// many; past it 429 with Retry-After. Default 2000; Off: none.
	CacheRequestsPerIP float64
}

// Why a JSON read is refused before it is answered.
var (
	errRateLimited  = errors.New("too many key reads from this address")
	errKeyReadsBusy = errors.New("key reads in flight at their bound")
)

// burstOf is the burst of a limiter of r a second: two seconds' worth, at least 1.
func burstOf(r float64) int { return int(max(1, min(2*r, 1<<30))) }

// readerAddr is what JSON reads from one client address hold and may
// start. Guarded by keyReadAddrs.mu.
type readerAddr struct {
	reads, requests *rate.Limiter // nil: no limit
	bytes           int           // bytes of the values its reads in flight are sent
}

// keyReadAddrs are the client addresses with JSON reads lately. mu is a leaf.
type keyReadAddrs struct {
	mu     sync.Mutex
	byAddr map[netip.Prefix]*readerAddr
	swept  time.Time
}

// keySweepEvery is how often addresses with nothing in flight and full
// buckets are forgotten.
const keySweepEvery = time.Minute

// keyReader is one JSON read's client address; a read from no TCP address
// (a Unix socket) has none, and no limit per address.
type keyReader struct {
	k     *Reads
	addr  netip.Prefix
	keyed bool
	held  int // bytes this read counts against its address
}

// readerOf is r's client address: its peer's, or behind a trusted proxy
// the forwarded one (accept.Server.ClientKey).
func (k *Reads) readerOf(r *http.Request) *keyReader {
	kr := &keyReader{k: k}
	if key := k.clientKey(r); key.IsValid() { // not for a peer that is not TCP
		kr.addr, kr.keyed = key, true
	}
	return kr
}

// stateLocked returns addr's state, made on first use, and forgets idle
// addresses once a keySweepEvery; the caller holds mu.
func (s *keyReadAddrs) stateLocked(addr netip.Prefix, lim *Limits, now time.Time) *readerAddr {
	if now.Sub(s.swept) > keySweepEvery {
		s.swept = now
		for a, st := range s.byAddr {
			if st.bytes == 0 && full(st.reads, now) && full(st.requests, now) {
				delete(s.byAddr, a)
			}
		}
	}
	st := s.byAddr[addr]
	if st == nil {
		st = &readerAddr{}
		if lim.RatePerIP != confcheck.Off {
			st.reads = rate.NewLimiter(rate.Limit(lim.RatePerIP), burstOf(lim.RatePerIP))
		}
		if lim.CacheRequestsPerIP != confcheck.Off {
			st.requests = rate.NewLimiter(rate.Limit(lim.CacheRequestsPerIP), burstOf(lim.CacheRequestsPerIP))
		}
		if s.byAddr == nil {
			s.byAddr = map[netip.Prefix]*readerAddr{}
		}
		s.byAddr[addr] = st
	}
	return st
}

func full(l *rate.Limiter, now time.Time) bool {
	return l == nil || l.TokensAt(now) >= float64(l.Burst())
}

// allowRead takes a token of the address's read rate; false with the wait
// before the next one.
func (kr *keyReader) allowRead() (bool, time.Duration) {
	if !kr.keyed || kr.k.cfg.Limits.RatePerIP == confcheck.Off {
		return true, 0
	}
	s := &kr.k.addrs
	now := kr.k.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.stateLocked(kr.addr, &kr.k.cfg.Limits, now).reads
	if l.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration(float64(time.Second) / float64(l.Limit()))
}

// chargeRequests takes n tokens (at most the burst) of the address's
// cache-request rate, and reports whether it could.
func (kr *keyReader) chargeRequests(n int) bool {
	if !kr.keyed || kr.k.cfg.Limits.CacheRequestsPerIP == confcheck.Off {
		return true
	}
	s := &kr.k.addrs
	now := kr.k.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.stateLocked(kr.addr, &kr.k.cfg.Limits, now).requests
	return l.AllowN(now, min(n, l.Burst()))
}

// reserve counts size bytes against the address's MaxBytesPerIP, and
// reports whether they fit; release gives them back.
func (kr *keyReader) reserve(size int) bool {
	max := kr.k.cfg.Limits.MaxBytesPerIP
	if !kr.keyed || max == confcheck.Off {
		return true
	}
	s := &kr.k.addrs
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stateLocked(kr.addr, &kr.k.cfg.Limits, kr.k.clock.Now())
	if st.bytes > 0 && st.bytes+size > max {
		return false // a value larger than the bound alone is still served
	}
	st.bytes += size
	kr.held += size
	return true
}

func (kr *keyReader) release() {
	if kr.held == 0 {
		return
	}
	s := &kr.k.addrs
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.byAddr[kr.addr]; st != nil {
		st.bytes -= kr.held
	}
	kr.held = 0
}

// valueKey names one record of a topic.
type valueKey struct {
	topic     string
	epoch     uint32
	partition int32
	offset    int64
}

// heldValue is a whole record that JSON reads are answering with, shared
// by every read of it at once: one buffer however many readers.
type heldValue struct {
	key   valueKey
	ready chan struct{} // closed once rec or err is set
	rec   proto.Record
	err   error
	size  int // counted in valueShare.bytes while refs > 0
	refs  int // guarded by valueShare.mu

	bodyMu sync.Mutex
	bodies [3][]byte // per compress.Encoding: the value as a whole body in it, made once (body)
}

// body is the value as a whole response body in coding enc (a gzip member,
// zstd frames), compressed once for every read that holds it.
func (v *heldValue) body(enc compress.Encoding, m *metrics.Edge) []byte {
	if int(enc) >= len(v.bodies) {
		return v.rec.Value
	}
	v.bodyMu.Lock()
	defer v.bodyMu.Unlock()
	if b := v.bodies[enc]; b != nil {
		return b
	}
	ch := compress.Compress(enc, v.rec.Value)
	s := compress.NewStream(enc)
	b := s.End(s.Append(make([]byte, 0, len(ch.Data)+compress.EndLen), ch))
	if m != nil && m.CompressedRaw != nil {
		m.CompressedRaw.WithLabelValues(enc.String()).Add(float64(ch.Len))
		m.CompressedWire.WithLabelValues(enc.String()).Add(float64(len(b)))
	}
	v.bodies[enc] = b
	return b
}

// valueShare holds the values JSON reads are answering with. mu is a leaf.
type valueShare struct {
	mu    sync.Mutex
	held  map[valueKey]*heldValue
	bytes int
}

// holdValue returns found's whole record, shared with every read of it in
// flight, with a reference the caller gives back by releaseValue. A record
// apart is read in parts once for all of them, on a goroutine of its own
// (a reader that leaves fails no other); errValueGone when it was
// superseded meanwhile. errKeyReadsBusy when a value not held yet would
// pass MaxBytes.
func (k *Reads) holdValue(ctx context.Context, topic string, found *foundKey) (*heldValue, error) {
	vk := valueKey{topic, found.epoch, found.partition, found.rec.Offset}
	s := &k.values
	s.mu.Lock()
	v := s.held[vk]
	if v != nil {
		v.refs++
		s.mu.Unlock()
		k.metrics.KeyValuesShared.Inc()
	} else {
		size := found.size()
		if max := k.cfg.Limits.MaxBytes; max != confcheck.Off && s.bytes > 0 && s.bytes+size > max {
			s.mu.Unlock()
			return nil, errKeyReadsBusy
		}
		v = &heldValue{key: vk, ready: make(chan struct{}), size: size, refs: 1}
		s.bytes += size
		if s.held == nil {
			s.held = map[valueKey]*heldValue{}
		}
		s.held[vk] = v
		if !found.rec.Apart {
			v.rec = found.rec
			close(v.ready)
			s.mu.Unlock()
			return v, nil
		}
		v.refs++ // the reader's below
		s.mu.Unlock()
		go func() {
			rctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout)
			stub := found.rec
			v.rec, v.err = k.tier.Apart(rctx, topic, found.epoch, found.partition, &stub)
			cancel()
			if v.err != nil {
				s.mu.Lock()
				if s.held[vk] == v {
					delete(s.held, vk) // the next read asks again
				}
				s.mu.Unlock()
			}
			close(v.ready)
			k.releaseValue(v)
		}()
	}
	select {
	case <-v.ready:
		if v.err != nil {
			k.releaseValue(v)
			return nil, v.err
		}
		return v, nil
	case <-ctx.Done():
		k.releaseValue(v)
		return nil, ctx.Err()
	}
}

// releaseValue gives back a reference to v; the last one lets it go.
func (k *Reads) releaseValue(v *heldValue) {
	s := &k.values
	s.mu.Lock()
	defer s.mu.Unlock()
	v.refs--
	if v.refs > 0 {
		return
	}
	s.bytes -= v.size
	if s.held[v.key] == v {
		delete(s.held, v.key)
	}
}

// heldBytes is the bytes of the values held for JSON reads.
func (s *valueShare) heldBytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// size is what found's value counts for against the bounds: its length,
// inline or apart.
func (f *foundKey) size() int {
	if f.rec.Apart {
		return f.rec.ValueLen
	}
	return len(f.rec.Value)
}

// keyWriteChunk is how much of a value is written under one write deadline.
const keyWriteChunk = 64 << 10

// writeValue writes v as a JSON read's body: each chunk within
// WriteTimeout, the whole within WriteTimeout plus its size at
// KeyReads.MinRate; a reader slower than that (or one that never reads) gets
// an error, and net/http closes its connection.
func (k *Reads) writeValue(w http.ResponseWriter, v []byte) error {
	rc := http.NewResponseController(w)
	var end time.Time
	if rate := k.cfg.Limits.MinRate; rate != confcheck.Off {
		end = time.Now().Add(k.cfg.WriteTimeout + time.Duration(float64(len(v))/float64(rate)*float64(time.Second)))
	}
	deadline := func() time.Time {
		d := time.Now().Add(k.cfg.WriteTimeout)
		if !end.IsZero() && end.Before(d) {
			d = end
		}
		return d
	}
	for off := 0; off < len(v); {
		n := min(len(v)-off, keyWriteChunk)
		if err := rc.SetWriteDeadline(deadline()); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := w.Write(v[off : off+n]); err != nil {
			return err
		}
		off += n
	}
	_ = rc.SetWriteDeadline(deadline())
	err := rc.Flush() // what net/http buffered, under the deadline too
	_ = rc.SetWriteDeadline(time.Time{})
	if errors.Is(err, http.ErrNotSupported) {
		err = nil
	}
	return err
}

// retryAfter sets Retry-After to d in whole seconds, at least 1.
func retryAfter(h http.Header, d time.Duration) {
	h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
}

func (kr *keyReader) String() string {
	if !kr.keyed {
		return "local"
	}
	return kr.addr.String()
}
