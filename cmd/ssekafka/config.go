package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

//go:embed example.yaml
var exampleConfig []byte

// config is the YAML file. A field left out is the library's default
// (edge.DefaultConfig, cache.DefaultConfig) unless defaultConfig spells it
// differently; docs/configuration.md lists them all.
type config struct {
	SSE     sseConfig     `yaml:"sse"`
	Routes  []routeConfig `yaml:"routes"`
	Kafka   kafkaConfig   `yaml:"kafka"`
	NATS    natsConfig    `yaml:"nats"`
	Cache   cacheConfig   `yaml:"cache"`
	Cluster clusterConfig `yaml:"cluster"`
	// Guards are Zilla's top-level guards (type jwt), named by routes' guarded.
	Guards map[string]guardConfig `yaml:"guards"`

	routes   []*edge.Route // compiled by validate
	demoPath string        // the route the demo page shows; "" if none fits
	notes    []string      // what a zilla.yaml had that is ignored, logged at start
	zilla    *zillaServe   // a zilla.yaml's files, path routing and TLS key; nil for ours
}

type sseConfig struct {
	Listen string `yaml:"listen"`
	// Demo serves a page at / that shows the first route with a literal
	// path and the key-form id live (dev mode turns it on).
	Demo *bool `yaml:"demo"`
	// Retry is in milliseconds, as in Zilla; 0 writes "retry:0".
	Retry int `yaml:"retry"`
	// KeepAlive is the idle time before a comment line; 0 or off: none.
	KeepAlive offDuration `yaml:"keepalive"`
	// Ready: false leaves out event:ready, for clients that must see data frames only.
	Ready    bool `yaml:"ready"`
	MaxQueue int  `yaml:"maxQueue"`
	// MaxQueueBytes bounds the bytes waiting for one client, like maxQueue.
	MaxQueueBytes int `yaml:"maxQueueBytes"`
	// Writers is how many goroutines write a topic's live streams; 0: GOMAXPROCS.
	Writers int `yaml:"writers"`
	// Compression is the content codings offered, in order of preference
	// ([zstd, gzip] when left out); off: none.
	Compression codingList `yaml:"compression,omitempty"`
	// SetupConcurrency bounds streams in their state part at once; more wait.
	SetupConcurrency int `yaml:"setupConcurrency"`
	// ReleaseAfterBurst: streams started before free memory is returned to the OS; -1: never.
	ReleaseAfterBurst int `yaml:"releaseAfterBurst"`
	// ResumeRingBytes bounds each topic feed's ring of recent changes, from
	// which clients resume without a state request; 0: the default, -1: no ring.
	ResumeRingBytes int `yaml:"resumeRingBytes"`
	// FeedMemoryBytes bounds, edge-wide, the resume rings, their encodings and
	// shared state pages; 0: the default (256 MiB), -1: no bound.
	FeedMemoryBytes int `yaml:"feedMemoryBytes"`
	// ResumeRingAge is how long a change stays in the resume ring at most; 0: the default.
	ResumeRingAge time.Duration `yaml:"resumeRingAge"`
	// SetupQueue bounds the streams waiting for a setup worker; past it they are refused.
	SetupQueue int `yaml:"setupQueue"`
	// SetupPerAddress bounds the setup workers one client address holds; 0: a quarter of setupConcurrency; -1: no share.
	SetupPerAddress int `yaml:"setupPerAddress"`
	// SetupQueuePerAddress bounds one client address's streams waiting to start; 0: the default, 1024; -1: no share.
	SetupQueuePerAddress int `yaml:"setupQueuePerAddress"`
	// StateWriteTimeout and StateMinRate (bytes/s) bound a state part's writes; 0: the defaults, 10s and 16384.
	StateWriteTimeout time.Duration `yaml:"stateWriteTimeout"`
	StateMinRate      int           `yaml:"stateMinRate"`
	// MaxConnections bounds the edge's connections; 0: the default, below the open-file limit.
	MaxConnections int `yaml:"maxConnections"`
	// MaxConnectionsPerIP bounds one address's connections (an IPv6 /64's); 0: the default, 1000; -1: none.
	MaxConnectionsPerIP int `yaml:"maxConnectionsPerIP"`
	// TrustedProxies are the proxies in front of the edge (CIDRs or single
	// addresses) whose X-Forwarded-For the per-address cap believes.
	TrustedProxies []string       `yaml:"trustedProxies"`
	trustedProxies []netip.Prefix // parsed by validate
	// RetryMax (ms) bounds a refusal's retry; 0: the default.
	RetryMax int `yaml:"retryMax"`
	// Admin is the address of the admin listener (health, ready, metrics, drain); empty: none.
	Admin string `yaml:"admin"`
	// AdminToken, {file: PATH} or {env: NAME}: every POST to the admin
	// listener must carry Authorization: Bearer TOKEN; default: none.
	AdminToken *secret `yaml:"adminToken"`
	// DrainWindow spreads a drain's closes; 0 or off: all at once.
	DrainWindow offDuration `yaml:"drainWindow"`
	// Authorization says, per guard, where requests carry their tokens
	// (Zilla's http binding options.authorization).
	Authorization map[string]authorizationConfig `yaml:"authorization"`
	// CORS lets pages of other origins read streams; default: none (same origin only).
	CORS *corsConfig `yaml:"cors"`
	// TLS serves sse.listen over TLS (HTTP/2 and HTTP/1.1); default: plain HTTP/1.1.
	TLS *sseTLS `yaml:"tls"`
	// KeyReads bounds what per-key JSON reads cost; 0: each field's default, -1: off.
	KeyReads keyReadsConfig `yaml:"keyReads"`
}

