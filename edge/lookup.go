// Lookups of topics the edge does not know: a route with a topic pattern
// lets a client name any topic, and each name the edge has not seen costs
// the cache tier a metadata request. They are bounded by a rate per client
// address and per edge; answers are remembered briefly, a "no such topic"
// for at most unknownTTL so that a topic created meanwhile is soon served.

package edge

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
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

// topicLookups is the edge's record of topic lookups; mu is a leaf.
type topicLookups struct {
	mu    sync.Mutex
	edge  *rate.Limiter
	addrs map[netip.Prefix]*rate.Limiter
	names map[string]lookupAnswer
}

type lookupAnswer struct {
	found bool
	at    time.Time
}

// lookup verdicts
const (
	lookupFree     = iota // known: no lookup to bound
	lookupAsk             // unknown, within the rates: ask the cache tier
	lookupNotFound        // answered "no such topic" less than unknownTTL ago
	lookupRefused         // over a rate
)

// admitLookup decides whether a request for topic from r may cost a
// metadata request.
func (e *Edge) admitLookup(r *http.Request, topic string) int {
	e.mu.Lock()
	_, running := e.feeds[topic]
	e.mu.Unlock()
	if running {
		return lookupFree
	}
	l := &e.lookups
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.names[topic]; ok {
		switch {
		case a.found && now.Sub(a.at) < knownTTL:
			return lookupFree
		case !a.found && now.Sub(a.at) < unknownTTL:
			e.metrics.topicLookups.WithLabelValues("not_found_remembered").Inc()
			return lookupNotFound
		}
		delete(l.names, topic)
	}
	if l.edge == nil {
		l.edge = rate.NewLimiter(lookupEdgeRate, lookupEdgeBurst)
		l.addrs = map[netip.Prefix]*rate.Limiter{}
	}
	key := e.lookupAddr(r)
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
	if !al.AllowN(now, 1) || !l.edge.AllowN(now, 1) {
		e.metrics.topicLookups.WithLabelValues("refused").Inc()
		e.log.Warn("lookups of unknown topics over rate: refused", "client", key.String(), "topic", topic)
		return lookupRefused
	}
	e.metrics.topicLookups.WithLabelValues("asked").Inc()
	return lookupAsk
}

// lookupAddr is the address a request counts against: its client's
// behind a trusted proxy, else its peer's (an IPv6 /64 as one).
func (e *Edge) lookupAddr(r *http.Request) netip.Prefix {
	if peer, ok := e.acc.ForwardedPeer(r); ok {
		return accept.AddrKey(e.acc.ForwardedClient(peer, r.Header))
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Prefix{} // not TCP: one bucket for all
	}
	return accept.AddrKey(ap.Addr().Unmap().WithZone(""))
}

// lookupAnswered records the cache tier's answer for topic: found, or no
// such topic.
func (e *Edge) lookupAnswered(topic string, found bool) {
	l := &e.lookups
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.names == nil {
		l.names = map[string]lookupAnswer{}
	}
	if _, ok := l.names[topic]; !ok && len(l.names) >= maxLookupKeys {
		for k, a := range l.names {
			if !a.found || now.Sub(a.at) >= knownTTL {
				delete(l.names, k)
			}
		}
		if len(l.names) >= maxLookupKeys {
			clear(l.names)
		}
	}
	l.names[topic] = lookupAnswer{found: found, at: now}
}
