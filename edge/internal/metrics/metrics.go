// Package metrics holds the edge's Prometheus metrics (ssekafka_edge_*),
// made once and shared by its parts.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Edge is the edge's metrics, registered once by New.
type Edge struct {
	Clients                                     prometheus.Gauge
	Connections, BadLastEventID, BadRequests    prometheus.Counter
	Resets                                      *prometheus.CounterVec
	FramesQueued, Gaps, Fills, BadChanges       prometheus.Counter
	BadPages                                    prometheus.Counter
	Overflows, FeedFailures, StateEventsWritten prometheus.Counter
	Writes, AcceptErrors, SetupRejected         prometheus.Counter
	MemoryReleases, Conflated                   prometheus.Counter
	StateRequests, PagesShared, FramesShared    prometheus.Counter
	Resumes                                     *prometheus.CounterVec
	RingHeadRequests                            prometheus.Counter
	Refusals, ConnectionsRefused                *prometheus.CounterVec
	SetupWait                                   prometheus.Histogram
	DrainClosed, ProbeFailures                  prometheus.Counter
	HangupsSetup, HangupsLive                   prometheus.Counter
	TLSHandshakeErrors                          prometheus.Counter
	ValueRequests, ValuesGone, ValuesNotYet     prometheus.Counter
	KeyReads                                    *prometheus.CounterVec
	KeyReadsShared                              prometheus.Counter
	KeyValuesShared, KeyReadsCutOff             prometheus.Counter
	KeyRepliesBehind                            prometheus.Counter
	TopicLookups                                *prometheus.CounterVec
	FeedMemoryGivenBack                         prometheus.Counter
	StateParked, StateStalled                   prometheus.Counter
	// CompressedRaw and CompressedWire are the bytes of shared chunks
	// before and after compression, by coding, counted once where each
	// chunk is made; StreamsByCoding counts streams by coding.
	CompressedRaw, CompressedWire, StreamsByCoding *prometheus.CounterVec
}

