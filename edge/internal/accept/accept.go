// Package accept is an edge's accept path: the listener loop (Serve), the
// request parser, the connection limits, the setup queue and its workers,
// the hang-up watch and the refusals a browser survives. It serves what it
// admits through Config.Handler (the edge) and knows nothing else of it.
//
// Concurrency: Serve runs one goroutine per connection until its header is
// read; a request then waits in the setup queue with no goroutine, until
// one of SetupConcurrency workers calls Handler.ServeHTTP with it. A stream
// on net/http's goroutine waits in the same queue (AwaitSetup). On Linux
// one epoll goroutine per Server notices clients that hang up (hangup.go).
// Locks: setupQueue.mu -> hangupWatcher.mu; every other lock is a leaf
// (docs/LOCKS.md).
package accept

import (
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is what the accept path needs of its edge. The edge fills it from
// its own, defaults applied: no field here has a default of its own.
type Config struct {
	// Handler serves a request Serve admitted: on a setup worker with a
	// raw response (Park finds the worker's release in it), or on
	// net/http's goroutine. It is the edge: a ServeMux that picks it is
	// served here too. It must be comparable (a pointer): Serve looks for
	// it in srv.Handler with ==.
	Handler http.Handler
	// Bypass reports whether a request Serve read goes to net/http rather
	// than the setup queue (a JSON read). Nil: none.
	Bypass func(*http.Request) bool
	// NoHijack hands every connection to net/http.
	NoHijack bool

	MaxConnections      int            // connections Serve holds at once
	MaxConnectionsPerIP int            // of one client address; 0 or less: no cap
	TrustedProxies      []netip.Prefix // whose X-Forwarded-For is believed

	SetupConcurrency     int // setup workers
	SetupQueue           int // streams waiting for one
	SetupPerAddress      int // workers one client address may hold
	SetupQueuePerAddress int // streams one client address may have waiting
	ReleaseAfterBurst    int // streams started before memory goes back to the OS; 0: never

	WriteTimeout time.Duration // bounds the write of a refusal
	Retry        time.Duration // a refusal's base "retry:"; 0 or less: 1s
	RetryMax     time.Duration // twice the most a refusal's retry may grow to

	CORS *CORS // nil: no CORS headers

	Log    *slog.Logger // rate-limited by the caller: refusals may repeat without end
	TLSLog *slog.Logger // failed handshakes, rate-limited too

	Metrics Metrics
}

// Metrics are the edge's counters the accept path moves. Every field is set.
type Metrics struct {
	AcceptErrors       prometheus.Counter
	TLSHandshakeErrors prometheus.Counter
	BadRequests        prometheus.Counter
	Refusals           *prometheus.CounterVec // by reason label: streams answered 200 and a retry
	ConnectionsRefused *prometheus.CounterVec // by reason label: over a cap
	SetupRejected      prometheus.Counter
	SetupWait          prometheus.Observer
	MemoryReleases     prometheus.Counter
	HangupsSetup       prometheus.Counter
	HangupsLive        prometheus.Counter
}

// Server is one edge's accept path. Its zero value is not usable: New.
type Server struct {
	cfg     Config
	limiter *connLimiter  // Serve's connections, against the caps
	hangups hangupWatcher // notices clients that leave (hangup.go)

	setupsOnce sync.Once                  // starts the setup workers (setups)
	queue      atomic.Pointer[setupQueue] // the streams waiting for a worker, once started
	closeOnce  sync.Once
	done       chan struct{} // closed by Close
}

// New builds an accept path from cfg.
func New(cfg Config) *Server {
	return &Server{
		cfg:     cfg,
		limiter: newConnLimiter(cfg.MaxConnections, cfg.MaxConnectionsPerIP, cfg.TrustedProxies),
		done:    make(chan struct{}),
	}
}

// Close ends the setup workers: the requests Serve read that still wait
// are closed, the streams waiting in AwaitSetup are refused (draining).
// Serve's own return is its listener's doing.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
	s.setups().close()
}

// CloseWatch stops the hang-up watch (after Close, once the live streams
// are closed: a client that leaves is then noticed by keep-alives only).
func (s *Server) CloseWatch() { s.hangups.close() }

// Waiting is how many streams wait for a setup worker.
func (s *Server) Waiting() int {
	if q := s.queue.Load(); q != nil {
		n, _ := q.load()
		return n
	}
	return 0
}

// Open is how many connections Serve holds, against MaxConnections.
func (s *Server) Open() int { return s.limiter.open() }

// HeaderMemory is the bytes of header buffers held past the small pooled
// one, against MaxHeaderMemory.
func (s *Server) HeaderMemory() int {
	h := &s.limiter.headers
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}
