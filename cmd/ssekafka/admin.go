package main

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ssekafka/ssekafka/internal/ratelog"
)

// maxDrainWindow caps POST /_ssekafka/drain?window=: a longer drain would
// keep the edge refusing new streams for as long as the caller likes.
const maxDrainWindow = 10 * time.Minute

// adminHeader is the header a POST to the admin listener carries when it
// has no Authorization: a page cannot send either to another origin
// without a CORS preflight, which the admin listener never grants.
const adminHeader = "X-Ssekafka-Admin"

// newAdminRefusals registers the admin listener's refusals (with or
// without a listener, so that the metric is always there to alert on).
func newAdminRefusals(reg prometheus.Registerer) *prometheus.CounterVec {
	return promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "admin_refusals_total",
		Help: "Admin listener requests refused, by reason: cross_site, simple_post, unauthorized."}, []string{"reason"})
}

// adminGuard refuses, on every admin endpoint, requests a browser sends
// for a page of another origin (Sec-Fetch-Site other than same-origin or
// none; an Origin whose host is not the request's), and POSTs a page could
// send without a preflight (no Authorization, no X-Ssekafka-Admin). With a
// token, a POST must carry Authorization: Bearer TOKEN. Each refusal is
// counted by reason and logged (rate-limited; never the token).
func adminGuard(next http.Handler, token string, refusals *prometheus.CounterVec, log *slog.Logger) http.Handler {
	log = ratelog.Wrap(log)
	refuse := func(w http.ResponseWriter, r *http.Request, status int, reason, msg string) {
		refusals.WithLabelValues(reason).Inc()
		log.Warn("admin request refused", "reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ssekafka-admin"`)
		}
		http.Error(w, msg, status)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) {
			refuse(w, r, http.StatusForbidden, "cross_site", "cross-site request refused")
			return
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		auth := r.Header.Get("Authorization")
		if auth == "" && r.Header.Get(adminHeader) == "" {
			refuse(w, r, http.StatusForbidden, "simple_post", "a "+r.Method+" to the admin listener carries Authorization or "+adminHeader)
			return
		}
		if token != "" {
			got, ok := strings.CutPrefix(auth, "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				refuse(w, r, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// crossSite reports whether a browser sent r for a page of another origin.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host)
}

// drainHandler serves POST /_ssekafka/drain[?window=DURATION]: it asks
// serveEdge to drain (once) and answers 202. A window is at most
// maxDrainWindow.
func drainHandler(window time.Duration, req chan<- time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST to drain", http.StatusMethodNotAllowed)
			return
		}
		if v := r.URL.Query().Get("window"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > maxDrainWindow {
				http.Error(w, fmt.Sprintf("window: %s is not a duration from 0 to %v", strconv.Quote(v), maxDrainWindow), http.StatusBadRequest)
				return
			}
			window = d
		}
		select {
		case req <- window:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, "draining over %v\n", window)
		default:
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintln(w, "already draining")
		}
	})
}
