// Lookups of topics the edge does not know: a route with a topic pattern
// lets a client name any topic, and each name the edge has not seen costs
// the cache tier a metadata request. They are bounded by a rate per client
// address and per edge; answers are remembered briefly, a "no such topic"
// for at most unknownTTL so that a topic created meanwhile is soon served.

package hub

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/metrics"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
)

const (
	lookupAddrRate  = 10 // lookups a second per client address, after a burst of lookupAddrBurst
	lookupAddrBurst = 50
	lookupEdgeRate  = 100 // per edge, after a burst of lookupEdgeBurst
	lookupEdgeBurst = 500
	unknownTTL      = time.Second // how long "no such topic" is remembered
	knownTTL        = time.Minute // how long a topic that exists is
	maxLookupKeys   = 4096        // names, and addresses, remembered at most
)

// topicLookups is the edge's record of topic lookups: the rates under mu
// (a leaf), the answers in names (tier.Share: the oldest forgotten first).
type topicLookups struct {
	metrics *metrics.Edge
	log     *slog.Logger
	clock   tier.Clock

	mu    sync.Mutex
	edge  *rate.Limiter
	addrs map[netip.Prefix]*rate.Limiter
	names tier.Share[string, bool] // found, or no such topic
}

func newTopicLookups(m *metrics.Edge, log *slog.Logger, clock tier.Clock) *topicLookups {
	l := &topicLookups{metrics: m, log: log, clock: clock}
	l.names = tier.Share[string, bool]{
		Age: func(found bool, _ error) time.Duration {
			if found {
				return knownTTL
			}
			return unknownTTL
		},
		MaxCost: maxLookupKeys,
		Clock:   clock,
	}
	return l
}

// Lookup is a verdict of AdmitLookup.
type Lookup int

// Lookup verdicts.
const (
	LookupFree     Lookup = iota // known: no lookup to bound
	LookupAsk                    // unknown, within the rates: ask the cache tier
	LookupNotFound               // answered "no such topic" less than unknownTTL ago
	LookupRefused                // over a rate
)

// AdmitLookup decides whether a request for topic from r may cost a
// metadata request.
func (h *Hub) AdmitLookup(r *http.Request, topic string) Lookup {
	h.mu.Lock()
	_, running := h.feeds[topic]
	h.mu.Unlock()
	if running {
		return LookupFree
	}
	return h.lookups.admit(topic, func() netip.Prefix {
		// Its client's behind a trusted proxy, else its peer's (an IPv6 /64 as one).
		if peer, ok := h.acc.ForwardedPeer(r); ok {
			return accept.AddrKey(h.acc.ForwardedClient(peer, r.Header))
		}
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return netip.Prefix{} // not TCP: one bucket for all
		}
		return accept.AddrKey(ap.Addr().Unmap().WithZone(""))
	})
}

// admit decides whether a request for topic, not running here, from the
// address addr gives, may cost a metadata request.
func (l *topicLookups) admit(topic string, addr func() netip.Prefix) Lookup {
	if found, ok := l.names.Get(topic); ok {
		if found {
			return LookupFree
		}
		l.metrics.TopicLookups.WithLabelValues("not_found_remembered").Inc()
		return LookupNotFound
	}
	key := addr()
	if !l.allow(key) {
		l.metrics.TopicLookups.WithLabelValues("refused").Inc()
		l.log.Warn("lookups of unknown topics over rate: refused", "client", key.String(), "topic", topic)
		return LookupRefused
	}
	l.metrics.TopicLookups.WithLabelValues("asked").Inc()
	return LookupAsk
}

// allow takes a token of key's rate and of the edge's.
func (l *topicLookups) allow(key netip.Prefix) bool {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.edge == nil {
		l.edge = rate.NewLimiter(lookupEdgeRate, lookupEdgeBurst)
		l.addrs = map[netip.Prefix]*rate.Limiter{}
	}
	al := l.addrs[key]
	if al == nil {
		if len(l.addrs) >= maxLookupKeys {
			for k, v := range l.addrs { // forget the addresses with a full bucket
				if v.TokensAt(now) >= lookupAddrBurst {
					delete(l.addrs, k)
				}
			}
			if len(l.addrs) >= maxLookupKeys {
				clear(l.addrs)
			}
		}
		al = rate.NewLimiter(lookupAddrRate, lookupAddrBurst)
		l.addrs[key] = al
	}
	return al.AllowN(now, 1) && l.edge.AllowN(now, 1)
}

// answered records the cache tier's answer for topic: found, or no such
// topic.
func (l *topicLookups) answered(topic string, found bool) { l.names.Put(topic, found) }
