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
		{"sse:\n  maxQueueBytes: -1\n", "line 2: sse.maxQueueBytes: must not be negative"},
		{"sse:\n  keepalive: soon\n", "line 2"},
		{"nats:\n  prefix: 'a b'\n", "line 2: nats.prefix"},
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
