// Refusals a browser survives (DESIGN rule 9): a stream that cannot be
// served for a reason a retry fixes is answered 200 text/event-stream with
// the reason as a comment and a spread "retry:", then closed. An EventSource
// ends for good on any other status; on a 200 stream that ends it comes
// back by itself after the retry delay.

package edge

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Refusal reasons: the comment line sent, and the metric's label.
const (
	refuseCacheUnavailable = "cache tier unavailable"
	refuseFeedRestarting   = "topic feed restarting"
	refuseQueueFull        = "setup queue full"
	refuseDraining         = "edge draining"
	refuseLookupRate       = "lookups of unknown topics over rate"
	refuseSetupPerAddress  = "too many streams starting from this address"
	refuseHeaderMemory     = "too many long request headers being read"
)

// refusalLabel is a reason's label in ssekafka_edge_refusals_total.
func refusalLabel(reason string) string {
	switch reason {
	case refuseCacheUnavailable:
		return "cache_unavailable"
	case refuseFeedRestarting:
		return "feed_restarting"
	case refuseQueueFull:
		return "queue_full"
	case refuseDraining:
		return "draining"
	case refuseLookupRate:
		return "lookup_rate"
	case refuseMaxConnections:
		return "max_connections"
	case refuseMaxConnectionsPerIP:
		return "max_connections_per_ip"
	case refuseSetupPerAddress:
		return "setup_queue_per_ip"
	case refuseHeaderMemory:
		return "header_memory"
	}
	return "other"
}

// refusalRetryMs is the "retry:" of a refusal, drawn uniformly from [R, 2R]
// so that refused clients do not come back together. R is Retry (1s when
// Retry is Off: a refusal never says "come back at once") plus the time the
// setup queue is estimated to take to drain, at most RetryMax/2.
func (e *Edge) refusalRetryMs() int64 {
	base := e.cfg.Retry
	if base == Off {
		base = time.Second
	}
	r := min(base+e.setupBacklog(), e.cfg.RetryMax/2)
	ms := max(r.Milliseconds(), 1)
	return ms + rand.Int64N(ms+1)
}

// setupBacklog estimates how long the streams waiting for a setup worker
// take to start: waiting × mean setup time / workers.
func (e *Edge) setupBacklog() time.Duration {
	q := e.queue.Load()
	if q == nil {
		return 0
	}
	waiting, mean := q.load()
	return time.Duration(int64(waiting) * int64(mean) / int64(e.cfg.SetupConcurrency))
}

// appendRefusal appends a refusal's body: the reason as a comment line
// (curl shows why), then the retry.
func appendRefusal(b []byte, reason string, retryMs int64) []byte {
	b = append(b, ": "...)
	b = append(b, reason...)
	b = append(b, '\n')
	return appendRetry(b, retryMs)
}

// refuse answers a stream that cannot be served now, through w.
func (e *Edge) refuse(w http.ResponseWriter, reason string) {
	e.metrics.refusals.WithLabelValues(refusalLabel(reason)).Inc()
	body := appendRefusal(nil, reason, e.refusalRetryMs())
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if _, ok := w.(http.Hijacker); ok {
		// HTTP/1: the stream ends with its connection. Not on HTTP/2,
		// where net/http would end the connection's other streams too.
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// refuseConn answers a request read by Serve that no handler will see (the
// setup queue is full) and closes its connection.
func (e *Edge) refuseConn(conn net.Conn, req *http.Request, reason string) {
	_ = conn.SetWriteDeadline(time.Now().Add(e.cfg.WriteTimeout))
	rw := newRawResponse(conn, req)
	e.corsHeaders(rw.Header(), req) // a cross-origin page must read the refusal, or its EventSource ends
	e.refuse(rw, reason)
	_ = conn.Close()
}
