// Refusals a browser survives (docs/architecture.md rule 9): a stream that cannot be
// served for a reason a retry fixes is answered 200 text/event-stream with
// the reason as a comment and a spread "retry:", then closed. An EventSource
// ends for good on any other status; on a 200 stream that ends it comes
// back by itself after the retry delay.

package accept

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
)

// refusalRetryMs is the "retry:" of a refusal, drawn uniformly from [R, 2R]
// so that refused clients do not come back together. R is Retry (1s when
// Retry is off: a refusal never says "come back at once") plus the time the
// setup queue is estimated to take to drain, at most RetryMax/2.
func (s *Server) refusalRetryMs() int64 {
	base := s.cfg.Retry
	if base <= 0 {
		base = time.Second
	}
	r := min(base+s.SetupBacklog(), s.cfg.RetryMax/2)
	ms := max(r.Milliseconds(), 1)
	return ms + rand.Int64N(ms+1)
}

// SetupBacklog estimates how long the streams waiting for a setup worker
// take to start: waiting × mean setup time / workers; 0 on a nil Server.
func (s *Server) SetupBacklog() time.Duration {
	if s == nil {
		return 0
	}
	q := s.queue.Load()
	if q == nil {
		return 0
	}
	waiting, mean := q.load()
	return time.Duration(int64(waiting) * int64(mean) / int64(s.cfg.SetupConcurrency))
}

// appendRefusal appends a refusal's body: the reason as a comment line
// (curl shows why), then the retry.
func appendRefusal(b []byte, why reason.Reason, retryMs int64) []byte {
	b = append(b, ": "...)
	b = append(b, why.String()...)
	b = append(b, "\nretry:"...)
	b = strconv.AppendInt(b, retryMs, 10)
	return append(b, "\n\n"...)
}

// Refuse answers a stream that cannot be served now, through w, and counts
// it in Metrics.Refusals.
func (s *Server) Refuse(w http.ResponseWriter, why reason.Reason) {
	s.cfg.Metrics.Refusals.WithLabelValues(why.Label()).Inc()
	body := appendRefusal(nil, why, s.refusalRetryMs())
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
func (s *Server) refuseConn(conn net.Conn, req *http.Request, why reason.Reason) {
	_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	rw := newRawResponse(conn, req)
	s.CORSHeaders(rw.Header(), req) // a cross-origin page must read the refusal, or its EventSource ends
	s.Refuse(rw, why)
	_ = conn.Close()
}
