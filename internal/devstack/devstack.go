// Package devstack starts the embedded services that dev mode, tests and
// benchmarks run against: franz-go's kfake Kafka cluster and an in-process
// nats-server, both on real loopback TCP ports.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaOptions tune the embedded Kafka.
type KafkaOptions struct {
	// CompactEvery is log.cleaner.backoff.ms: how often compacted topics are
	// compacted. Default 10s.
	CompactEvery time.Duration
	// DefaultPartitions for auto-created topics. Default 3.
	DefaultPartitions int
	// Brokers in the cluster, on consecutive ports from the given one (any
	// free ports for port 0). Default 1.
	Brokers int
	// Extra kfake options (TLS, SASL users, ...).
	Extra []kfake.Opt
}

// StartKafka starts a kfake cluster (one broker unless opts say more)
// listening on addr ("127.0.0.1:0" for any port), with topic auto-creation on
// so that kcat can produce to a new topic, and returns the first broker's
// address. Close the cluster when done.
func StartKafka(addr string, opts KafkaOptions) (*kfake.Cluster, string, error) {
	port, err := loopbackPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("kafka address: %w", err)
	}
	if opts.CompactEvery <= 0 {
		opts.CompactEvery = 10 * time.Second
	}
	if opts.DefaultPartitions <= 0 {
		opts.DefaultPartitions = 3
	}
	if opts.Brokers <= 0 {
		opts.Brokers = 1
	}
	ports := make([]int, opts.Brokers)
	for i := range ports {
		if port != 0 {
			ports[i] = port + i
		}
	}
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(opts.Brokers),
		kfake.Ports(ports...),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(opts.DefaultPartitions),
		kfake.BrokerConfigs(map[string]string{
			"log.cleaner.backoff.ms": strconv.FormatInt(opts.CompactEvery.Milliseconds(), 10),
		}),
	}, opts.Extra...)...)
	if err != nil {
		return nil, "", fmt.Errorf("start kafka on %s: %w", addr, err)
	}
	return c, c.ListenAddrs()[0], nil
}

// CreateCompactedTopics creates each missing topic with cleanup.policy=compact.
func CreateCompactedTopics(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	return CreateCompactedTopicsWith(ctx, brokers, nil, partitions, topics...)
}

// CreateCompactedTopicsWith is CreateCompactedTopics with client options
// (TLS, SASL, ...) for a cluster that needs them.
func CreateCompactedTopicsWith(ctx context.Context, brokers []string, opts []kgo.Opt, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	compact := "compact"
	resp, err := adm.CreateTopics(ctx, partitions, 1, map[string]*string{"cleanup.policy": &compact}, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resp {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// StartNATS starts an in-process nats-server on addr ("127.0.0.1:0" for any
// port) and waits until it accepts clients. Shut it down when done. Its max
// payload is 8 MiB.
func StartNATS(addr string) (*server.Server, error) { return StartNATSMaxPayload(addr, 8<<20) }

// StartNATSMaxPayload is StartNATS with a max payload of maxPayload bytes
// (a stock nats-server's is 1 MiB).
func StartNATSMaxPayload(addr string, maxPayload int32) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats address %q: %w", addr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: host, Port: port, NoSigs: true, NoLog: true, MaxPayload: maxPayload})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats server on %s: not ready", addr)
	}
	return s, nil
}

func loopbackPort(addr string) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "127.0.0.1" && host != "localhost" {
		return 0, fmt.Errorf("kfake listens on 127.0.0.1 only, not %q", host)
	}
	return strconv.Atoi(portStr)
}
