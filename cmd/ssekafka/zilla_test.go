package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
)

func setZillaEnv(t *testing.T, kafka string) {
	t.Setenv("KAFKA_BOOTSTRAP_SERVER", kafka)
	t.Setenv("ZILLA_TEST_JWK_N", base64.StdEncoding.EncodeToString(testKey().N.Bytes()))
}

// Kafka options.topics are mapped: defaultOffset historical (what
// ssekafka does: the state, then live) and deltaType none are accepted.
func TestZillaKafkaTopicsOptionsMapped(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	base := readFile(t, "testdata/zilla/sse.kafka.fanout.yaml")
	y := strings.Replace(base, "      bootstrap:\n        - events\n", "      bootstrap:\n        - events\n      topics: [{name: events, defaultOffset: historical, deltaType: none}]\n", 1)
	y = strings.Replace(y, "    kind: cache_client\n", "    kind: cache_client\n    options:\n      topics: [{name: events}]\n", 1)
	if _, err := parseConfig([]byte(y), true); err != nil {
		t.Fatal(err)
	}
}

// The fanout example loads as what it describes: the tcp port, CORS for
// any origin, the sse retry, /events (the http binding's path through the
// sse-kafka route /{topic}) on topic events, the bootstrap topic and the
// Kafka servers; the file serving and telemetry are logged as ignored.
func TestZillaFanoutLoads(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	cfg, err := loadConfig("testdata/zilla/sse.kafka.fanout.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSE.Listen != "127.0.0.1:7114" || cfg.SSE.Retry != 3000 || cfg.SSE.CORS == nil || !reflect.DeepEqual([]string(cfg.SSE.CORS.Origins), []string{"*"}) {
		t.Fatalf("sse: %+v", cfg.SSE)
	}
	if !reflect.DeepEqual(cfg.Kafka.Brokers, []string{"127.0.0.1:9999"}) || !reflect.DeepEqual(cfg.Kafka.Bootstrap, []string{"events"}) {
		t.Fatalf("kafka: %+v", cfg.Kafka)
	}
	if len(cfg.Routes) != 1 || len(cfg.routes) != 1 || cfg.Routes[0].When[0].Path != "/events" || cfg.Routes[0].With.Topic != "events" || len(cfg.Guards) != 0 {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
	notes := strings.Join(cfg.notes, "\n")
	for _, want := range []string{"telemetry ignored"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	// /events is the streams', any other path the filesystem's.
	if p := cfg.zilla.paths; len(p) != 2 || p[0].files != nil || !p[0].re.MatchString("/events") || p[0].re.MatchString("/other") ||
		p[1].re != nil || p[1].files == nil || !strings.HasSuffix(p[1].files.location, filepath.Join("testdata", "zilla", "www")) {
		t.Fatalf("http routes: %+v", p)
	}
	var out bytes.Buffer
	if err := runValidate([]string{"--config", "testdata/zilla/sse.kafka.fanout.yaml"}, &out); err != nil || !strings.Contains(out.String(), "ok (1 routes, 1 bootstrap topics)") {
		t.Fatalf("validate: %v %q", err, out.String())
	}
}

// The jwt example loads with its guard (issuer, audience, key, challenge),
// the credentials' places, CORS with its origin, credentials and max-age,
// and the route guarded with its role.
func TestZillaFanoutJWTLoads(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	cfg, err := loadConfig("testdata/zilla/sse.kafka.fanout.jwt.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := cfg.Guards["jwt0"]
	if !ok || g.Type != "jwt" || g.Options.Issuer != "https://auth.example.com" || g.Options.Audience != "https://api.example.com" || len(g.Options.Keys.inline) != 1 || g.Options.Challenge != 2 {
		t.Fatalf("guard: %+v", g)
	}
	a := cfg.SSE.Authorization["jwt0"].Credentials
	if a.Headers["authorization"] != "Bearer {credentials}" || a.Query["access_token"] != "{credentials}" {
		t.Fatalf("authorization: %+v", a)
	}
	c := cfg.SSE.CORS
	if c == nil || !reflect.DeepEqual([]string(c.Origins), []string{"https://app.example.com"}) || !c.Credentials || c.MaxAge != time.Minute {
		t.Fatalf("cors: %+v", c)
	}
	r := cfg.Routes[0]
	if len(cfg.Routes) != 1 || r.When[0].Path != "/events" || r.With.Topic != "events" || !reflect.DeepEqual(r.Guarded, map[string][]string{"jwt0": {"read:items"}}) ||
		*r.With.Filters[0].Key != "${guarded['jwt0'].identity}" || r.With.Event.ID != `["${base64(key)}","${etag}"]` || cfg.SSE.Listen != "127.0.0.1:7114" {
		t.Fatalf("route: %+v", r)
	}
}

// What cannot be honoured is refused, naming the binding and the field.
func TestZillaRefusalsNameBindingAndField(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	base := readFile(t, "testdata/zilla/sse.kafka.fanout.yaml")
	jwt := readFile(t, "testdata/zilla/sse.kafka.fanout.jwt.yaml")
	for _, tc := range []struct{ old, new, want string }{
		{"access-control:", "foo: 1\n      access-control:", `binding "north_http_server" options.foo: not supported`},
		{"policy: cross-origin", "policy: everyone", `binding "north_http_server" options.access-control.policy: "everyone" is not a policy`},
		{"retry: 3000", "retry: 3000\n      bogus: true", `binding "north_sse_server" options.bogus: not supported`},
		{"retry: 3000", "retry: -1", `line 52: binding "north_sse_server" options.retry: must not be negative`},
		{"          - port: 7114", "          - port: 7115", `binding "north_tcp_server" routes[0].when[0].port: want the listen port 7114`},
		{"type: tcp\n    kind: client\n", "type: tls\n    kind: client\n", `binding "south_tcp_client" type: tls client is not supported`},
		{"    options:\n      servers:", "    options:\n      sasl: {mechanism: plain}\n      servers:", `binding "south_kafka_client" options.sasl: not supported`},
		{"    exit: south_kafka_client\n", "    exit: south_kafka_clinet\n", `binding "south_kafka_cache_server" exit: no binding "south_kafka_clinet"`},
		{"        exit: north_kafka_cache_client\n", "        exit: nowhere\n", `binding "north_sse_kafka_mapping" routes[0].exit: no binding "nowhere"`},
		{"- 7114\n", "- 7114\n        - 7115\n", `binding "north_tcp_server" options.port: want one port`},
		{"topic: ${params.topic}", "topic: ${params.topic}\n          merge: true", `binding "north_sse_kafka_mapping" routes[0].with.merge: not supported`},
		{"type: http-filesystem", "type: grpc", `binding "east_http_filesystem_mapping" type: grpc proxy is not supported`},
		{":scheme: http\n              :path", ":scheme: https\n              :path", `binding "north_http_server" routes[0].when[0].headers.:scheme: "https" is not supported`},
		{"      bootstrap:\n        - events\n", "      bootstrap:\n        - events\n      topics: [{name: events, defaultOffset: live}]\n", `binding "south_kafka_cache_server" options.topics[0].defaultOffset: "live" is not supported`},
		{"      bootstrap:\n        - events\n", "      bootstrap:\n        - events\n      topics: [{name: events, deltaType: json_patch}]\n", `binding "south_kafka_cache_server" options.topics[0].deltaType: "json_patch" is not supported`},
		{"      bootstrap:\n        - events\n", "      bootstrap:\n        - events\n      topics: [{name: events, transforms: []}]\n", `binding "south_kafka_cache_server" options.topics[0].transforms: not supported`},
		{"    kind: cache_client\n", "    kind: cache_client\n    options:\n      topics: [{name: events, value: {model: json}}]\n", `binding "north_kafka_cache_client" options.topics[0].value: not supported`},
		{"name: example\n", "name: example\nvaults:\n  v: {type: hashicorp}\n", `vaults.v.type: "hashicorp" is not supported`},
		{"name: example\n", "name: example\nextra: 1\n", "extra: not supported"},
		{"${{env.KAFKA_BOOTSTRAP_SERVER}}", "${{env.ZILLA_TEST_UNSET}}", "${{env.ZILLA_TEST_UNSET}}: the environment variable is not set"},
	} {
		if !strings.Contains(base, tc.old) {
			t.Fatalf("%q not in the fanout file", tc.old)
		}
		_, err := parseConfig([]byte(strings.Replace(base, tc.old, tc.new, 1)), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "zilla: ") {
			t.Errorf("%q -> %q: error %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
	// Without the http binding's :path, the topic comes from the request:
	// any topic is served, as Zilla does, with a warning naming the route
	// and the ssekafka-only with.topicPattern that restricts it.
	open := strings.Replace(base, "              :path: /events\n", "", 1)
	cfg, err := parseConfig([]byte(open), true)
	if err != nil || len(cfg.Routes) != 1 || cfg.Routes[0].When[0].Path != "/{topic}" || cfg.Routes[0].With.TopicPattern != zillaAnyTopic {
		t.Fatalf("no :path: %v %+v", err, cfg)
	}
	if notes, want := strings.Join(cfg.notes, "\n"), `binding "north_sse_kafka_mapping" routes[0].with.topic: "${params.topic}" serves any topic a request names`; !strings.Contains(notes, want) {
		t.Errorf("notes %q lack %q", notes, want)
	}
	restricted := strings.Replace(open, "          topic: ${params.topic}\n", "          topic: ${params.topic}\n          topicPattern: events|news\n", 1)
	cfg, err = parseConfig([]byte(restricted), true)
	if err != nil || cfg.Routes[0].With.TopicPattern != "events|news" || strings.Contains(strings.Join(cfg.notes, "\n"), "serves any topic") {
		t.Fatalf("with.topicPattern: %v %+v", err, cfg)
	}
	cfg, err = parseConfig([]byte(strings.Replace(open, "      bootstrap:\n        - events\n", "      bootstrap: []\n", 1)), true)
	if err != nil || cfg.Routes[0].With.TopicPattern != zillaAnyTopic {
		t.Errorf("no :path, no bootstrap: %v", err)
	}
	for _, tc := range []struct{ old, new, want string }{
		{"challenge: 2", "challenge: 2\n      foo: x", "guards.jwt0.options.foo: not supported"},
		{"type: jwt", "type: oauth", `guards.jwt0.type: "oauth" is not a guard type`},
		{"        jwt0:\n          credentials:", "        jwt1:\n          credentials:", `binding "north_http_server" options.authorization.jwt1: no guard "jwt1"`},
		{"      authorization:\n        jwt0:\n          credentials:\n            headers:\n              authorization: Bearer {credentials}\n            query:\n              access_token: \"{credentials}\"\n", "", `binding "north_http_server" options.authorization: no credentials for guard jwt0`},
	} {
		if !strings.Contains(jwt, tc.old) {
			t.Fatalf("%q not in the jwt file", tc.old)
		}
		_, err := parseConfig([]byte(strings.Replace(jwt, tc.old, tc.new, 1)), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("jwt %q -> %q: error %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
}

// A topic made from the token (Zilla's ${guarded['g'].identity}-topic) is
// named by the token's issuer: it is served without a topicPattern and
// without the warning of a topic the request names; one that also takes a
// path parameter gets that warning and the pattern.
func TestZillaTopicFromTheTokenIsTrusted(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	t.Setenv("KEYSTORE_PASSWORD", zillaKeystorePassword)
	jwt := readFile(t, "testdata/zilla/sse.kafka.fanout.jwt.tls.yaml")
	for _, tc := range []struct {
		topic, pattern string
		warned         bool
	}{
		{"${guarded['jwt0'].identity}-topic", "", false},
		{"${guarded['jwt0'].identity}-${params.topic}", zillaAnyTopic, true},
	} {
		y := strings.Replace(jwt, "          topic: ${params.topic}\n", "          topic: "+tc.topic+"\n", 1)
		y = strings.Replace(y, "              :path: /events\n", "", 1)
		cfg, err := parseConfig([]byte(y), true)
		if err != nil {
			t.Fatalf("%s: %v", tc.topic, err)
		}
		if len(cfg.Routes) != 1 || cfg.Routes[0].With.Topic != tc.topic || cfg.Routes[0].With.TopicPattern != tc.pattern {
			t.Fatalf("%s: routes %+v, want topicPattern %q", tc.topic, cfg.Routes, tc.pattern)
		}
		if warned := strings.Contains(strings.Join(cfg.notes, "\n"), "serves any topic a request names"); warned != tc.warned {
			t.Errorf("%s: warned %v, want %v (notes %q)", tc.topic, warned, tc.warned, cfg.notes)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// `ssekafka dev --config` of the fanout example serves /events from topic
// events on the tcp binding's port (no --http): a record produced to Kafka
// reaches an SSE client, with the example's CORS; the ignored parts are
// logged.
func TestZillaFanoutDevEndToEnd(t *testing.T) {
	httpAddr, kafkaAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	setZillaEnv(t, kafkaAddr)
	example, err := os.ReadFile("testdata/zilla/sse.kafka.fanout.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(httpAddr)
	config := filepath.Join(t.TempDir(), "zilla.yaml")
	if err := os.WriteFile(config, []byte(strings.ReplaceAll(string(example), "7114", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, "dev", "--config", config, "--kafka", kafkaAddr, "--nats", natsAddr)
	p.waitFor(t, "telemetry ignored")
	p.waitFor(t, "ssekafka dev is up")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prod, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	s := openStream(t, "http://"+httpAddr+"/events", "")
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("k1"), Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Zilla's wire shape: no event:ready; the record comes live or in the state.
	if ev := s.next(t); ev.data != "hello" || ev.id == "" || ev.event != "" {
		t.Fatalf("event %+v, want data hello", ev)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/events", nil)
	req.Header.Set("Origin", "https://elsewhere.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") == "" {
		t.Fatalf("cross-origin GET: %s, allow-origin %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// Only the paths the http binding routes to sse are streams.
	if resp, err := http.Get("http://" + httpAddr + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other: %v %v", resp, err)
	}
}

// The jwt example is never served unguarded: 401 without a token, and a
// token's user sees only its own records (the identity filter).
func TestZillaFanoutJWTServes401WithoutToken(t *testing.T) {
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	kafka := startKafkaTopic(t, "events")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	setZillaEnv(t, kafka)
	cfg, err := loadConfig("testdata/zilla/sse.kafka.fanout.jwt.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SSE.Ready = true // the state is read up to the marker
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &strings.Builder{}}, nil))
	rc, err := startCache(ctx, cfg, cfg.Kafka.Brokers, ns.ClientURL(), log, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); <-rc.done }()
	addr := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serveEdge(ctx, cfg, "127.0.0.1:0", ns.ClientURL(), log, newRegistry(), nil, func(a net.Addr) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a.String()
	case err := <-errc:
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, kv := range [][2]string{{"alice", "a1"}, {"bob", "b1"}} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(kv[0]), Value: []byte(kv[1])}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %s, want 401", resp.Status)
	}
	waitUntil(t, "alice's record", func() bool {
		s := openStream(t, base+"/events?access_token="+zillaToken(t, "alice", time.Now().Add(time.Minute)), "")
		defer s.cancel()
		data, _ := s.untilReady(t)
		if len(data) > 1 || len(data) == 1 && data[0] != "a1" {
			t.Fatalf("alice's state: %q, want [a1]", data)
		}
		return len(data) == 1
	})
}

// A guard is never dropped: guarded on the sse server's routes (as in
// Zilla's sse.jwt) guards the sse-kafka routes behind it, and the http
// binding's authorization alone guards every stream (no roles), with a note.
func TestZillaGuardsAreNeverDropped(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	jwt := readFile(t, "testdata/zilla/sse.kafka.fanout.jwt.yaml")
	routeGuard := "      - guarded:\n          jwt0:\n            - read:items\n        when:"
	if !strings.Contains(jwt, routeGuard) {
		t.Fatal("the jwt file changed")
	}
	unguarded := strings.Replace(jwt, routeGuard, "      - when:", 1)
	onSSE := strings.Replace(unguarded, "    kind: server\n    exit: north_sse_kafka_mapping\n",
		"    kind: server\n    routes:\n      - guarded:\n          jwt0: [read:items]\n        exit: north_sse_kafka_mapping\n", 1)
	for _, tc := range []struct {
		name, yaml string
		want       map[string][]string
		note       string
	}{
		{"on the sse server", onSSE, map[string][]string{"jwt0": {"read:items"}}, ""},
		{"authorization only", unguarded, map[string][]string{"jwt0": nil}, `options.authorization.jwt0: no route names the guard`},
	} {
		cfg, err := parseConfig([]byte(tc.yaml), true)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(cfg.Routes) != 1 || !reflect.DeepEqual(cfg.Routes[0].Guarded, tc.want) {
			t.Errorf("%s: guarded %v, want %v", tc.name, cfg.Routes[0].Guarded, tc.want)
		}
		if notes := strings.Join(cfg.notes, "\n"); !strings.Contains(notes, tc.note) {
			t.Errorf("%s: notes %q lack %q", tc.name, notes, tc.note)
		}
	}
}

// A zilla.yaml gets Zilla's wire shape: no event:ready after the state
// (a check that greps data: lines sees the records only); the sse server's
// ssekafka-only options.ready: true writes it.
func TestZillaWireShapeHasNoReadyMarker(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	base := readFile(t, "testdata/zilla/sse.kafka.fanout.yaml")
	cfg, err := parseConfig([]byte(base), true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SSE.Ready {
		t.Fatal("a zilla.yaml writes event:ready; Zilla writes no marker")
	}
	cfg, err = parseConfig([]byte(strings.Replace(base, "retry: 3000", "retry: 3000\n      ready: true", 1)), true)
	if err != nil || !cfg.SSE.Ready {
		t.Fatalf("options.ready: true: %v, ready %v", err, cfg != nil && cfg.SSE.Ready)
	}
}

// Roles on the sse-kafka route are enforced, so start-up says nothing of a
// guard that no route names.
func TestZillaNoFalseUnnamedGuardWarning(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	cfg, err := loadConfig("testdata/zilla/sse.kafka.fanout.jwt.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(cfg.notes, "\n"); strings.Contains(notes, "no route names the guard") {
		t.Fatalf("false warning: %s", notes)
	}
	if !reflect.DeepEqual(cfg.Routes[0].Guarded, map[string][]string{"jwt0": {"read:items"}}) {
		t.Fatalf("guarded %v", cfg.Routes[0].Guarded)
	}
}
