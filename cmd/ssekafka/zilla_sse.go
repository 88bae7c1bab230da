package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The sse server and the sse-kafka proxy behind it: each sse-kafka route
// becomes one of our routes (or one per literal path the http binding
// sends here), with the guards of every binding on the way.

func (t *zillaTranslation) sseServer(name string, paths []string, guarded map[string][]string, auth map[string]authorizationConfig, used map[string]bool) error {
	b := t.z.Bindings[name]
	used[name] = true
	var o zillaSSEOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if o.Retry != nil {
		t.cfg.SSE.Retry = *o.Retry
		t.origin["sse.retry"] = "bindings." + name + ".options.retry"
	}
	if o.Ready != nil {
		t.cfg.SSE.Ready = *o.Ready
	}
	exits := []string{}
	if b.Exit != "" {
		exits = append(exits, b.Exit)
	}
	var routeGuards map[string][]string
	for i, r := range b.Routes {
		if len(r.When) > 0 || r.With.Kind != 0 {
			return fmt.Errorf("%s: when and with are not supported on an sse server route (put them in the sse-kafka routes)", bindingField(name, fmt.Sprintf("routes[%d]", i)))
		}
		routeGuards = mergeGuarded(routeGuards, r.Guarded)
		exits = append(exits, r.Exit)
	}
	guarded = mergeGuarded(guarded, routeGuards)
	// A guard that the http binding takes credentials for guards what it
	// leads to, even with no route naming it: never serve it unguarded.
	var authOnly []string
	for _, g := range sortedKeys(auth) {
		if _, ok := guarded[g]; !ok {
			authOnly = append(authOnly, g)
		}
	}
	for i, exit := range exits {
		if _, err := t.binding(exit, "sse-kafka", "proxy"); err != nil {
			return fmt.Errorf("%s: %w", bindingField(name, "exit"), err)
		}
		if slices.Contains(exits[:i], exit) {
			continue
		}
		if err := t.sseKafka(exit, paths, guarded, authOnly, used); err != nil {
			return err
		}
	}
	return nil
}

func (t *zillaTranslation) httpName() string {
	for _, name := range sortedKeys(t.z.Bindings) {
		if b := t.z.Bindings[name]; b.Type == "http" && b.Kind == "server" {
			return name
		}
	}
	return ""
}

// sseKafka translates the sse-kafka binding's routes; guarded is what the
// bindings before it require, authOnly the guards that the http binding
// takes credentials for and no binding before names.
func (t *zillaTranslation) sseKafka(name string, httpPaths []string, guarded map[string][]string, authOnly []string, used map[string]bool) error {
	b := t.z.Bindings[name]
	used[name] = true
	if b.Options.Kind != 0 {
		return fmt.Errorf("%s: not supported", bindingField(name, "options"))
	}
	if b.Exit != "" {
		return fmt.Errorf("%s: not supported (each route names its exit)", bindingField(name, "exit"))
	}
	for i, r := range b.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		rc, err := t.sseKafkaRoute(name, field, r)
		if err != nil {
			return err
		}
		rc.Guarded = mergeGuarded(guarded, r.Guarded)
		for _, g := range authOnly {
			if _, ok := rc.Guarded[g]; !ok {
				t.note("binding %q options.authorization.%s: no route names the guard; the streams of %q %s are guarded by it (no roles required)", t.httpName(), g, name, field)
				rc.Guarded = mergeGuarded(rc.Guarded, map[string][]string{g: nil})
			}
		}
		if err := t.addRoutes(name, field, rc, httpPaths); err != nil {
			return err
		}
	}
	return nil
}

// sseKafkaRoute reads one sse-kafka route as one of our routes.
func (t *zillaTranslation) sseKafkaRoute(name, field string, r zillaRoute) (routeConfig, error) {
	var rc routeConfig
	if _, err := t.binding(r.Exit, "kafka", ""); err != nil {
		return rc, fmt.Errorf("%s: %w", bindingField(name, field+".exit"), err)
	}
	for j := range r.When {
		var w zillaSSEKafkaWhen
		if err := decodeStrict(&r.When[j], &w, fmt.Sprintf("%s.when[%d]", field, j)); err != nil {
			return rc, fmt.Errorf("binding %q %w", name, err)
		}
		rc.When = append(rc.When, struct {
			Path string `yaml:"path"`
		}{w.Path})
	}
	var with zillaSSEKafkaWith
	if err := decodeStrict(&r.With, &with, field+".with"); err != nil {
		return rc, fmt.Errorf("binding %q %w", name, err)
	}
	rc.Exit = r.Exit
	rc.With.Topic = with.Topic
	rc.With.TopicPattern = with.TopicPattern
	rc.With.Event.ID = with.Event.ID
	for _, f := range with.Filters {
		rc.With.Filters = append(rc.With.Filters, struct {
			Key     *string           `yaml:"key"`
			Headers map[string]string `yaml:"headers"`
		}{f.Key, f.Headers})
	}
	return rc, nil
}

// addRoutes adds rc: once for each literal path that the http binding
// routes here and rc matches, its params resolved (Zilla matches the same
// path at both bindings), or as it is when the http binding lets any path
// or a pattern through.
func (t *zillaTranslation) addRoutes(name, field string, rc routeConfig, httpPaths []string) error {
	routes := []routeConfig{rc}
	if len(httpPaths) > 0 {
		routes = nil
		for _, p := range httpPaths {
			if c, ok := concreteRoute(rc, p); ok {
				routes = append(routes, c)
			}
		}
	}
	for _, c := range routes {
		switch {
		case !strings.Contains(c.With.Topic, "${"):
			c.With.TopicPattern = "" // a literal topic after all (a literal :path resolved it)
		case !strings.Contains(strings.ReplaceAll(c.With.Topic, " ", ""), "${params."):
			// Made of the token's claims: its issuer names the topic, as in
			// Zilla; the edge needs no pattern for it (edge.RouteConfig).
		case c.With.TopicPattern == "":
			// Zilla serves any topic the request names; so do we, within
			// cache.maxTopics and the edge's feed budget, and say so.
			t.note("binding %q %s.with.topic: %q serves any topic a request names (at most cache.maxTopics at once); restrict it with the ssekafka-only with.topicPattern, a regular expression such as %q",
				name, field, c.With.Topic, zillaTopicsExample(t.cfg.Kafka.Bootstrap))
			c.With.TopicPattern = zillaAnyTopic
		}
		t.origin[fmt.Sprintf("routes[%d]", len(t.cfg.Routes))] = "bindings." + name + "." + field
		t.cfg.Routes = append(t.cfg.Routes, c)
	}
	return nil
}

// zillaAnyTopic matches every Kafka topic name (proto.ValidTopic's grammar).
const zillaAnyTopic = `[a-zA-Z0-9._-]{1,249}`

// zillaTopicsExample is a topicPattern for the bootstrap topics, to suggest.
func zillaTopicsExample(bootstrap []string) string {
	if len(bootstrap) == 0 {
		return "events|news"
	}
	q := make([]string, len(bootstrap))
	for k, topic := range bootstrap {
		q[k] = regexp.QuoteMeta(topic)
	}
	return strings.Join(q, "|")
}

// concreteRoute matches a literal path against rc's path patterns and, if
// one matches, returns rc for that path alone with ${params.x} resolved.
func concreteRoute(rc routeConfig, path string) (routeConfig, bool) {
	for _, w := range rc.When {
		re, names := zillaPathRegexp(w.Path)
		m := re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		sub := func(s string) string {
			for i, n := range names {
				if n != "" {
					s = strings.ReplaceAll(s, "${params."+n+"}", m[i+1])
				}
			}
			return s
		}
		out := rc
		out.When = []struct {
			Path string `yaml:"path"`
		}{{path}}
		out.With.Topic = sub(rc.With.Topic)
		out.With.Filters = nil
		for _, f := range rc.With.Filters {
			nf := f
			if f.Key != nil {
				k := sub(*f.Key)
				nf.Key = &k
			}
			if f.Headers != nil {
				nf.Headers = map[string]string{}
				for h, v := range f.Headers {
					nf.Headers[h] = sub(v)
				}
			}
			out.With.Filters = append(out.With.Filters, nf)
		}
		return out, true
	}
	return rc, false
}

var zillaPathPart = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}|\*`)

// zillaPathRegexp compiles a Zilla path: {name} captures (greedy, may
// match /), * matches anything. names has one entry per group ("" for *).
func zillaPathRegexp(p string) (*regexp.Regexp, []string) {
	var sb strings.Builder
	var names []string
	sb.WriteString("^")
	last := 0
	for _, m := range zillaPathPart.FindAllStringSubmatchIndex(p, -1) {
		sb.WriteString(regexp.QuoteMeta(p[last:m[0]]))
		sb.WriteString("(.*)")
		if m[2] >= 0 {
			names = append(names, p[m[2]:m[3]])
		} else {
			names = append(names, "")
		}
		last = m[1]
	}
	sb.WriteString(regexp.QuoteMeta(p[last:]))
	sb.WriteString("$")
	return regexp.MustCompile(sb.String()), names
}
