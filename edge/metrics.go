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
	hangupsSetup, hangupsLive                   prometheus.Counter
}

// newMetrics registers the edge's metrics with reg; a nil reg registers nothing.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: name, Help: help})
	}
	hangups := f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "hangups_total",
		Help: "Clients released as soon as they hung up, by phase: setup (waiting for or in their state part) or live."}, []string{"phase"})
	return &metrics{
		hangupsSetup:       hangups.WithLabelValues("setup"),
		hangupsLive:        hangups.WithLabelValues("live"),
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
	}
}
