package route

import (
	"strings"
	"testing"

	"github.com/ssekafka/ssekafka/proto"
)

func TestRouteMatchAndResolve(t *testing.T) {
	r, err := Compile(Config{
		Paths:        []string{"/items/{id}", "/v1/*/things/{id}"},
		Topic:        "items-${params.id}",
		TopicPattern: `items-[0-9]+`,
		Filters:      []FilterConfig{{Key: ptr("${params.id}"), Headers: map[string]string{"tenant": "t-${params.id}"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/items/7":           "7",
		"/items/a/b":         "a/b", // greedy, as in Zilla
		"/v1/x/y/things/42":  "42",
		"/items/":            "",
		"/itemsX/7":          "",
		"/v1/things/42/more": "",
	} {
		ctx, ok := r.Match(path)
		if ok != (want != "") || (ok && ctx["params.id"] != want) {
			t.Errorf("%s: match %v %v, want %q", path, ok, ctx, want)
		}
	}
	ctx, _ := r.Match("/items/7")
	if got := r.Topic(ctx); got != "items-7" || !r.AllowsTopic(got) {
		t.Fatal(got)
	}
	for _, topic := range []string{"items-7x", "xitems-7", "secret-internal", "items-"} {
		if r.AllowsTopic(topic) {
			t.Errorf("topic %q allowed by items-[0-9]+", topic)
		}
	}
	fs, key := r.ResolveFilters(ctx)
	if *fs[0].Key != "7" || string(fs[0].headers[0].value) != "t-7" || key == "" {
		t.Fatalf("%+v %q", fs, key)
	}
	rec := &proto.Record{Key: []byte("7"), Headers: []proto.Header{{Key: "tenant", Value: []byte("t-7")}}}
	if !Matches(fs, rec) {
		t.Fatal("record should match")
	}
	rec.Headers[0].Value = []byte("other")
	if Matches(fs, rec) {
		t.Fatal("header mismatch should not match")
	}
	if !Matches(fs, &proto.Record{Key: []byte("7"), Tombstone: true}) {
		t.Fatal("a tombstone of the key must reach the client")
	}
	if Matches(fs, &proto.Record{KeyNull: true}) {
		t.Fatal("a null key never matches a key filter")
	}
}

func TestFiltersAreORedAndFieldsANDed(t *testing.T) {
	r, err := Compile(Config{Paths: []string{"/x"}, Topic: "t", Filters: []FilterConfig{
		{Key: ptr("a"), Headers: map[string]string{"h": "1"}},
		{Key: ptr("b")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	fs, _ := r.ResolveFilters(Context{})
	h1 := []proto.Header{{Key: "h", Value: []byte("1")}}
	for _, tc := range []struct {
		rec  proto.Record
		want bool
	}{
		{proto.Record{Key: []byte("a"), Headers: h1}, true},
		{proto.Record{Key: []byte("a")}, false},
		{proto.Record{Key: []byte("b")}, true},
		{proto.Record{Key: []byte("c"), Headers: h1}, false},
		// A tombstone passes header conditions by its own headers, by those
		// of the record it deletes, or when that record is unknown.
		{proto.Record{Key: []byte("a"), Tombstone: true, Headers: h1, SupersededKnown: true}, true},
		{proto.Record{Key: []byte("a"), Tombstone: true, SupersededKnown: true, SupersededHeaders: h1}, true},
		{proto.Record{Key: []byte("a"), Tombstone: true, SupersededKnown: true}, false},
		{proto.Record{Key: []byte("a"), Tombstone: true}, true},
		{proto.Record{Key: []byte("c"), Tombstone: true}, false},
	} {
		if got := Matches(fs, &tc.rec); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.rec.Key, got, tc.want)
		}
	}
}

func TestCompileRouteErrors(t *testing.T) {
	for _, tc := range []struct {
		rc   Config
		want string
	}{
		{Config{Topic: "t"}, "when"},
		{Config{Paths: []string{"/x"}}, "with.topic"},
		{Config{Paths: []string{"x"}, Topic: "t"}, "must start with /"},
		{Config{Paths: []string{"/x/{id"}, Topic: "t"}, "unclosed"},
		{Config{Paths: []string{"/x"}, Topic: "${params.id}"}, "has no {id}"},
		{Config{Paths: []string{"/x/{id}"}, Topic: "${params.id}"}, "with.topicPattern: required"},
		{Config{Paths: []string{"/x/{id}"}, Topic: "${params.id}", TopicPattern: "("}, "with.topicPattern: error parsing"},
		{Config{Paths: []string{"/x/{id}"}, Topic: "${guarded['jwt'].identity}-${params.id}", Guarded: map[string][]string{"jwt": nil}}, "with.topicPattern: required"},
		{Config{Paths: []string{"/x"}, Topic: "tasks", TopicPattern: "t.*"}, "no expression to check"},
		{Config{Paths: []string{"/x/{id}", "/y"}, Topic: "${params.id}", TopicPattern: ".+"}, `path "/y" has no {id}`},
		{Config{Paths: []string{"/x"}, Topic: "${guarded['jwt'].identity}", TopicPattern: ".+"}, `not guarded by "jwt"`},
		{Config{Paths: []string{"/x"}, Topic: "${guarded['jwt'].identity}", TopicPattern: ".+", Guarded: map[string][]string{"other": nil}}, `not guarded by "jwt"`},
		{Config{Paths: []string{"/x"}, Topic: "${guarded['jwt'].roles}", TopicPattern: ".+", Guarded: map[string][]string{"jwt": nil}}, "want ${guarded['NAME'].identity}"},
		{Config{Paths: []string{"/x"}, Topic: "t", Guarded: map[string][]string{"a": nil, "b": nil}}, "one guard per route"},
		{Config{Paths: []string{"/x"}, Topic: "${nope}"}, "unknown expression"},
		{Config{Paths: []string{"/x"}, Topic: "${params.id"}, "unclosed ${"},
		{Config{Paths: []string{"/x"}, Topic: "bad topic"}, "not allowed"},
		{Config{Paths: []string{"/x"}, Topic: "t", EventID: "${key}"}, "with.event.id"},
		{Config{Paths: []string{"/x"}, Topic: "t", Filters: []FilterConfig{{}}}, "needs key or headers"},
	} {
		_, err := Compile(tc.rc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.rc, err, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }
