package edge

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/keyread"
)

// Serve accepts connections on ln until it fails or is closed. A
// connection whose first request is an HTTP/1.x request that srv would give
// to this edge (srv.Handler is the edge, or a ServeMux that picks it) is
// served here without net/http: its header is read with pooled buffers and
// nothing but the connection is kept once the stream is live, which is most
// of an idle SSE client's cost. Every other connection (metrics, health,
// HTTP/2, a header too large to peek) is handed to srv as it arrived.
// srv must not serve elsewhere; shut it down after Serve returns. A stream
// read here waits in the edge's setup queue for one of SetupConcurrency
// workers, which writes its state part; a stream srv serves (HTTP/2) waits
// in the same queue, on its handler goroutine. The queue is the edge's,
// shared by every Serve: Close, not Serve's return, ends it.
//
// For TLS, ln is a plain listener and srv.TLSConfig the configuration:
// each connection is counted against the caps, then served over TLS, whose
// handshake runs under the header timeout; a connection that negotiates
// "h2" goes to srv as the *tls.Conn itself, which net/http serves as HTTP/2
// when srv.TLSConfig.NextProtos lists "h2"; any other goes on as above,
// over TLS. The accept path is edge/internal/accept.
func (e *Edge) Serve(ln net.Listener, srv *http.Server) error {
	return e.acc.Serve(ln, srv)
}

// Request bounds (edge/internal/accept), answered on every path before any
// other work.
const (
	// MaxHeaderBytes bounds a request header; a larger one is answered 431.
	// Room for the longest Last-Event-ID the codec reads, and
	// OrdinaryHeaderBytes besides.
	MaxHeaderBytes = accept.MaxHeaderBytes
	// OrdinaryHeaderBytes bounds a request header less the values of its
	// Last-Event-ID and of its lastEventId query parameter: only those get
	// the long budget. A header past it is answered 431 as soon as that is known.
	OrdinaryHeaderBytes = accept.OrdinaryHeaderBytes
	// MaxPathBytes bounds a request's target, its path and query as sent,
	// less the values of lastEventId parameters. A longer one is 414.
	MaxPathBytes = accept.MaxPathBytes
	// MaxHeaderLines bounds a request's header fields; more are 431.
	MaxHeaderLines = accept.MaxHeaderLines
	// MaxHeaderMemory bounds the header buffers past the small pooled one
	// held at once by an edge.
	MaxHeaderMemory = accept.MaxHeaderMemory
	// MaxHeaderMemoryPerAddress bounds those of one client address.
	MaxHeaderMemoryPerAddress = accept.MaxHeaderMemoryPerAddress
)

// acceptConfig is the accept path's configuration, from the edge's (its
// defaults applied).
func acceptConfig(e *Edge, tlsLog *slog.Logger) accept.Config {
	c, m := &e.cfg, e.metrics
	return accept.Config{
		Handler:              e,
		Bypass:               keyread.WantsJSON,
		NoHijack:             c.NoHijack,
		MaxConnections:       c.MaxConnections,
		MaxConnectionsPerIP:  c.MaxConnectionsPerIP, // Off (-1): no cap
		TrustedProxies:       c.TrustedProxies,
		SetupConcurrency:     c.SetupConcurrency,
		SetupQueue:           c.SetupQueue,
		SetupPerAddress:      c.SetupPerAddress,
		SetupQueuePerAddress: c.SetupQueuePerAddress,
		ReleaseAfterBurst:    c.ReleaseAfterBurst,
		WriteTimeout:         c.WriteTimeout,
		Retry:                c.Retry, // Off (-1): 1s
		RetryMax:             c.RetryMax,
		CORS:                 c.CORS,
		Log:                  e.log,
		TLSLog:               tlsLog,
		Metrics: accept.Metrics{
			AcceptErrors:       m.AcceptErrors,
			TLSHandshakeErrors: m.TLSHandshakeErrors,
			BadRequests:        m.BadRequests,
			Refusals:           m.Refusals,
			ConnectionsRefused: m.ConnectionsRefused,
			SetupRejected:      m.SetupRejected,
			SetupWait:          m.SetupWait,
			MemoryReleases:     m.MemoryReleases,
			HangupsSetup:       m.HangupsSetup,
			HangupsLive:        m.HangupsLive,
		},
	}
}

// registerGauges registers the gauges read from e when scraped.
func registerGauges(reg prometheus.Registerer, e *Edge) {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "setup_waiting",
		Help: "Streams waiting for a setup worker."}, func() float64 {
		return float64(e.acc.Waiting())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "key_read_bytes_held",
		Help: "Bytes of the values held for JSON reads being answered, each once however many reads share it (bounded by sse.keyReads.maxBytes)."}, func() float64 {
		return float64(e.hub.KeyReadBytesHeld())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "open_connections",
		Help: "Connections Serve holds, counted against MaxConnections (sse.maxConnections)."}, func() float64 {
		return float64(e.acc.Open())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "feed_memory_bytes",
		Help: "Bytes topic feeds keep: resume rings, frames encoded from them and from shared state pages, the shared pages (bounded by FeedMemoryBytes)."}, func() float64 {
		return float64(e.hub.FeedMemoryBytes())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "header_memory_bytes",
		Help: "Bytes of request-header buffers held past the small pooled one (headers over 4 KiB being read), against MaxHeaderMemory."}, func() float64 {
		return float64(e.acc.HeaderMemory())
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "draining",
		Help: "1 once the edge drains (Drain, SIGTERM, POST /_ssekafka/drain)."}, func() float64 {
		if e.hub.Draining() {
			return 1
		}
		return 0
	})
}
