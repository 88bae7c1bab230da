package main

import (
	"strings"
	"testing"
	"time"
)

func TestExampleConfig(t *testing.T) {
	cfg, err := loadConfig("", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.routes) != 2 || cfg.SSE.Retry != 2000 || cfg.SSE.KeepAlive != 15*time.Second ||
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
	if cfg.SSE != want.SSE || cfg.NATS != want.NATS || cfg.Cache != want.Cache || cfg.Kafka.Brokers[0] != want.Kafka.Brokers[0] {
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
		{"routes:\n  - when: [{path: /x}]\n    with: {topic: t}\n    guarded: {jwt: [read]}\n", "line 4: routes[0].guarded: guards are not supported yet"},
		{"kafka:\n  bootstrap: [ok, 'bad topic']\n", "line 2: kafka.bootstrap[1]"},
		{"sse:\n  retry: -1\n", "line 2: sse.retry: must not be negative"},
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

func FuzzParseConfig(f *testing.F) {
	f.Add(exampleConfig)
	f.Add([]byte("routes:\n  - when: [{path: /a/{id}}]\n    with: {topic: 't-${params.id}', filters: [{key: '${params.id}', headers: {h: v}}]}\n"))
	f.Add([]byte("sse: {retry: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig(data, false)
		if err != nil {
			return
		}
		if len(cfg.routes) != len(cfg.Routes) {
			t.Fatalf("%d routes compiled of %d", len(cfg.routes), len(cfg.Routes))
		}
	})
}
