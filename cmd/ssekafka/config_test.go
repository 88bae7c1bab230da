package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig("", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.routes) != 3 || cfg.demoPath != "/keyed/tasks" || !cfg.demo(true) || cfg.demo(false) || cfg.SSE.Retry != 2000 || cfg.SSE.keepAlive() != 15*time.Second ||
		cfg.Kafka.Bootstrap[0] != "tasks" || cfg.Cache.TombstoneHorizon != 24*time.Hour || cfg.NATS.Prefix != "ssekafka" {
		t.Fatalf("%+v", cfg)
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig([]byte("routes:\n  - when: [{path: /x}]\n    with: {topic: x}\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if !reflect.DeepEqual(cfg.SSE, want.SSE) || cfg.NATS != want.NATS || cfg.Cache != want.Cache || cfg.Kafka.Brokers[0] != want.Kafka.Brokers[0] {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestConfigErrorsNameFieldAndLine(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sse:\n  retri: 5\n", "line 2: field retri not found"},
		{"routes:\n  - when: [{path: /x}]\n    with: {topic: x, filterz: []}\n", "line 3: field filterz not found"},
		{"routes:\n  - when: [{path: /x}]\n    with:\n      event: {id: x}\n", "line 3: routes[0].with.topic: required"},
		{"routes:\n  - when: [{path: /x}]\n    with:\n      topic: ${params.id}\n", "line 4: routes[0].with.topic: ${params.id}: path \"/x\" has no {id}"},
		{"routes:\n  - when: [{path: /x}]\n    with:\n      topic: t\n      filters:\n        - key: ${nope\n", "line 6: routes[0].with.filters[0].key: unclosed ${"},
		{"routes:\n  - when: [{path: x}]\n    with: {topic: t}\n", "line 2: routes[0].when[0].path:"},
		{"routes:\n  - when: [{path: /x}]\n    with: {topic: t, event: {id: '${key}'}}\n", "line 3: routes[0].with.event.id:"},
		{"routes:\n  - when: [{path: /x}]\n    with: {topic: t}\n    guarded: {jwt: [read]}\n", "line 4: routes[0].guarded: unknown guard \"jwt\""},
		{"kafka:\n  bootstrap: [ok, 'bad topic']\n", "line 2: kafka.bootstrap[1]"},
		{"sse:\n  retry: -1\n", "line 2: sse.retry: must not be negative"},
		{"sse:\n  listen: :1\n  keepalive: -1s\n", "line 3: sse.keepalive: must not be negative"},
		{"sse:\n  maxQueue: 0\n", "line 2: sse.maxQueue: must be at least 1"},
		{"sse:\n  maxQueue: -3\n", "line 2: sse.maxQueue: must be at least 1"},
		{"sse:\n  setupConcurrency: -1\n", "line 2: sse.setupConcurrency: must not be negative"},
		{"sse:\n  releaseAfterBurst: -2\n", "line 2: sse.releaseAfterBurst: must be -1"},
		{"sse:\n  resumeRingBytes: -2\n", "line 2: sse.resumeRingBytes: must be -1"},
		{"sse:\n  resumeRingAge: -1s\n", "line 2: sse.resumeRingAge: must not be negative"},
		{"sse:\n  feedMemoryBytes: 1000\n", "line 2: sse.feedMemoryBytes: must be -1"},
		{"sse:\n  feedMemoryBytes: -2\n", "line 2: sse.feedMemoryBytes: must be -1"},
		{"sse:\n  ready: maybe\n", "line 2"},
		{"sse:\n  setupQueue: -1\n", "line 2: sse.setupQueue: must not be negative"},
		{"sse:\n  maxConnections: -1\n", "line 2: sse.maxConnections: must not be negative"},
		{"sse:\n  maxConnectionsPerIP: -2\n", "line 2: sse.maxConnectionsPerIP: must be -1"},
		{"sse:\n  setupPerAddress: -2\n", "line 2: sse.setupPerAddress: must be -1"},
		{"sse:\n  setupQueuePerAddress: -2\n", "line 2: sse.setupQueuePerAddress: must be -1"},
		{"sse:\n  stateWriteTimeout: -1s\n", "line 2: sse.stateWriteTimeout: must not be negative"},
		{"sse:\n  stateMinRate: -1\n", "line 2: sse.stateMinRate: must not be negative"},
		{"sse:\n  retryMax: 1000\n", "line 2: sse.retryMax: must be 0"},
		{"sse:\n  trustedProxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n", "line 4: sse.trustedProxies[1]: \"10.0.0.0/33\" is not a CIDR"},
		{"sse:\n  trustedProxies: [caddy]\n", "line 2: sse.trustedProxies[0]: \"caddy\" is not a CIDR"},
		{"sse:\n  retry: 5000\n  retryMax: 8000\n", "line 3: sse.retryMax: must be 0"},
		{"sse:\n  drainWindow: -1s\n", "line 2: sse.drainWindow: must not be negative"},
		{"nats:\n  credentials:\n    ownIdentity: true\n", "nats.credentials.ownIdentity: an own identity is the user of a credsFile"},
		{"sse:\n  adminToken: secret\n", "line 2: a secret is written {file: PATH} or {env: NAME}, not inline"},
		{"sse:\n  admin: nowhere\n", "line 2: sse.admin"},
		{"sse:\n  maxQueueBytes: -1\n", "line 2: sse.maxQueueBytes: must not be negative"},
		{"sse:\n  keepalive: soon\n", "line 2"},
		{"nats:\n  prefix: 'a b'\n", "line 2: nats.prefix"},
		{"kafka:\n  brokers: []\n", "line 2: kafka.brokers: at least one broker"},
		{"kafka:\n  brokers:\n    - a:9092\n    - ''\n", "line 4: kafka.brokers[1]"},
		{"nats:\n  url: ''\n", "line 2: nats.url"},
		{"cache:\n  tombstoneHorizon: -1s\n", "line 2: cache.tombstoneHorizon: must not be negative"},
		{"cache:\n  maxPageBytes: -1\n", "line 2: cache.maxPageBytes: must not be negative"},
		{"cache:\n  maxBytes: 1048575\n", "line 2: cache.maxBytes: at least 1048576"},
		{"cache:\n  listen: nowhere\n", "line 2: cache.listen"},
		{"cluster:\n  replicas: 0\n", "line 2: cluster.replicas: must be at least 1"},
		{"cluster:\n  probeInterval: -1s\n", "line 2: cluster.probeInterval: must not be negative"},
		{"cluster:\n  probeTimeout: -1ms\n", "line 2: cluster.probeTimeout: must not be negative"},
		{"cluster:\n  suspicionMult: -1\n", "line 2: cluster.suspicionMult: must not be negative"},
		{"cluster:\n  gossip: 0.0.0.0:99999\n", "line 2: cluster.gossip"},
		{"cluster:\n  join: [a:7946, b]\n", "line 2: cluster.join[1]"},
		{"routes: []\n", "routes: at least one route"},
		{"routes: [\n", "yaml"},
	} {
		_, err := parseConfig([]byte(tc.yaml), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}

// sse.trustedProxies takes CIDRs and single addresses, down to the edge's
// prefixes.
func TestTrustedProxiesParsed(t *testing.T) {
	cfg, err := parseConfig([]byte("sse: {trustedProxies: [172.16.0.0/12, 127.0.0.2, 'fd00::/8']}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(cfg.SSE.trustedProxies)
	if want := "[172.16.0.0/12 127.0.0.2/32 fd00::/8]"; got != want {
		t.Fatalf("trusted proxies %s, want %s", got, want)
	}
}

// Zero means zero where it means something: sse.retry 0 writes retry:0,
// sse.keepalive 0 turns comments off; sse.ready false drops event:ready.
func TestSSEZeroValuesAreExpressible(t *testing.T) {
	cfg, err := parseConfig([]byte("sse: {retry: 0, keepalive: 0, ready: false, releaseAfterBurst: -1}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSE.retry() != edge.Off || cfg.SSE.keepAlive() != edge.Off || cfg.SSE.Ready || cfg.SSE.ReleaseAfterBurst != -1 {
		t.Fatalf("%+v", cfg.SSE)
	}
	if cfg, err = parseConfig([]byte("sse: {keepalive: off}\n"), false); err != nil || cfg.SSE.keepAlive() != edge.Off {
		t.Fatalf("keepalive off: %+v, %v", cfg, err)
	}
	cfg, err = parseConfig([]byte("sse: {retry: 1500, keepalive: 5s}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSE.retry() != 1500*time.Millisecond || cfg.SSE.keepAlive() != 5*time.Second || !cfg.SSE.Ready {
		t.Fatalf("%+v", cfg.SSE)
	}
}

// FuzzParseConfig checks, for any input: a refused config's error names a
// field (or is the YAML decoder's own); an accepted config has every route
// compiled and every number in range, and marshals to YAML that parses to
// the same config.
func FuzzParseConfig(f *testing.F) {
	f.Add(exampleConfig)
	f.Add([]byte("routes:\n  - when: [{path: /a/{id}}]\n    with: {topic: 't-${params.id}', filters: [{key: '${params.id}', headers: {h: v}}]}\n"))
	f.Add([]byte("sse: {retry: 1}\n"))
	f.Add([]byte("cache: {tombstoneHorizon: 1h, maxPageBytes: 0, maxBytes: 1048576, listen: ':9464'}\ncluster: {gossip: ':7946', join: ['a:1'], replicas: 3, probeInterval: 1s}\n"))
	f.Add([]byte("cluster: {replicas: -1}\n"))
	f.Add([]byte(zillaJWTConfig("sse: {cors: {origins: '*', maxAge: 1m}}\n")))
	f.Add([]byte("guards: {g: {type: jwt, options: {keys: 'https://k/jwks', challenge: 5, leeway: 1s}}}\nsse: {authorization: {g: {credentials: {query: {t: '{credentials}'}}}}}\n"))
	for _, z := range []string{"testdata/zilla/sse.kafka.fanout.yaml", "testdata/zilla/sse.kafka.fanout.jwt.yaml"} {
		b, err := os.ReadFile(z)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(zillaEnv.ReplaceAll(b, []byte("127.0.0.1:9092"))) // n: not a key, refused by name
	}
	named := regexp.MustCompile(`^(yaml: |line \d+: field .+ not found \(|(line \d+: )?(sse|routes|kafka|nats|cache|cluster|guards)\b|zilla: (yaml: |(line \d+: )?(binding "|bindings|guards|vaults|telemetry|([^ :"]|"([^"\\]|\\.)*")+: not supported|\$\{\{env\.)))`)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data, false)
		if err != nil {
			if !named.MatchString(err.Error()) {
				t.Fatalf("refused without naming a field: %v", err)
			}
			return
		}
		if bad := outOfRange(cfg); bad != "" {
			t.Fatalf("accepted with %s", bad)
		}
		again, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg2, err := parseConfig(again, false)
		if err != nil {
			t.Fatalf("accepted config re-marshalled is refused: %v\n%s", err, again)
		}
		if again2, _ := yaml.Marshal(cfg2); !bytes.Equal(again, again2) {
			t.Fatalf("config changed on a round trip:\n%s\n---\n%s", again, again2)
		}
	})
}

// outOfRange names the first value of an accepted config that parseConfig
// should have refused, or returns "".
func outOfRange(cfg *config) string {
	switch {
	case len(cfg.routes) != len(cfg.Routes):
		return fmt.Sprintf("%d routes compiled of %d", len(cfg.routes), len(cfg.Routes))
	case len(cfg.Kafka.Brokers) == 0 || slices.Contains(cfg.Kafka.Brokers, ""):
		return fmt.Sprintf("kafka.brokers %q", cfg.Kafka.Brokers)
	case cfg.NATS.URL == "" || cfg.NATS.Prefix == "":
		return fmt.Sprintf("nats %+v", cfg.NATS)
	case cfg.Cache.TombstoneHorizon < 0 || cfg.Cache.MaxPageBytes < 0 || cfg.Cache.MaxBytes != 0 && cfg.Cache.MaxBytes < 1<<20: // 0: the default
		return fmt.Sprintf("cache %+v", cfg.Cache)
	case cfg.Cluster.Replicas < 1 || cfg.Cluster.ProbeInterval < 0 || cfg.Cluster.ProbeTimeout < 0 || cfg.Cluster.SuspicionMult < 0:
		return fmt.Sprintf("cluster %+v", cfg.Cluster)
	}
	for _, t := range cfg.Kafka.Bootstrap {
		if proto.ValidTopic(t) != nil {
			return fmt.Sprintf("kafka.bootstrap %q", t)
		}
	}
	for _, addr := range append([]string{cfg.Cache.Listen, cfg.Cluster.Gossip}, cfg.Cluster.Join...) {
		if addr != "" && checkHostPort(addr) != nil {
			return fmt.Sprintf("address %q", addr)
		}
	}
	return ""
}

func TestValidateCommand(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, exampleConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("sse:\n  retry: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runValidate([]string{"--config", good}, &out); err != nil || !strings.Contains(out.String(), "ok (3 routes") {
		t.Fatalf("good config: %v, %q", err, out.String())
	}
	if err := runValidate([]string{"--config", bad}, &out); err == nil || !strings.Contains(err.Error(), "line 2: sse.retry") {
		t.Fatalf("bad config: %v", err)
	}
	if err := runValidate(nil, &out); err == nil {
		t.Fatal("no --config accepted")
	}
	var v strings.Builder
	printVersion(&v)
	if !strings.HasPrefix(v.String(), "ssekafka ") || !strings.Contains(v.String(), "go1.") {
		t.Fatalf("version %q", v.String())
	}
}

func TestDemoNeedsAKeyedLiteralRoute(t *testing.T) {
	_, err := parseConfig([]byte("sse: {demo: true}\nroutes: [{when: [{path: /t}], with: {topic: t}}]\n"), true)
	if err == nil || !strings.Contains(err.Error(), "sse.demo") {
		t.Fatalf("error %v", err)
	}
	cfg, err := parseConfig([]byte("sse: {demo: false}\nroutes: [{when: [{path: /k}], with: {topic: t, event: {id: '[\"${base64(key)}\",\"${etag}\"]'}}}]\n"), true)
	if err != nil || cfg.demo(true) {
		t.Fatalf("sse.demo false in dev mode: %v, %v", err, cfg.demo(true))
	}
}
