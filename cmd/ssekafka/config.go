package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

//go:embed example.yaml
var exampleConfig []byte

// config is the YAML file. Every field's default is in defaultConfig and in
// the README's configuration reference.
type config struct {
	SSE     sseConfig     `yaml:"sse"`
	Routes  []routeConfig `yaml:"routes"`
	Kafka   kafkaConfig   `yaml:"kafka"`
	NATS    natsConfig    `yaml:"nats"`
	Cache   cacheConfig   `yaml:"cache"`
	Cluster clusterConfig `yaml:"cluster"`

	routes []*edge.Route // compiled by validate
}

type sseConfig struct {
	Listen    string        `yaml:"listen"`
	Retry     int           `yaml:"retry"` // milliseconds, as in Zilla
	KeepAlive time.Duration `yaml:"keepalive"`
	MaxQueue  int           `yaml:"maxQueue"`
	// MaxQueueBytes bounds the bytes waiting for one client, like maxQueue.
	MaxQueueBytes int `yaml:"maxQueueBytes"`
	// SetupConcurrency bounds streams in their state part at once; more wait.
	SetupConcurrency int `yaml:"setupConcurrency"`
	// ReleaseAfterBurst: streams started before free memory is returned to the OS; -1: never.
	ReleaseAfterBurst int `yaml:"releaseAfterBurst"`
}

type routeConfig struct {
	When []struct {
		Path string `yaml:"path"`
	} `yaml:"when"`
	Exit string `yaml:"exit"`
	With struct {
		Topic   string `yaml:"topic"`
		Filters []struct {
			Key     *string           `yaml:"key"`
			Headers map[string]string `yaml:"headers"`
		} `yaml:"filters"`
		Event struct {
			ID string `yaml:"id"`
		} `yaml:"event"`
	} `yaml:"with"`
	Guarded map[string][]string `yaml:"guarded"`
}

type kafkaConfig struct {
	Brokers   []string `yaml:"brokers"`
	Bootstrap []string `yaml:"bootstrap"`
}

type natsConfig struct {
	URL    string `yaml:"url"`
	Prefix string `yaml:"prefix"`
}

type clusterConfig struct {
	Name          string        `yaml:"name"`
	Gossip        string        `yaml:"gossip"`
	Join          []string      `yaml:"join"`
	Replicas      int           `yaml:"replicas"`
	ProbeInterval time.Duration `yaml:"probeInterval"`
	ProbeTimeout  time.Duration `yaml:"probeTimeout"`
	SuspicionMult int           `yaml:"suspicionMult"`
}

type cacheConfig struct {
	TombstoneHorizon time.Duration `yaml:"tombstoneHorizon"`
	MaxPageBytes     int           `yaml:"maxPageBytes"`
	MaxBytes         int64         `yaml:"maxBytes"`
	Listen           string        `yaml:"listen"`
}

func defaultConfig() config {
	return config{
		SSE:     sseConfig{Listen: "127.0.0.1:8080", Retry: 2000, KeepAlive: 15 * time.Second, MaxQueue: 16384, MaxQueueBytes: 8 << 20},
		Kafka:   kafkaConfig{Brokers: []string{"127.0.0.1:9092"}},
		NATS:    natsConfig{URL: "nats://127.0.0.1:4222", Prefix: "ssekafka"},
		Cache:   cacheConfig{TombstoneHorizon: 24 * time.Hour, MaxPageBytes: 1 << 20, MaxBytes: 256 << 20},
		Cluster: clusterConfig{Replicas: 2},
	}
}

// loadConfig reads the file at path, or the built-in example when path is empty.
func loadConfig(path string, needRoutes bool) (*config, error) {
	data, name := exampleConfig, "built-in example"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		name = path
	}
	cfg, err := parseConfig(data, needRoutes)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// parseConfig decodes and validates a config. Errors name the field and line.
func parseConfig(data []byte, needRoutes bool) (*config, error) {
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	at := func(path string) string {
		if line := lineOf(&root, path); line > 0 {
			return "line " + strconv.Itoa(line) + ": " + path
		}
		return path
	}
	if cfg.SSE.Retry < 0 {
		return nil, fmt.Errorf("%s: must not be negative", at("sse.retry"))
	}
	if cfg.SSE.MaxQueueBytes < 0 {
		return nil, fmt.Errorf("%s: must not be negative", at("sse.maxQueueBytes"))
	}
	if cfg.SSE.SetupConcurrency < 0 {
		return nil, fmt.Errorf("%s: must not be negative", at("sse.setupConcurrency"))
	}
	if cfg.SSE.KeepAlive < 0 {
		return nil, fmt.Errorf("%s: must not be negative", at("sse.keepalive"))
	}
	if len(cfg.Kafka.Brokers) == 0 {
		return nil, fmt.Errorf("%s: at least one broker is required", at("kafka.brokers"))
	}
	for i, t := range cfg.Kafka.Bootstrap {
		if err := proto.ValidTopic(t); err != nil {
			return nil, fmt.Errorf("%s: %w", at(fmt.Sprintf("kafka.bootstrap[%d]", i)), err)
		}
	}
	if cfg.NATS.Prefix == "" || strings.ContainsAny(cfg.NATS.Prefix, " *>") {
		return nil, fmt.Errorf("%s: %q is not a NATS subject prefix", at("nats.prefix"), cfg.NATS.Prefix)
	}
	if cfg.Cache.MaxBytes < 1<<20 {
		return nil, fmt.Errorf("%s: at least 1048576 (1 MiB)", at("cache.maxBytes"))
	}
	if cfg.Cluster.Replicas < 1 {
		return nil, fmt.Errorf("%s: must be at least 1", at("cluster.replicas"))
	}
	if cfg.Cluster.Gossip != "" {
		if _, _, err := net.SplitHostPort(cfg.Cluster.Gossip); err != nil {
			return nil, fmt.Errorf("%s: %w", at("cluster.gossip"), err)
		}
	}
	if needRoutes && len(cfg.Routes) == 0 {
		return nil, fmt.Errorf("%s: at least one route is required", at("routes"))
	}
	for i, rc := range cfg.Routes {
		prefix := fmt.Sprintf("routes[%d]", i)
		if len(rc.Guarded) > 0 {
			return nil, fmt.Errorf("%s: guards are not supported yet", at(prefix+".guarded"))
		}
		erc := edge.RouteConfig{Topic: rc.With.Topic, EventID: rc.With.Event.ID}
		for _, w := range rc.When {
			erc.Paths = append(erc.Paths, w.Path)
		}
		for _, f := range rc.With.Filters {
			erc.Filters = append(erc.Filters, edge.FilterConfig{Key: f.Key, Headers: f.Headers})
		}
		r, err := edge.CompileRoute(erc)
		if err != nil {
			// CompileRoute's errors start with the field they are about.
			field, msg, _ := strings.Cut(err.Error(), ": ")
			return nil, fmt.Errorf("%s: %s", at(prefix+"."+field), msg)
		}
		cfg.routes = append(cfg.routes, r)
	}
	return &cfg, nil
}

// lineOf returns the line of the deepest node on a path such as
// "routes[0].with.filters[1].key", or 0.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		if name != "" {
			key, next := mappingEntry(n, name)
			if next == nil {
				return line
			}
			n, line = next, key.Line
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n, line = n.Content[idx], n.Content[idx].Line
		}
	}
	return line
}

// mappingEntry returns the key and value nodes of key in a mapping.
func mappingEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}
