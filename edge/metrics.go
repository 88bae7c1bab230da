package edge

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	clients                                     prometheus.Gauge
	connections, badLastEventID, badRequests    prometheus.Counter
	resets                                      *prometheus.CounterVec
	framesQueued, gaps, fills, badChanges       prometheus.Counter
	badPages                                    prometheus.Counter
	overflows, feedFailures, stateEventsWritten prometheus.Counter
	writes, acceptErrors, setupRejected         prometheus.Counter
	memoryReleases, conflated                   prometheus.Counter
	stateRequests, pagesShared, framesShared    prometheus.Counter
	resumes                                     *prometheus.CounterVec
}

// newMetrics registers the edge's metrics with reg; a nil reg registers nothing.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: name, Help: help})
	}
	return &metrics{
		clients:            f.NewGauge(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "clients", Help: "SSE clients connected."}),
		connections:        c("connections_total", "SSE streams started."),
		badLastEventID:     c("bad_last_event_id_total", "Last-Event-IDs that could not be parsed (client started from zero)."),
		badRequests:        c("bad_requests_total", "Requests answered with a 4xx status."),
		resets:             f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "resets_total", Help: "event:reset sent, by reason."}, []string{"reason"}),
		framesQueued:       c("frames_queued_total", "Live frames queued to clients."),
		stateEventsWritten: c("state_events_total", "Events written from state pages."),
		gaps:               c("live_gaps_total", "Gaps detected in the live feed."),
		fills:              c("gap_fills_total", "Gap fills completed from the cache tier."),
		badChanges:         c("bad_changes_total", "Live messages that could not be decoded."),
		badPages:           c("bad_state_pages_total", "State pages refused: a cursor that does not advance."),
		overflows:          c("overflow_disconnects_total", "Clients disconnected for falling behind."),
		feedFailures:       c("feed_failures_total", "Topic feeds ended by an epoch or partition change."),
		writes:             c("live_writes_total", "writev calls to hijacked live connections (compare with frames_queued_total)."),
		setupRejected:      c("setup_rejected_total", "Connections answered 503 because the queue of streams waiting to start was full."),
		conflated:          c("frames_conflated_total", "Queued frames dropped because a newer frame for the same key followed (a client behind)."),
		memoryReleases:     c("memory_releases_total", "Free memory returned to the OS after a burst of new streams."),
		acceptErrors:       c("accept_errors_total", "Failed accepts (out of file descriptors, ...), retried after a pause."),
		stateRequests:      c("state_requests_total", "State-page requests sent to the cache tier (streams, fills, probes)."),
		pagesShared:        c("state_pages_shared_total", "State pages a stream got from a request shared with others (in flight, or answered lately) instead of its own."),
		framesShared:       c("state_frames_shared_total", "State pages whose frames a stream wrote as already encoded for another stream of its view."),
		resumes: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "resumes_total",
			Help: "Streams resumed from a Last-Event-ID, by how: ring (from memory, no state request), coalesced (state pages all shared), state (own state requests)."}, []string{"kind"}),
	}
}
