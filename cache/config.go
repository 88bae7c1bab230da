package cache

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/confcheck"
	"github.com/ssekafka/ssekafka/internal/ratelog"
	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// ConfigError is the error of New and Config.Validate: the field and what
// it must be.
type ConfigError = confcheck.Error

// Config configures a cache node. Zero means the documented default (New
// fills it in, as WithDefaults does; DefaultConfig lists them all); no
// field can be off; any other value out of range is a *ConfigError naming
// the field (New and Validate return it).
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// NATS is the connection to publish and serve on. Required; the node does not close it.
	NATS *nats.Conn
	// SubjectPrefix prefixes every NATS subject. Default "ssekafka".
	SubjectPrefix string
	// Bootstrap topics are consumed at start, ahead of any client.
	Bootstrap []string
	// Ownership decides which partitions this node consumes. Default: all (membership.NewStatic).
	Ownership membership.Ownership
	// TombstoneHorizon is how long a tombstone is kept in the state. Positions
	// older than the smaller of this and the topic's delete.retention.ms are
	// reset. Default 24h.
	TombstoneHorizon time.Duration
	// MaxPageBytes caps a state page, whatever the request asks. Default 1 MiB.
	MaxPageBytes int
	// CatchUpWait bounds how long a metadata request for a topic taken up on
	// demand waits for the first catch-up. Default 10s.
	CatchUpWait time.Duration
	// MaxBytes bounds the record values held in memory (ristretto, cost =
	// value size). The key index is always complete; a value not in memory
	// is read back from Kafka by offset. Default 256 MiB; at least 1 MiB.
	MaxBytes int64
	// ApartBytes bounds the values too large for one NATS message (sent
	// apart, read by edges in parts) that the node keeps at hand besides
	// MaxBytes, newest first: an edge reads a value's parts one after the
	// other, and one not at hand is read back from Kafka. Default 64 MiB.
	ApartBytes int64
	// HeadInterval is how often a primary publishes its position in each
	// partition, so that edges notice lost changes. Default 1s.
	HeadInterval time.Duration
	// TopicCheckInterval is how often topics are compared with Kafka's
	// metadata (a recreated topic gets a new epoch; added partitions are
	// taken up). Default 30s.
	TopicCheckInterval time.Duration
	// MaxTopics bounds the topics held at once, Bootstrap ones included: a
	// request for one more is refused (and idle ones are dropped) so that
	// clients asking for arbitrary topics cannot make the node consume the
	// whole cluster. Default 1000; at least len(Bootstrap).
	MaxTopics int
	// TopicIdle: a topic taken up on demand (not in Bootstrap) that got no
	// request for this long is dropped; edges with live clients probe every
	// few seconds. Default 10m.
	TopicIdle time.Duration
	// MaxConcurrentRequests bounds request handlers running at once. Default 256.
	MaxConcurrentRequests int
	// KafkaOptions are added to the franz-go client options (TLS, SASL, ...).
	KafkaOptions []kgo.Opt
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the node's metrics. Default: none registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns every default of Config filled in: what New gives
// a zero field. MaxTopics is at least len(Bootstrap): here, with none, 1000.
func DefaultConfig() Config {
	return Config{
		SubjectPrefix:         "ssekafka",
		Ownership:             membership.NewStatic(),
		TombstoneHorizon:      24 * time.Hour,
		MaxPageBytes:          1 << 20,
		CatchUpWait:           10 * time.Second,
		MaxBytes:              256 << 20,
		ApartBytes:            64 << 20,
		HeadInterval:          time.Second,
		TopicCheckInterval:    30 * time.Second,
		MaxTopics:             defaultMaxTopics,
		TopicIdle:             10 * time.Minute,
		MaxConcurrentRequests: 256,
		Logger:                slog.New(slog.DiscardHandler),
	}
}

const defaultMaxTopics = 1000

// minMaxBytes is the least MaxBytes: below it ristretto refuses most
// values, and nearly every read goes back to Kafka.
const minMaxBytes = 1 << 20

