package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
)

// The edge's and the cache's errors reach the operator with the YAML's
// field names, in the rule too, and the line.
func TestLibraryErrorsNameTheYAMLField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"sse:\n  retry: 5000\n  retryMax: 8000\n", "line 3: sse.retryMax: must be 0 (the default, 30s, or twice sse.retry if more) or at least twice sse.retry (10s), not 8s"},
		{"sse:\n  feedMemoryBytes: 1000\n", "line 2: sse.feedMemoryBytes: must be -1 (Off: no bound), 0 (the default, 256 MiB) or at least 1048576, not 1000"},
		{"sse:\n  writers: 2000\n", "line 2: sse.writers: must be at most 1024, not 2000"},
		{"sse:\n  compression: [gzip, brotli]\n", "line 2: sse.compression: must list identity, gzip or zstd, each once (identity alone: off), not [gzip, brotli]"},
		{"sse:\n  compression: []\n", "line 2: sse.compression: must list identity, gzip or zstd, each once (identity alone: off), not []"},
		{"sse:\n  setupPerAddress: -3\n", "line 2: sse.setupPerAddress: must be -1 (Off: no share), 0 (the default, a quarter of sse.setupConcurrency, or no share where sse.maxConnectionsPerIP is Off) or more, not -3"},
		{"sse:\n  keyReads:\n    minRate: -2\n", "line 3: sse.keyReads.minRate: must be -1 (Off: each write within WriteTimeout), 0 (the default, 64 KiB) or more, not -2"},
		{"nats:\n  prefix: 'a.*'\n", `line 2: nats.prefix: must be a NATS subject prefix (no spaces, '*' or '>'), not "a.*"`},
		{"kafka:\n  bootstrap: [a, b, c]\ncache:\n  maxTopics: 2\n", "line 4: cache.maxTopics: must be 0 (the default, 1000, or more for kafka.bootstrap) or at least one per topic of kafka.bootstrap (3), not 2"},
		{"cache:\n  apartBytes: -1\n", "line 2: cache.apartBytes: must not be negative (0: the default, 64 MiB), not -1"},
		{"cache:\n  topicIdle: -1s\n", "line 2: cache.topicIdle: must not be negative (0: the default, 10m0s), not -1s"},
		{"kafka:\n  brokers: ['a:1', 'b 2']\n", `line 2: kafka.brokers[1]: must be a broker address (host:port), not "b 2"`},
		{"sse:\n  retryMax: 9223372036855\n", "line 2: sse.retryMax: at most 9223372036854 (ms)"},
	} {
		_, err := parseConfig([]byte(tc.yaml), false)
		if err == nil || err.Error() != tc.want {
			t.Errorf("config %q:\nerror %v\nwant  %s", tc.yaml, err, tc.want)
		}
	}
}

// Zero is the library's default in the YAML too: values refused before
// (cache.maxBytes 0, an empty nats.prefix) now mean the default.
func TestYAMLZeroIsTheLibraryDefault(t *testing.T) {
	cfg, err := parseConfig([]byte("cache: {maxBytes: 0}\nnats: {prefix: ''}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.effective(); e.Cache.MaxBytes != cache.DefaultConfig().MaxBytes || e.NATS.Prefix != "ssekafka" {
		t.Fatalf("effective cache.maxBytes %d, nats.prefix %q", e.Cache.MaxBytes, e.NATS.Prefix)
	}
}

// edgeFields and cacheFields name fields the libraries have, as fields
// the YAML has.
func TestLibraryFieldNamesExist(t *testing.T) {
	for _, m := range []struct {
		lib   reflect.Type
		names map[string]string
	}{{reflect.TypeFor[edge.Config](), edgeFields}, {reflect.TypeFor[cache.Config](), cacheFields}} {
		for goName, yamlName := range m.names {
			typ := m.lib
			for _, part := range strings.Split(goName, ".") {
				f, ok := typ.FieldByName(part)
				if !ok {
					t.Errorf("%s: %s has no field %s", goName, m.lib, part)
					break
				}
				typ = f.Type
			}
			if !yamlPathExists(reflect.TypeFor[config](), yamlName) {
				t.Errorf("%s: the YAML has no %s", goName, yamlName)
			}
		}
	}
}

func yamlPathExists(typ reflect.Type, path string) bool {
	for _, part := range strings.Split(path, ".") {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		found := false
		for i := range typ.NumField() {
			if f := typ.Field(i); strings.Split(f.Tag.Get("yaml"), ",")[0] == part {
				typ, found = f.Type, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// sse.compression is a list of codings, or off (identity only); left out,
// the edge's default, which validate --print shows.
func TestYAMLCompression(t *testing.T) {
	for _, tc := range []struct {
		yaml      string
		edge, eff []string
	}{
		{"sse: {}\n", nil, []string{"zstd", "gzip"}},
		{"sse:\n  compression: off\n", []string{"identity"}, []string{"identity"}},
		{"sse:\n  compression: [gzip]\n", []string{"gzip"}, []string{"gzip"}},
	} {
		cfg, err := parseConfig([]byte(tc.yaml), false)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := cfg.edgeConfig().Compression; !reflect.DeepEqual(got, tc.edge) {
			t.Errorf("%q: edge.Config.Compression %q, want %q", tc.yaml, got, tc.edge)
		}
		if got := []string(cfg.effective().SSE.Compression); !reflect.DeepEqual(got, tc.eff) {
			t.Errorf("%q: effective sse.compression %q, want %q", tc.yaml, got, tc.eff)
		}
	}
}

// A route's with.compression reaches its edge.RouteConfig (left out: nil,
// the edge's list); a bad coding is refused with the route's line.
func TestYAMLRouteCompression(t *testing.T) {
	const routes = "routes:\n  - when: [{path: /a}]\n    with: {topic: a, compression: off}\n  - when: [{path: /b}]\n    with: {topic: b, compression: [gzip]}\n  - when: [{path: /c}]\n    with: {topic: c}\n"
	cfg, err := parseConfig([]byte(routes), false)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for i := range cfg.Routes {
		got = append(got, cfg.Routes[i].edge().Compression)
	}
	if want := [][]string{{"identity"}, {"gzip"}, nil}; !reflect.DeepEqual(got, want) {
		t.Fatalf("routes' compression %q, want %q", got, want)
	}
	if _, err := parseConfig([]byte("routes:\n  - when: [{path: /a}]\n    with: {topic: a, compression: [lz4]}\n"), false); err == nil || !strings.Contains(err.Error(), "lz4") {
		t.Fatalf("a bad route coding: %v", err)
	}
}
