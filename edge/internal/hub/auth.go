// Authorization of guarded routes: a request is verified before any cache
// request, and its stream is tracked until its token's expiry (renew.go).

package hub

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/guard"
)

// Authorization is one guard as routes use it: the guard and where a
// request carries its token (Zilla: sse.authorization.NAME.credentials).
type Authorization struct {
	Guard       *guard.Guard
	Credentials guard.Credentials
	// KeepOnKeyRemoval keeps a stream open when its signing key leaves the
	// guard's JWKS (until its expiry). Default false: the stream is closed.
	KeepOnKeyRemoval bool
}

type authMetrics struct {
	refusals                      *prometheus.CounterVec
	renewals                      *prometheus.CounterVec
	challenges, expired, keyEnded prometheus.Counter
	verified                      prometheus.Counter
	unsealed                      prometheus.Counter
	tracked                       prometheus.Gauge
}

func newAuthMetrics(reg prometheus.Registerer) *authMetrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: name, Help: help})
	}
	return &authMetrics{
		refusals: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "auth_refusals_total",
			Help: "Requests to guarded routes refused (401/403), by guard and reason."}, []string{"guard", "reason"}),
		renewals: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "renewals_total",
			Help: "Renewal POSTs answered, by status (204, 400, 401, 403, 404, 503)."}, []string{"status"}),
		verified: c("auth_verified_total", "Tokens verified for new streams."),
		unsealed: c("renewal_messages_unsealed_total",
			"Renewal messages over NATS dropped: a request not sealed for this edge, or an answer not sealed by the holding edge (forged)."),
		challenges: c("challenges_total", "event:challenge sent to streams whose token nears its expiry."),
		expired:    c("streams_expired_total", "Streams closed at their token's expiry."),
		keyEnded:   c("streams_key_removed_total", "Streams closed because their signing key left the guard's JWKS."),
		tracked:    f.NewGauge(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "guarded_streams", Help: "Guarded streams being tracked to their expiry."}),
	}
}

// sessionKey holds a verified stream's session in its request's context.
type sessionKey struct{}

func sessionFrom(ctx context.Context) *guard.Session {
	s, _ := ctx.Value(sessionKey{}).(*guard.Session)
	return s
}

// authorize verifies a request to a guarded route and puts the session's
// identity and attributes into params. It answers the request itself
// (401 or 403) when it returns false.
func (a *authority) authorize(w http.ResponseWriter, r *http.Request, rt *route.Route, params route.Context) (*guard.Session, bool) {
	g := a.e.cfg.Guards[rt.Guard()]
	s, err := a.verify(r.Context(), r, g, rt, g.Credentials.Token)
	if err != nil {
		a.refuseAuth(w, r, rt.Guard(), err)
		return nil, false
	}
	if !s.Expires.After(time.Now()) {
		// Within the guard's leeway, but a stream must not start past its
		// token's expiry: it would be closed at once, and come back again.
		a.refuseAuth(w, r, rt.Guard(), &guard.Refusal{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: "expired"})
		return nil, false
	}
	params[route.GuardedKey(rt.Guard(), "identity")] = s.Identity
	for k, v := range s.Attributes {
		params[route.GuardedKey(rt.Guard(), "attributes."+k)] = v
	}
	for _, k := range rt.Claims() {
		if _, ok := params[k]; !ok {
			// A missing claim is not the empty value: that would be a
			// filter on "" (someone else's records, maybe).
			a.refuseAuth(w, r, rt.Guard(), &guard.Refusal{Status: http.StatusForbidden, Code: "insufficient_scope", Reason: "claim missing for " + k})
			return nil, false
		}
	}
	return s, true
}

// verify finds the token with find and verifies it for route.
func (a *authority) verify(ctx context.Context, r *http.Request, g Authorization, rt *route.Route, find func(*http.Request) (string, error)) (*guard.Session, error) {
	token, err := find(r)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, &guard.Refusal{Status: http.StatusUnauthorized, Reason: "no credentials"}
	}
	s, err := g.Guard.Verify(ctx, token, rt.Roles())
	if err == nil {
		a.m.verified.Inc()
	}
	return s, err
}

// refuseAuth answers a request its guard refused, counts it and logs it (without the token).
func (a *authority) refuseAuth(w http.ResponseWriter, r *http.Request, guardName string, err error) {
	e := a.e
	var ref *guard.Refusal
	if !errors.As(err, &ref) {
		ref = &guard.Refusal{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: "invalid token"}
	}
	a.m.refusals.WithLabelValues(guardName, ref.Reason).Inc()
	e.log.Warn("request refused by guard", "guard", guardName, "status", ref.Status, "reason", ref.Reason,
		"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	if ref.Status == http.StatusUnauthorized || ref.Status == http.StatusForbidden {
		w.Header().Set("WWW-Authenticate", ref.WWWAuthenticate(guardName))
	}
	e.fail(w, ref.Status, strings.ToLower(http.StatusText(ref.Status))+": "+ref.Reason)
}