// WithDefaults returns c with each zero field set to its default, as New
// uses it. It does not validate: a value out of range stays as it is.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	confcheck.OrDefault(&c.SubjectPrefix, d.SubjectPrefix)
	if c.Ownership == nil {
		c.Ownership = d.Ownership
	}
	confcheck.OrDefault(&c.TombstoneHorizon, d.TombstoneHorizon)
	confcheck.OrDefault(&c.MaxPageBytes, d.MaxPageBytes)
	confcheck.OrDefault(&c.CatchUpWait, d.CatchUpWait)
	confcheck.OrDefault(&c.MaxBytes, d.MaxBytes)
	confcheck.OrDefault(&c.ApartBytes, d.ApartBytes)
	confcheck.OrDefault(&c.HeadInterval, d.HeadInterval)
	confcheck.OrDefault(&c.TopicCheckInterval, d.TopicCheckInterval)
	confcheck.OrDefault(&c.MaxTopics, max(d.MaxTopics, len(c.Bootstrap)))
	confcheck.OrDefault(&c.TopicIdle, d.TopicIdle)
	confcheck.OrDefault(&c.MaxConcurrentRequests, d.MaxConcurrentRequests)
	confcheck.OrDefault(&c.Logger, d.Logger)
	return c
}

// Validate returns the first field of c that New would refuse, as a
// *ConfigError, the NATS connection aside: a config can be checked before
// anything connects.
func (c Config) Validate() error {
	c = c.WithDefaults()
	return c.validate()
}

// setDefaults fills in the defaults of c's zero fields and validates it.
func (c *Config) setDefaults() error {
	if c.NATS == nil {
		return &ConfigError{Component: "cache", Field: "NATS", Rule: "required: the connection to publish and serve on"}
	}
	*c = c.WithDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	c.Logger = ratelog.Wrap(c.Logger) // bad requests may repeat without end
	return nil
}

// validate checks a config with its defaults filled in.
func (c *Config) validate() error {
	if len(c.Brokers) == 0 {
		return &ConfigError{Component: "cache", Field: "Brokers", Rule: "at least one broker is required"}
	}
	for i, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t\r\n,") {
			return &ConfigError{Component: "cache", Field: fmt.Sprintf("Brokers[%d]", i), Rule: "must be a broker address (host:port)", Value: strconv.Quote(b)}
		}
	}
	for i, t := range c.Bootstrap {
		if err := proto.ValidTopic(t); err != nil {
			return &ConfigError{Component: "cache", Field: fmt.Sprintf("Bootstrap[%d]", i), Rule: err.Error()}
		}
	}
	if err := confcheck.SubjectPrefix("cache", c.SubjectPrefix); err != nil {
		return err
	}
	return confcheck.Check("cache", c.rows())
}

// rows is the validation table: each field's bounds.
func (c *Config) rows() []confcheck.Row {
	d := DefaultConfig()
	return []confcheck.Row{
		durRow("TombstoneHorizon", c.TombstoneHorizon, d.TombstoneHorizon),
		{Field: "MaxPageBytes", V: float64(c.MaxPageBytes), Min: 1, Default: confcheck.Bytes(int64(d.MaxPageBytes))},
		durRow("CatchUpWait", c.CatchUpWait, d.CatchUpWait),
		{Field: "MaxBytes", V: float64(c.MaxBytes), Min: minMaxBytes,
			Rule: "at least 1048576 (1 MiB), or 0 for the default (" + confcheck.Bytes(d.MaxBytes) + ")"},
		{Field: "ApartBytes", V: float64(c.ApartBytes), Min: 1, Default: confcheck.Bytes(d.ApartBytes)},
		durRow("HeadInterval", c.HeadInterval, d.HeadInterval),
		durRow("TopicCheckInterval", c.TopicCheckInterval, d.TopicCheckInterval),
		{Field: "MaxTopics", V: float64(c.MaxTopics), Min: 1, Default: strconv.Itoa(defaultMaxTopics) + ", or more for {Bootstrap}"},
		{Field: "MaxTopics", V: float64(c.MaxTopics), Min: float64(len(c.Bootstrap)), MinRule: "at least one per topic of {Bootstrap}",
			Default: strconv.Itoa(defaultMaxTopics) + ", or more for {Bootstrap}"},
		durRow("TopicIdle", c.TopicIdle, d.TopicIdle),
		{Field: "MaxConcurrentRequests", V: float64(c.MaxConcurrentRequests), Min: 1, Default: strconv.Itoa(d.MaxConcurrentRequests)},
	}
}

func durRow(field string, v, def time.Duration) confcheck.Row {
	return confcheck.Row{Field: field, V: float64(v), Unit: confcheck.Duration, Min: 1, Default: def.String()}
}