// keyReadsConfig is edge.KeyReadLimits in YAML; 0 is the default, -1 off.
type keyReadsConfig struct {
	// MinRate is the slowest a value is written to a reader, bytes a second.
	MinRate int `yaml:"minRate"`
	// MaxBytes bounds the values held for reads in flight, each once.
	MaxBytes int `yaml:"maxBytes"`
	// MaxBytesPerIP bounds the bytes one address's reads in flight are sent.
	MaxBytesPerIP int `yaml:"maxBytesPerIP"`
	// RatePerIP is the reads a second one address may start.
	RatePerIP float64 `yaml:"ratePerIP"`
	// CacheRequestsPerIP is the cache-tier requests a second one address's reads may cause.
	CacheRequestsPerIP float64 `yaml:"cacheRequestsPerIP"`
}

// edge is the edge's KeyReadLimits (edge.Off is -1, as in YAML).
func (k *keyReadsConfig) edge() edge.KeyReadLimits {
	return edge.KeyReadLimits{MinRate: k.MinRate, MaxBytes: k.MaxBytes, MaxBytesPerIP: k.MaxBytesPerIP,
		RatePerIP: k.RatePerIP, CacheRequestsPerIP: k.CacheRequestsPerIP}
}

// sseTLS is the edge listener's certificate and key, PEM files read again
// when they change.
type sseTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

type routeConfig struct {
	When []struct {
		Path string `yaml:"path"`
	} `yaml:"when"`
	Exit string `yaml:"exit"`
	With struct {
		Topic        string `yaml:"topic"`
		TopicPattern string `yaml:"topicPattern"`
		Filters      []struct {
			Key     *string           `yaml:"key"`
			Headers map[string]string `yaml:"headers"`
		} `yaml:"filters"`
		Event struct {
			ID string `yaml:"id"`
		} `yaml:"event"`
		// Compression is the route's content codings (ours, beside Zilla's
		// with): as sse.compression; left out, the edge's.
		Compression codingList `yaml:"compression,omitempty"`
	} `yaml:"with"`
	Guarded map[string][]string `yaml:"guarded"`
}

