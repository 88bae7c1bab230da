package edge

import (
	"fmt"

	"github.com/ssekafka/ssekafka/edge/internal/hub"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/guard"
)

// RouteConfig is one sse-kafka route, as in Zilla's binding.
type RouteConfig struct {
	// Paths are the route's when[].path patterns: "{name}" captures (greedy,
	// may match "/"), "*" matches anything.
	Paths []string
	// Topic is the Kafka topic, a template.
	Topic string
	// TopicPattern is a regular expression (anchored at both ends) that a
	// topic made from a template must match, checked before any cache
	// request. Required when Topic has a ${params.x}: a route must not
	// serve every topic of the cluster to whoever asks. A topic made only
	// of literals and the guard's claims is named by the token's issuer
	// and needs none (as in Zilla).
	TopicPattern string
	// Filters: the fields of one filter are ANDed, the filters ORed. Empty: every record.
	Filters []FilterConfig
	// EventID is the id template: "${etag}" (default) or `["${base64(key)}","${etag}"]`.
	EventID string
	// Guarded names the guard (one) that verifies the route's clients and
	// the roles their tokens must grant, as Zilla's routes[].guarded.
	// Its expressions ${guarded['NAME'].identity} and
	// ${guarded['NAME'].attributes.x} may be used in the topic and filters.
	Guarded map[string][]string
	// Compression is the content codings the route's streams offer, as
	// Config.Compression; nil: the edge's.
	Compression []string
}

// FilterConfig matches a record by key and/or headers; values are templates.
type FilterConfig struct {
	Key     *string
	Headers map[string]string
}

// Route is a compiled RouteConfig.
type Route struct{ r *route.Route }

// CompileRoute validates and compiles a route. Every ${params.x} used must be
// captured by every path of the route; ${guarded['NAME']...} needs the route
// to be guarded by NAME.
func CompileRoute(rc RouteConfig) (*Route, error) {
	codings, err := parseCodings(rc.Compression)
	if err != nil {
		return nil, fmt.Errorf("route compression: %w", err)
	}
	c := route.Config{Paths: rc.Paths, Topic: rc.Topic, TopicPattern: rc.TopicPattern, EventID: rc.EventID, Guarded: rc.Guarded,
		Compression: codings}
	for _, f := range rc.Filters {
		c.Filters = append(c.Filters, route.FilterConfig{Key: f.Key, Headers: f.Headers})
	}
	r, err := route.Compile(c)
	if err != nil {
		return nil, err
	}
	return &Route{r}, nil
}

// KeyReadLimits bounds what per-key JSON reads cost the edge and the cache
// tier. Zero means the documented default; Off turns a limit off.
type KeyReadLimits struct {
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

// Authorization is one guard as routes use it: the guard and where a
// request carries its token (Zilla: sse.authorization.NAME.credentials).
type Authorization struct {
	Guard       *guard.Guard
	Credentials guard.Credentials
	// KeepOnKeyRemoval keeps a stream open when its signing key leaves the
	// guard's JWKS (until its expiry). Default false: the stream is closed.
	KeepOnKeyRemoval bool
}

// hubGuards is guards as the hub takes them (hub.Authorization has
// Authorization's fields, as keyread.Limits has KeyReadLimits').
func hubGuards(guards map[string]Authorization) map[string]hub.Authorization {
	if guards == nil {
		return nil
	}
	m := make(map[string]hub.Authorization, len(guards))
	for name, a := range guards {
		m[name] = hub.Authorization(a)
	}
	return m
}