// New registers the edge's metrics with reg; a nil reg registers nothing.
func New(reg prometheus.Registerer) *Edge {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: name, Help: help})
	}
	hangups := f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "hangups_total",
		Help: "Clients released as soon as they hung up, by phase: setup (waiting for or in their state part) or live."}, []string{"phase"})
	return &Edge{
		HangupsSetup:       hangups.WithLabelValues("setup"),
		HangupsLive:        hangups.WithLabelValues("live"),
		Clients:            f.NewGauge(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "clients", Help: "SSE clients connected."}),
		Connections:        c("connections_total", "SSE streams started."),
		BadLastEventID:     c("bad_last_event_id_total", "Last-Event-IDs that could not be parsed (client started from zero)."),
		BadRequests:        c("bad_requests_total", "Requests answered with a 4xx status."),
		Resets:             f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "resets_total", Help: "event:reset sent, by reason."}, []string{"reason"}),
		FramesQueued:       c("frames_queued_total", "Live frames queued to clients."),
		StateEventsWritten: c("state_events_total", "Events written from state pages."),
		Gaps:               c("live_gaps_total", "Gaps detected in the live feed."),
		Fills:              c("gap_fills_total", "Gap fills completed from the cache tier."),
		BadChanges:         c("bad_changes_total", "Live messages dropped: undecodable, or of an epoch, partition or offset the cache tier does not confirm."),
		BadPages:           c("bad_state_pages_total", "State pages refused: a cursor that does not advance."),
		Overflows:          c("overflow_disconnects_total", "Clients disconnected for falling behind."),
		FeedFailures:       c("feed_failures_total", "Topic feeds ended by an epoch or partition change."),
		Writes:             c("live_writes_total", "writev calls to hijacked live connections (compare with frames_queued_total)."),
		SetupRejected:      c("setup_rejected_total", "Connections refused (200 with a retry) because the queue of streams waiting to start was full."),
		Refusals: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "refusals_total",
			Help: "Streams refused with 200, a comment and a retry, by reason (cache_unavailable, feed_restarting, queue_full, draining, max_connections, max_connections_per_ip, lookup_rate)."}, []string{"reason"}),
		ConnectionsRefused: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "connections_refused_total",
			Help: "Connections accepted over a limit and closed at once (a stream answered with a refusal, anything else 503), and streams through a trusted proxy over their client address's limit, by reason (max_connections, max_connections_per_ip)."}, []string{"reason"}),
		SetupWait: f.NewHistogram(prometheus.HistogramOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "setup_wait_seconds",
			Help: "Time a stream waited for a setup worker.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		DrainClosed:        c("drain_closed_total", "Streams closed by a drain, each after a final retry."),
		ProbeFailures:      c("cache_probe_failures_total", "Readiness probes of the cache tier that got no answer."),
		Conflated:          c("frames_conflated_total", "Queued frames dropped because a newer frame for the same key followed (a client behind)."),
		MemoryReleases:     c("memory_releases_total", "Free memory returned to the OS after a burst of new streams."),
		TLSHandshakeErrors: c("tls_handshake_errors_total", "TLS handshakes that failed or timed out (sse.tls); the connection is closed."),
		AcceptErrors:       c("accept_errors_total", "Failed accepts (out of file descriptors, ...), retried after a pause."),
		ValueRequests:      c("value_requests_total", "Requests for part of a value too large for one NATS message (sent apart by the cache tier)."),
		ValuesGone:         c("values_gone_total", "Values sent apart that the cache tier no longer held when asked (superseded): the key's newer record follows."),
		ValuesNotYet:       c("value_parts_not_yet_total", "Parts of records apart answered by a holder that had not applied the record yet: asked again, with backoff."),
		KeyReads: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "key_reads_total",
			Help: "JSON reads of keyed routes, by result (ok, not_modified, not_found, unavailable, not_keyed, rate_limited, busy)."}, []string{"result"}),
		KeyReadsShared:   c("key_reads_shared_total", "JSON reads answered by a lookup of the same key already in flight for another read."),
		KeyValuesShared:  c("key_read_values_shared_total", "JSON reads that wrote a value already held for another read in flight (one buffer for both)."),
		KeyReadsCutOff:   c("key_reads_cut_off_total", "JSON reads whose value was not written in time (the write timeout per write, sse.keyReads.minRate overall) or whose client left: the connection was closed."),
		KeyRepliesBehind: c("key_replies_behind_total", "Key replies not taken because the holder that answered was behind what this edge had delivered for the partition (asked again)."),
		StateRequests:    c("state_requests_total", "State-page requests sent to the cache tier (streams, fills, probes)."),
		PagesShared:      c("state_pages_shared_total", "State pages a stream got from a request shared with others (in flight, or answered lately) instead of its own."),
		FramesShared:     c("state_frames_shared_total", "State pages whose frames a stream wrote as already encoded for another stream of its view."),
		TopicLookups: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "topic_lookups_total",
			Help: "Requests for a topic the edge has no feed for and no recent answer about, by result: asked (a metadata request to the cache tier), refused (over the rate per client address or per edge: 200 and a retry, or 503), not_found_remembered (404 from an answer less than 1s old)."}, []string{"result"}),
		FeedMemoryGivenBack: c("feed_memory_given_back_bytes_total", "Bytes of resume rings and encodings given back to keep feeds within sse.feedMemoryBytes (idle feeds' first)."),
		StateParked:         c("state_parked_total", "State parts that gave their setup worker back because the client's socket was full (a slow or non-reading client); each goes on on a goroutine of its own."),
		StateStalled:        c("state_stalled_total", "Streams cut off because the client did not take its state part within sse.stateWriteTimeout plus its size at sse.stateMinRate."),
		Resumes: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "resumes_total",
			Help: "Streams resumed from a Last-Event-ID, by how: ring (from memory, no state page), coalesced (state pages all shared), state (own state requests)."}, []string{"kind"}),
		CompressedRaw: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "compressed_raw_bytes_total",
			Help: "Bytes compressed (or framed) once for every client of a coding, before: state pages, resumes, live frames, JSON values; by coding (gzip, zstd)."}, []string{"coding"}),
		CompressedWire: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "compressed_wire_bytes_total",
			Help: "What compressed_raw_bytes_total came to on the wire (each chunk counted once, however many clients it was sent to), by coding."}, []string{"coding"}),
		StreamsByCoding: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "edge", Name: "streams_by_coding_total",
			Help: "Streams started, by the content coding negotiated from Accept-Encoding (identity, gzip, zstd)."}, []string{"coding"}),
		RingHeadRequests: c("ring_head_requests_total", "Head requests (counted in state_requests_total too) for streams of a storm that no change or head of the partition reached since they began (at most one per partition per 10 ms per feed): the ring serves only once the tier's word confirms the feed's position."),
	}
}
