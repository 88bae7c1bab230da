// Package reason names why the edge closes, refuses or resets a stream, as
// nats-server's ClosedState names why a client connection ended: one typed
// value, with the text a client or a log line shows and the label a metric
// carries. The labels are the values operators already see on
// ssekafka_edge_refusals_total, ssekafka_edge_resets_total and
// ssekafka_edge_connections_refused_total; changing one breaks their alerts.
package reason

// Reason is why a stream was closed, refused or reset.
type Reason uint8

// Refusals: a stream answered 200 with a comment and a retry (or a
// connection closed at once), before it is served.
const (
	Unknown Reason = iota

	CacheUnavailable  // the cache tier did not answer
	FeedRestarting    // the topic's feed is starting again
	QueueFull         // the setup queue is full
	Draining          // the edge is draining
	LookupRate        // lookups of unknown topics over their rate
	MaxConnections    // the edge is at its connection limit
	MaxConnectionsPer // one address is at its connection limit
	SetupPerAddress   // one address has too many streams starting
	HeaderMemory      // too many long request headers being read

	// Resets: event: reset, then the stream starts again from the state.
	ResetEpoch      // the topic was recreated
	ResetHorizon    // the position is older than the cache keeps
	ResetPartitions // the partition count changed
	ResetOffsets    // an offset past the partition's end: another incarnation
	ResetLost       // a live record could not be read from the cache tier

	// Closes of a live stream.
	Shutdown     // the edge is closing
	Drain        // the edge drains: the stream ends with a retry
	Hangup       // the client hung up
	FellBehind   // the client's queue passed its limit
	WriteFailed  // a write to the client failed
	TokenExpired // the stream's token expired
	KeyRemoved   // the token's signing key was removed
	FeedEnded    // the topic's feed ended

	count // number of reasons; keep last
)

type names struct{ text, label string }

var table = [count]names{
	Unknown:           {"unknown", "other"},
	CacheUnavailable:  {"cache tier unavailable", "cache_unavailable"},
	FeedRestarting:    {"topic feed restarting", "feed_restarting"},
	QueueFull:         {"setup queue full", "queue_full"},
	Draining:          {"edge draining", "draining"},
	LookupRate:        {"lookups of unknown topics over rate", "lookup_rate"},
	MaxConnections:    {"edge at its connection limit", "max_connections"},
	MaxConnectionsPer: {"too many connections from this address", "max_connections_per_ip"},
	SetupPerAddress:   {"too many streams starting from this address", "setup_queue_per_ip"},
	HeaderMemory:      {"too many long request headers being read", "header_memory"},
	ResetEpoch:        {"epoch", "epoch"},
	ResetHorizon:      {"horizon", "horizon"},
	ResetPartitions:   {"partitions", "partitions"},
	ResetOffsets:      {"offsets", "offsets"},
	ResetLost:         {"lost", "lost"},
	Shutdown:          {"shutdown", "shutdown"},
	Drain:             {"drain", "drain"},
	Hangup:            {"client hung up", "hangup"},
	FellBehind:        {"fell behind", "fell_behind"},
	WriteFailed:       {"write failed", "write_failed"},
	TokenExpired:      {"token expired", "token_expired"},
	KeyRemoved:        {"signing key removed", "key_removed"},
	FeedEnded:         {"topic feed ended", "feed_ended"},
}

// String is the text a client's comment line or a log line shows.
func (r Reason) String() string {
	if r >= count {
		return table[Unknown].text
	}
	return table[r].text
}

// Label is the reason's value in a metric label.
func (r Reason) Label() string {
	if r >= count {
		return table[Unknown].label
	}
	return table[r].label
}
