package cache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ssekafka/ssekafka/membership"
)

type metrics struct {
	records                                  *prometheus.CounterVec
	published, publishErrors, fetchErrors    prometheus.Counter
	metaRequests, stateRequests, badRequests prometheus.Counter
	tombstonesDropped                        prometheus.Counter
	valueHits, valueMisses, valuesGone       prometheus.Counter
	notOwnerReplies, readBackRetries         prometheus.Counter
	pagesCut                                 prometheus.Counter
	valueRequests, valueParts, recordsApart  prometheus.Counter
	keyRequests, keyRequestsBehind           prometheus.Counter
	valuesNotYet                             prometheus.Counter
	topicsRefused, topicsIdleDropped         prometheus.Counter
	topicConfigUnreadable                    prometheus.Counter
	recordsTooLarge, badReplies              prometheus.Counter
	lag                                      *prometheus.GaugeVec
	held                                     *prometheus.GaugeVec
}

// newMetrics registers the node's metrics with reg; a nil reg registers nothing.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "cache", Name: name, Help: help})
	}
	return &metrics{
		records: f.NewCounterVec(prometheus.CounterOpts{Namespace: "ssekafka", Subsystem: "cache", Name: "records_consumed_total",
			Help: "Kafka records consumed, per partition."}, []string{"topic", "partition"}),
		published:         c("changes_published_total", "Changes published on NATS."),
		publishErrors:     c("publish_errors_total", "NATS publishes that failed."),
		fetchErrors:       c("fetch_errors_total", "Kafka fetch errors."),
		metaRequests:      c("meta_requests_total", "Topic metadata requests."),
		stateRequests:     c("state_requests_total", "State page requests."),
		badRequests:       c("bad_requests_total", "Requests that could not be decoded."),
		tombstonesDropped: c("tombstones_dropped_total", "Tombstones dropped past the horizon."),
		valueHits:         c("value_hits_total", "Values served from memory."),
		valueMisses:       c("value_misses_total", "Values read back from Kafka (evicted, or never admitted)."),
		valuesGone:        c("values_gone_total", "Values no longer in Kafka when read back (superseded and compacted)."),
		notOwnerReplies:   c("not_owner_replies_total", "State requests answered NotOwner (partition released, or not caught up)."),
		readBackRetries:   c("read_back_retries_total", "Value read-backs retried after the partition's leader moved or was unknown."),
		topicsRefused:     c("topics_refused_total", "Requests for a topic refused because MaxTopics were held."),
		topicsIdleDropped: c("topics_idle_dropped_total", "Topics taken up on demand and dropped after TopicIdle without a request."),
		valueRequests:     c("value_requests_total", "Requests for part of a value sent apart (too large for one NATS message)."),
		keyRequests:       c("key_requests_total", "Requests for one key's latest record (JSON reads of keyed routes)."),
		keyRequestsBehind: c("key_requests_behind_total", "Key requests answered with this node's position only: it had not applied what the asking edge had delivered (the edge asks again)."),
		valueParts:        c("value_parts_total", "Parts of values sent apart answered."),
		valuesNotYet:      c("value_parts_not_yet_total", "Parts of records apart asked of this node before it applied them (answered NotYet; the edge asks again)."),
		recordsApart:      c("records_apart_total", "Records sent (in a change or a state page) with their value apart: the value did not fit in one NATS message."),
		recordsTooLarge: c("records_too_large_total",
			"Records over what the cache holds (a key, value or header over 64 MiB, or 128 MiB in all), taken as a delete of their key."),
		badReplies: c("bad_reply_subjects_total",
			"Requests not answered: their reply subject was not an inbox (_INBOX.), e.g. a change subject the cache may publish on."),
		pagesCut: c("state_pages_cut_total", "State pages cut short before a value that could not be read back (the edge asks again from there)."),
		topicConfigUnreadable: c("topic_config_unreadable_total",
			"Topic configs (delete.retention.ms) that could not be read; the shorter known horizon is used."),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "cache", Name: "partition_lag",
			Help: "Records between the high watermark and the next offset to apply, per held partition."}, []string{"topic", "partition"}),
		held: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: "ssekafka", Subsystem: "cache", Name: "partitions_held",
			Help: "Partitions this node holds, by role."}, []string{"role"}),
	}
}

func (m *metrics) updateHeld(topics []*topicState) {
	counts := map[membership.Role]int{}
	for _, t := range topics {
		for _, ps := range t.held() {
			ps.mu.RLock()
			counts[ps.role]++
			ps.mu.RUnlock()
		}
	}
	for _, r := range []membership.Role{membership.RolePrimary, membership.RoleStandby} {
		m.held.WithLabelValues(r.String()).Set(float64(counts[r]))
	}
}