type kafkaConfig struct {
	Brokers   []string   `yaml:"brokers"`
	Bootstrap []string   `yaml:"bootstrap"`
	TLS       *tlsConfig `yaml:"tls"`
	SASL      *kafkaSASL `yaml:"sasl"`
}

type natsConfig struct {
	URL         string          `yaml:"url"`
	Prefix      string          `yaml:"prefix"`
	TLS         *tlsConfig      `yaml:"tls"`
	Credentials natsCredentials `yaml:"credentials"`
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
	ApartBytes       int64         `yaml:"apartBytes"`
	Listen           string        `yaml:"listen"`
	MaxTopics        int           `yaml:"maxTopics"`
	TopicIdle        time.Duration `yaml:"topicIdle"`
}

// defaultConfig is the config of an empty file: cmd's own defaults, and
// the edge's where the YAML gives zero another meaning (sse.retry and
// sse.keepalive 0: off; sse.maxQueue 0: refused) or both libraries read
// the field (nats.prefix). Every other field the libraries read is zero
// here: their default (edge.DefaultConfig, cache.DefaultConfig), which
// validate --print shows.
func defaultConfig() config {
	e := edge.DefaultConfig()
	return config{
		SSE: sseConfig{Listen: "127.0.0.1:8080", Retry: int(e.Retry / time.Millisecond), KeepAlive: offDuration(e.KeepAlive),
			Ready: !e.NoReady, MaxQueue: e.MaxQueue, DrainWindow: offDuration(10 * time.Second)},
		Kafka:   kafkaConfig{Brokers: []string{"127.0.0.1:9092"}},
		NATS:    natsConfig{URL: "nats://127.0.0.1:4222", Prefix: e.SubjectPrefix},
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
	if err == nil {
		err = refuseEmptyRoutes(data)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	cfg.zilla.resolve(filepath.Dir(path)) // a zilla.yaml's paths are relative to it
	return cfg, nil
}

// parseConfig decodes and validates a config. Errors name the field and line.
func parseConfig(data []byte, needRoutes bool) (*config, error) {
	if isZilla(data) {
		return parseZilla(data, needRoutes)
	}
	cfg := defaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var root yaml.Node
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		if yaml.Unmarshal(data, &root) == nil {
			err = explainUnknownField(err, &root, reflect.TypeOf(cfg))
		}
		return nil, err
	}
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	at := func(path string) string {
		if line := lineOf(&root, path); line > 0 {
			return "line " + strconv.Itoa(line) + ": " + path
		}
		return path
	}
	if err := cfg.validate(needRoutes, at); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// validate checks cfg and compiles its routes; at names a field (with its
// line). cmd checks what is its own (addresses, credentials, guards, the
// YAML's units and spelling of off); the edge and the cache check their
// configs (edgeConfig, cacheConfig).
func (cfg *config) validate(needRoutes bool, at func(string) string) error {
	for _, check := range []func(at func(string) string) error{
		cfg.SSE.validate,
		cfg.validateLibraries,
		cfg.NATS.validate,
		cfg.validateSecurity,
		cfg.Cache.validate,
		cfg.Cluster.validate,
		cfg.validateGuards,
	} {
		if err := check(at); err != nil {
			return err
		}
	}
	return cfg.compileRoutes(needRoutes, at)
}

// validate checks nats.url (nats.prefix is the libraries').
func (n *natsConfig) validate(at func(string) string) error {
	if n.URL == "" || strings.ContainsAny(n.URL, " \t\r\n") {
		return fmt.Errorf("%s: %q is not a NATS URL", at("nats.url"), n.URL)
	}
	return nil
}

// validate checks cache.listen (the rest of the section is the cache's).
func (c *cacheConfig) validate(at func(string) string) error {
	if c.Listen != "" {
		if err := checkHostPort(c.Listen); err != nil {
			return fmt.Errorf("%s: %w", at("cache.listen"), err)
		}
	}
	return nil
}

// validate checks the cluster section, membership.Config in YAML.
func (c *clusterConfig) validate(at func(string) string) error {
	for _, d := range []struct {
		field string
		value time.Duration
	}{
		{"cluster.probeInterval", c.ProbeInterval},
		{"cluster.probeTimeout", c.ProbeTimeout},
	} {
		if d.value < 0 {
			return fmt.Errorf("%s: must not be negative", at(d.field))
		}
	}
	if c.Replicas < 1 {
		return fmt.Errorf("%s: must be at least 1", at("cluster.replicas"))
	}
	if c.SuspicionMult < 0 {
		return fmt.Errorf("%s: must not be negative", at("cluster.suspicionMult"))
	}
	if c.Gossip != "" {
		if err := checkHostPort(c.Gossip); err != nil {
			return fmt.Errorf("%s: %w", at("cluster.gossip"), err)
		}
	}
	for i, j := range c.Join {
		if err := checkHostPort(j); err != nil {
			return fmt.Errorf("%s: %w", at(fmt.Sprintf("cluster.join[%d]", i)), err)
		}
	}
	return nil
}

// compileRoutes compiles the routes (edge.CompileRoute) and finds the
// demo page's.
func (cfg *config) compileRoutes(needRoutes bool, at func(string) string) error {
	if needRoutes && len(cfg.Routes) == 0 {
		return fmt.Errorf("%s: at least one route is required", at("routes"))
	}
	cfg.routes = cfg.routes[:0]
	for i, rc := range cfg.Routes {
		r, err := edge.CompileRoute(rc.edge())
		if err != nil {
			// CompileRoute's errors start with the field they are about.
			field, msg, _ := strings.Cut(err.Error(), ": ")
			return fmt.Errorf("%s: %s", at(fmt.Sprintf("routes[%d].%s", i, field)), msg)
		}
		cfg.routes = append(cfg.routes, r)
		if cfg.demoPath == "" {
			cfg.demoPath = rc.demoPath()
		}
	}
	if cfg.SSE.Demo != nil && *cfg.SSE.Demo && cfg.demoPath == "" {
		return fmt.Errorf("%s: the demo page needs a route with a literal path and the key-form id (event.id: '[\"${base64(key)}\",\"${etag}\"]')", at("sse.demo"))
	}
	return nil
}

// edge is the route as edge.RouteConfig.
func (rc *routeConfig) edge() edge.RouteConfig {
	erc := edge.RouteConfig{Topic: rc.With.Topic, TopicPattern: rc.With.TopicPattern, EventID: rc.With.Event.ID, Guarded: rc.Guarded,
		Compression: []string(rc.With.Compression)}
	for _, w := range rc.When {
		erc.Paths = append(erc.Paths, w.Path)
	}
	for _, f := range rc.With.Filters {
		erc.Filters = append(erc.Filters, edge.FilterConfig{Key: f.Key, Headers: f.Headers})
	}
	return erc
}

// demoPath is the route's first literal path if its ids are key-form (the
// demo page keeps a key -> value view), else "".
func (rc *routeConfig) demoPath() string {
	if id, err := proto.ParseIDFormat(rc.With.Event.ID); err != nil || id != proto.IDKeyEtag {
		return ""
	}
	for _, w := range rc.When {
		if !strings.ContainsAny(w.Path, "{*") {
			return w.Path
		}
	}
	return ""
}

// demo reports whether the edge serves the demo page: sse.demo, or in dev
// mode (devDefault) unless sse.demo says false.
func (cfg *config) demo(devDefault bool) bool {
	if cfg.SSE.Demo != nil {
		return *cfg.SSE.Demo && cfg.demoPath != ""
	}
	return devDefault && cfg.demoPath != ""
}

// maxMillis is the most milliseconds a time.Duration holds.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// validate checks what is the sse section's own: its units and spellings
// of off (sse.retry and sse.keepalive 0: off; sse.maxQueue has no 0),
// the addresses, the drain; the edge checks the rest (validateLibraries).
func (s *sseConfig) validate(at func(string) string) error {
	switch {
	case s.Retry < 0:
		return fmt.Errorf("%s: must not be negative (0 writes retry:0)", at("sse.retry"))
	case int64(s.Retry) > maxMillis:
		return fmt.Errorf("%s: at most %d (ms)", at("sse.retry"), maxMillis)
	case int64(s.RetryMax) > maxMillis:
		return fmt.Errorf("%s: at most %d (ms)", at("sse.retryMax"), maxMillis)
	case s.KeepAlive < 0:
		return fmt.Errorf("%s: must not be negative (0 turns keep-alives off)", at("sse.keepalive"))
	case s.MaxQueue < 1:
		return fmt.Errorf("%s: must be at least 1", at("sse.maxQueue"))
	case s.DrainWindow < 0:
		return fmt.Errorf("%s: must not be negative (0 closes every stream at once)", at("sse.drainWindow"))
	}
	if s.Admin != "" {
		if err := checkHostPort(s.Admin); err != nil {
			return fmt.Errorf("%s: %w", at("sse.admin"), err)
		}
	}
	s.trustedProxies = nil
	for i, v := range s.TrustedProxies {
		p, err := parseTrustedProxy(v)
		if err != nil {
			return fmt.Errorf("%s: %w", at(fmt.Sprintf("sse.trustedProxies[%d]", i)), err)
		}
		s.trustedProxies = append(s.trustedProxies, p)
	}
	return nil
}

// parseTrustedProxy reads a CIDR ("10.0.0.0/8") or a single address (its
// own /32 or /128).
func parseTrustedProxy(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil || p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8, fd00::/8) or an address", v)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (10.0.0.0/8, fd00::/8) or an address", v)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// offDuration is a duration that may also be written "off" (or 0, which
// plain durations in YAML refuse): both mean zero.
type offDuration time.Duration

func (d *offDuration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && (n.Value == "off" || n.Value == "0") {
		*d = 0
		return nil
	}
	var v time.Duration
	if err := n.Decode(&v); err != nil {
		return err
	}
	*d = offDuration(v)
	return nil
}

// MarshalYAML writes the duration as it is read: "off" for zero.
func (d offDuration) MarshalYAML() (any, error) {
	if d == 0 {
		return "off", nil
	}
	return time.Duration(d).String(), nil
}

// codingList is sse.compression: a list of content codings, or "off"
// (identity only).
type codingList []string

func (l *codingList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		*l = nil // left out: the default
		return nil
	}
	if n.Kind == yaml.ScalarNode && (n.Value == "off" || n.Value == "false") {
		*l = codingList{"identity"}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	if v == nil {
		v = []string{} // an empty list: edge.Config.Validate names it
	}
	*l = v
	return nil
}

// MarshalYAML writes the list as it is read: "off" for identity only.
func (l codingList) MarshalYAML() (any, error) {
	if l == nil {
		return nil, nil // left out
	}
	if len(l) == 1 && l[0] == "identity" {
		return "off", nil
	}
	return []string(l), nil
}

// retry is sse.retry as edge.Config.Retry: 0 is edge.Off ("retry:0").
func (s *sseConfig) retry() time.Duration {
	if s.Retry == 0 {
		return edge.Off
	}
	return time.Duration(s.Retry) * time.Millisecond
}

// keepAlive is sse.keepalive as edge.Config.KeepAlive: 0 is edge.Off.
func (s *sseConfig) keepAlive() time.Duration {
	if s.KeepAlive == 0 {
		return edge.Off
	}
	return time.Duration(s.KeepAlive)
}

// checkHostPort accepts host:port with a port from 0 to 65535.
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not 0 to 65535", addr, port)
	}
	return nil
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
