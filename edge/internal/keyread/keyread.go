// Package keyread answers per-key JSON reads (beyond Zilla's sse): a GET
// on a keyed route that accepts application/json gets the key's current
// value, with an ETag, from one lookup shared by every read of the key at
// once, bounded per client address and per edge (limits.go).
package keyread

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/proto"
)

// Tier is what key reads ask of the cache tier.
type Tier interface {
	// Meta is the topic's metadata (tier.ErrTopicNotFound: no such topic).
	Meta(ctx context.Context, topic string) (proto.Meta, error)
	// Key asks partition p's holder for key's latest record, from a holder
	// at floor or later (tier.Client.Key).
	Key(ctx context.Context, topic string, epoch uint32, p int32, key []byte, floor int64) (proto.KeyReply, error)
	// Apart reads the record stub stands for (one sent apart) in parts.
	Apart(ctx context.Context, topic string, epoch uint32, p int32, stub *proto.Record) (proto.Record, error)
}

// Config is what key reads need of the edge.
type Config struct {
	Tier           Tier
	Limits         Limits
	RequestTimeout time.Duration // one request to the cache tier
	WriteTimeout   time.Duration // one write of a value
	Metrics        *metrics.Edge
	Log            *slog.Logger
	Clock          tier.Clock
	ClientKey      func(*http.Request) netip.Prefix       // the address a read counts against (accept.Server.ClientKey)
	PositionOf     func(topic string) Position            // what the edge's feed of topic may have delivered (zero: none)
	Fail           func(http.ResponseWriter, int, string) // a refusal, counted as the edge's
	// Compression is the content codings offered, in order of preference:
	// a value of compressMin to compressMax bytes is sent in the one negotiated
	// from Accept-Encoding, compressed once per held value and coding.
	Compression []compress.Encoding
}

// Read answers a JSON read of the one key filters name, in a coding of
// offer (nil: Config.Compression).
func (k *Reads) Read(w http.ResponseWriter, r *http.Request, topic string, filters []route.Filter, offer []compress.Encoding) {
	k.read(w, r, topic, filters, offer)
}

// HeldBytes is the bytes of values held for reads in flight, each once.
func (k *Reads) HeldBytes() int { return k.values.heldBytes() }

// ValuesHeld is how many values are held for reads being answered, and
// how many references they have in all (one per read writing one, and one
// per read in parts under way).
func (k *Reads) ValuesHeld() (values, refs int) {
	s := &k.values
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.held {
		values++
		refs += v.refs
	}
	return values, refs
}

// BytesOf is the bytes the reads in flight from a client address
// (accept.AddrKey) count against its bound.
func (k *Reads) BytesOf(addr netip.Prefix) int {
	s := &k.addrs
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.byAddr[addr]; st != nil {
		return st.bytes
	}
	return 0
}
