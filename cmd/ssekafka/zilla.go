package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// A zilla.yaml (top-level name, bindings, guards, vaults, telemetry) is
// translated into a config, then validated as any config is. What the
// translation cannot honour is refused with the binding and field named;
// bindings that only serve files and telemetry are ignored with a note that
// is logged at start. A guard is never dropped.

// zillaFile is the top level of a zilla.yaml.
type zillaFile struct {
	Name      string                  `yaml:"name"`
	Bindings  map[string]zillaBinding `yaml:"bindings"`
	Guards    map[string]guardConfig  `yaml:"guards"`
	Vaults    map[string]yaml.Node    `yaml:"vaults"`
	Telemetry yaml.Node               `yaml:"telemetry"`
}

type zillaBinding struct {
	Type    string       `yaml:"type"`
	Kind    string       `yaml:"kind"`
	Vault   string       `yaml:"vault"`
	Options yaml.Node    `yaml:"options"`
	Routes  []zillaRoute `yaml:"routes"`
	Exit    string       `yaml:"exit"`
}

type zillaRoute struct {
	When    []yaml.Node         `yaml:"when"` // its shape depends on the binding type
	Exit    string              `yaml:"exit"`
	With    yaml.Node           `yaml:"with"`
	Guarded map[string][]string `yaml:"guarded"`
}

type zillaTCPOptions struct {
	Host string    `yaml:"host"`
	Port yaml.Node `yaml:"port"` // a port or a list of ports
}

type zillaTCPWhen struct {
	Port yaml.Node `yaml:"port"`
	Cidr string    `yaml:"cidr"`
}

type zillaHTTPOptions struct {
	Versions      []string                       `yaml:"versions"`
	AccessControl *zillaAccessControl            `yaml:"access-control"`
	Authorization map[string]authorizationConfig `yaml:"authorization"`
}

type zillaAccessControl struct {
	Policy string `yaml:"policy"`
	Allow  *struct {
		Origins     []string `yaml:"origins"`
		Credentials bool     `yaml:"credentials"`
	} `yaml:"allow"`
	MaxAge int `yaml:"max-age"` // seconds
}

type zillaHTTPWhen struct {
	Headers map[string]string `yaml:"headers"`
}

type zillaSSEOptions struct {
	Retry *int `yaml:"retry"`
	// Ready (ssekafka only): true writes event:ready after the state, as
	// an ssekafka config does; Zilla writes no marker, so the default is false.
	Ready *bool `yaml:"ready"`
}

type zillaSSEKafkaWhen struct {
	Path string `yaml:"path"`
}

type zillaSSEKafkaWith struct {
	Topic   string `yaml:"topic"`
	Filters []struct {
		Key     *string           `yaml:"key"`
		Headers map[string]string `yaml:"headers"`
	} `yaml:"filters"`
	Event struct {
		ID string `yaml:"id"`
	} `yaml:"event"`
}

type zillaCacheServerOptions struct {
	Bootstrap []string `yaml:"bootstrap"`
}

// zillaKafkaClientOptions: sasl is refused by checkFields (our secrets are
// files or environment variables, not inline values).
type zillaKafkaClientOptions struct {
	Servers []string `yaml:"servers"`
}

// zillaIgnored are binding types that serve no stream: their routes'
// requests get 404 here.
var zillaIgnored = map[string]string{
	"http-filesystem": "ssekafka serves no files",
	"filesystem":      "ssekafka serves no files",
}

// isZilla reports whether a YAML document has Zilla's top-level shape.
func isZilla(data []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return false
	}
	for _, k := range []string{"bindings", "name", "vaults", "telemetry"} {
		if key, _ := mappingEntry(root.Content[0], k); key != nil {
			return true
		}
	}
	return false
}

var zillaEnv = regexp.MustCompile(`\$\{\{\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// expandZillaEnv replaces ${{env.NAME}} as Zilla does; an unset variable is an error.
func expandZillaEnv(data []byte) ([]byte, error) {
	var missing []string
	out := zillaEnv.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(zillaEnv.FindSubmatch(m)[1])
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("zilla: ${{env.%s}}: the environment variable is not set", missing[0])
	}
	return out, nil
}

// checkFields refuses mapping keys of n that t (a struct, through slices,
// maps and pointers) does not have, naming the first by its path.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	if n == nil || n.Kind == 0 || t == reflect.TypeOf(yaml.Node{}) {
		return nil
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()) {
		return nil
	}
	join := func(k string) string {
		if strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) >= 0 || k == "" {
			k = strconv.Quote(k) // a key with spaces, dots or colons, named so it can be found
		}
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			f, ok := fieldByTag(t, k)
			if !ok {
				return fmt.Errorf("%s: not supported", join(k))
			}
			if err := checkFields(n.Content[i+1], f.Type, join(k)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkFields(n.Content[i+1], t.Elem(), join(n.Content[i].Value)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if err := checkFields(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// decodeStrict checks n's fields against v's type, then decodes it.
func decodeStrict(n *yaml.Node, v any, path string) error {
	if n == nil || n.Kind == 0 {
		return nil
	}
	if err := checkFields(n, reflect.TypeOf(v).Elem(), path); err != nil {
		return err
	}
	if err := n.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// zillaTranslation is the state of one translation.
type zillaTranslation struct {
	z      zillaFile
	root   yaml.Node
	cfg    config
	origin map[string]string // our field path prefix -> Zilla field path
}

// bindingErr names a binding's field, as "binding "x" options.port".
func bindingField(name, field string) string {
	return fmt.Sprintf("binding %q %s", name, field)
}

// parseZilla translates a zilla.yaml into a config and validates it.
func parseZilla(data []byte, needRoutes bool) (*config, error) {
	data, err := expandZillaEnv(data)
	if err != nil {
		return nil, err
	}
	t := &zillaTranslation{cfg: defaultConfig(), origin: map[string]string{}}
	t.cfg.SSE.Ready = false // Zilla's wire shape: no event:ready
	if err := yaml.Unmarshal(data, &t.root); err != nil {
		return nil, fmt.Errorf("zilla: %w", err)
	}
	if err := checkFields(&t.root, reflect.TypeOf(zillaFile{}), ""); err != nil {
		return nil, fmt.Errorf("zilla: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&t.z); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("zilla: %w", err)
	}
	if err := t.translate(); err != nil {
		return nil, fmt.Errorf("zilla: %w", err)
	}
	cfg := t.cfg
	if err := cfg.validate(needRoutes, t.at); err != nil {
		return nil, fmt.Errorf("zilla: %w", err)
	}
	return &cfg, nil
}

// at names one of our fields by where it came from in the zilla.yaml.
func (t *zillaTranslation) at(field string) string {
	best := ""
	for p := range t.origin {
		if (field == p || strings.HasPrefix(field, p+".") || strings.HasPrefix(field, p+"[")) && len(p) > len(best) {
			best = p
		}
	}
	zpath := field
	if best != "" {
		zpath = t.origin[best] + field[len(best):]
	}
	name := zpath
	if rest, ok := strings.CutPrefix(zpath, "bindings."); ok {
		b, f, _ := strings.Cut(rest, ".")
		name = bindingField(b, f)
	}
	if line := lineOf(&t.root, zpath); line > 0 {
		return "line " + strconv.Itoa(line) + ": " + name
	}
	return name
}

func (t *zillaTranslation) note(format string, args ...any) {
	t.cfg.notes = append(t.cfg.notes, fmt.Sprintf("zilla: "+format, args...))
}

func (t *zillaTranslation) binding(name, typ, kind string) (zillaBinding, error) {
	b, ok := t.z.Bindings[name]
	if !ok {
		return b, fmt.Errorf("no binding %q", name)
	}
	if b.Type != typ || (kind != "" && b.Kind != kind) {
		return b, fmt.Errorf("binding %q is %s %s, want %s %s", name, b.Type, b.Kind, typ, kind)
	}
	return b, nil
}

func (t *zillaTranslation) translate() error {
	z := &t.z
	if len(z.Vaults) > 0 {
		return fmt.Errorf("vaults.%s: not supported (ssekafka reads TLS keys from files: sse.tls for the edge, kafka.tls, nats.tls)", sortedKeys(z.Vaults)[0])
	}
	if z.Telemetry.Kind != 0 {
		t.note("telemetry ignored: ssekafka's metrics are Prometheus text at the admin listener's /metrics (sse.admin), logs go to stderr")
	}
	if len(z.Bindings) == 0 {
		return errors.New("bindings: at least one is required")
	}
	t.cfg.Guards = z.Guards
	for name := range z.Guards {
		t.origin["guards."+name] = "guards." + name
	}
	var tcpServers, httpServers, sseServers, sseKafka []string
	for _, name := range sortedKeys(z.Bindings) {
		b := z.Bindings[name]
		if _, ok := z.Bindings[b.Exit]; b.Exit != "" && !ok {
			return fmt.Errorf("%s: no binding %q", bindingField(name, "exit"), b.Exit)
		}
		for i, r := range b.Routes {
			if _, ok := z.Bindings[r.Exit]; !ok {
				return fmt.Errorf("%s: no binding %q", bindingField(name, fmt.Sprintf("routes[%d].exit", i)), r.Exit)
			}
		}
		if b.Vault != "" {
			return fmt.Errorf("%s: not supported (no vaults)", bindingField(name, "vault"))
		}
		switch b.Type + " " + b.Kind {
		case "tcp server":
			tcpServers = append(tcpServers, name)
		case "http server":
			httpServers = append(httpServers, name)
		case "sse server":
			sseServers = append(sseServers, name)
		case "sse-kafka proxy":
			sseKafka = append(sseKafka, name)
		case "kafka cache_client":
			if b.Options.Kind != 0 {
				return fmt.Errorf("%s: not supported", bindingField(name, "options"))
			}
		case "kafka cache_server":
			var o zillaCacheServerOptions
			if err := decodeStrict(&b.Options, &o, "options"); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			t.cfg.Kafka.Bootstrap = append(t.cfg.Kafka.Bootstrap, o.Bootstrap...)
			t.origin["kafka.bootstrap"] = "bindings." + name + ".options.bootstrap"
		case "kafka client":
			var o zillaKafkaClientOptions
			if err := decodeStrict(&b.Options, &o, "options"); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			if len(o.Servers) > 0 {
				t.cfg.Kafka.Brokers = o.Servers
				t.origin["kafka.brokers"] = "bindings." + name + ".options.servers"
			}
		case "tcp client":
			// Kafka's bootstrap servers when the kafka client names none.
			var o zillaTCPOptions
			if err := decodeStrict(&b.Options, &o, "options"); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			if o.Host != "" {
				ports, err := zillaPorts(&o.Port)
				if err != nil || len(ports) != 1 {
					return fmt.Errorf("%s: want one port", bindingField(name, "options.port"))
				}
				if _, set := t.origin["kafka.brokers"]; !set {
					t.cfg.Kafka.Brokers = []string{net.JoinHostPort(o.Host, strconv.Itoa(ports[0]))}
					t.origin["kafka.brokers"] = "bindings." + name + ".options"
				}
			}
		default:
			if why, ok := zillaIgnored[b.Type]; ok {
				t.note("binding %q (%s) ignored: %s; its requests get 404", name, b.Type, why)
				continue
			}
			return fmt.Errorf("%s: %s %s is not supported (ssekafka takes tcp server, http server, sse server, sse-kafka proxy, kafka cache_client, cache_server and client, tcp client)", bindingField(name, "type"), b.Type, b.Kind)
		}
	}
	if len(tcpServers) > 1 {
		return fmt.Errorf("%s: one tcp server is supported, not %d", bindingField(tcpServers[1], "type"), len(tcpServers))
	}
	if len(tcpServers) == 1 {
		if err := t.tcpServer(tcpServers[0]); err != nil {
			return err
		}
	}
	if len(httpServers) > 1 {
		return fmt.Errorf("%s: one http server is supported, not %d", bindingField(httpServers[1], "type"), len(httpServers))
	}
	used := map[string]bool{}
	if len(httpServers) == 1 {
		if err := t.httpServer(httpServers[0], used); err != nil {
			return err
		}
	}
	for _, name := range append(sseServers, sseKafka...) {
		if !used[name] {
			return fmt.Errorf("%s: no route of the http server leads here", bindingField(name, "type"))
		}
	}
	return nil
}

// zillaPorts reads a port, a list of ports or "a-b" ranges as Zilla writes them.
func zillaPorts(n *yaml.Node) ([]int, error) {
	var one int
	if n.Kind == yaml.ScalarNode && n.Decode(&one) == nil {
		return []int{one}, nil
	}
	var l []int
	if err := n.Decode(&l); err != nil {
		return nil, err
	}
	return l, nil
}

func (t *zillaTranslation) tcpServer(name string) error {
	b := t.z.Bindings[name]
	var o zillaTCPOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	ports, err := zillaPorts(&o.Port)
	if err != nil || len(ports) != 1 {
		return fmt.Errorf("%s: want one port (ssekafka listens on one address)", bindingField(name, "options.port"))
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1" // our default; Zilla's examples write host: 0.0.0.0
	}
	t.cfg.SSE.Listen = net.JoinHostPort(host, strconv.Itoa(ports[0]))
	t.origin["sse.listen"] = "bindings." + name + ".options.port"
	for i, r := range b.Routes {
		for j := range r.When {
			var w zillaTCPWhen
			if err := decodeStrict(&r.When[j], &w, fmt.Sprintf("routes[%d].when[%d]", i, j)); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			if w.Cidr != "" {
				return fmt.Errorf("%s: not supported", bindingField(name, fmt.Sprintf("routes[%d].when[%d].cidr", i, j)))
			}
			if w.Port.Kind != 0 {
				if p, err := zillaPorts(&w.Port); err != nil || len(p) != 1 || p[0] != ports[0] {
					return fmt.Errorf("%s: want the listen port %d", bindingField(name, fmt.Sprintf("routes[%d].when[%d].port", i, j)), ports[0])
				}
			}
		}
		if len(r.Guarded) > 0 || r.With.Kind != 0 {
			return fmt.Errorf("%s: guarded and with are not supported on a tcp route", bindingField(name, fmt.Sprintf("routes[%d]", i)))
		}
		if _, err := t.binding(r.Exit, "http", "server"); err != nil {
			return fmt.Errorf("%s: %w", bindingField(name, fmt.Sprintf("routes[%d].exit", i)), err)
		}
	}
	return nil
}

func (t *zillaTranslation) httpServer(name string, used map[string]bool) error {
	b := t.z.Bindings[name]
	var o zillaHTTPOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if len(o.Versions) > 0 && !slices.Contains(o.Versions, "http/1.1") {
		return fmt.Errorf("%s: ssekafka serves http/1.1 (put an HTTP/2 proxy in front for h2)", bindingField(name, "options.versions"))
	}
	if ac := o.AccessControl; ac != nil {
		switch ac.Policy {
		case "same-origin", "":
			if ac.Allow != nil || ac.MaxAge != 0 {
				return fmt.Errorf("%s: allow and max-age need policy cross-origin", bindingField(name, "options.access-control"))
			}
		case "cross-origin":
			c := &corsConfig{Origins: corsOrigins{"*"}}
			if ac.Allow != nil {
				if len(ac.Allow.Origins) > 0 {
					c.Origins = ac.Allow.Origins
				}
				c.Credentials = ac.Allow.Credentials
			}
			if ac.MaxAge < 0 {
				return fmt.Errorf("%s: must not be negative", bindingField(name, "options.access-control.max-age"))
			}
			c.MaxAge = secondsDuration(ac.MaxAge)
			t.cfg.SSE.CORS = c
			t.origin["sse.cors"] = "bindings." + name + ".options.access-control"
		default:
			return fmt.Errorf("%s: %q is not a policy (want same-origin or cross-origin)", bindingField(name, "options.access-control.policy"), ac.Policy)
		}
	}
	t.cfg.SSE.Authorization = o.Authorization
	t.origin["sse.authorization"] = "bindings." + name + ".options.authorization"
	for g := range o.Authorization {
		if _, ok := t.z.Guards[g]; !ok {
			return fmt.Errorf("%s: no guard %q in guards", bindingField(name, "options.authorization."+g), g)
		}
	}
	for i, r := range b.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		var paths []string
		for j := range r.When {
			var w zillaHTTPWhen
			if err := decodeStrict(&r.When[j], &w, fmt.Sprintf("%s.when[%d]", field, j)); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			for h, v := range w.Headers {
				switch h {
				case ":path":
					if strings.ContainsAny(v, "*{") {
						return fmt.Errorf("%s: a pattern is not supported here (put it in the sse-kafka route's path)", bindingField(name, fmt.Sprintf("%s.when[%d].headers.:path", field, j)))
					}
					paths = append(paths, v)
				case ":scheme":
					if v != "http" {
						return fmt.Errorf("%s: %q is not supported here (a zilla.yaml translates to plain http; for TLS set sse.tls in an ssekafka config)", bindingField(name, fmt.Sprintf("%s.when[%d].headers.:scheme", field, j)), v)
					}
				default:
					return fmt.Errorf("%s: not supported", bindingField(name, fmt.Sprintf("%s.when[%d].headers.%s", field, j, h)))
				}
			}
		}
		exit, ok := t.z.Bindings[r.Exit]
		if !ok {
			return fmt.Errorf("%s: no binding %q", bindingField(name, field+".exit"), r.Exit)
		}
		if why, ok := zillaIgnored[exit.Type]; ok {
			if len(r.Guarded) > 0 {
				// Nothing is served there, so nothing is left unguarded.
				t.note("binding %q %s.guarded ignored with its exit %q: %s", name, field, r.Exit, why)
			}
			continue
		}
		if exit.Type != "sse" || exit.Kind != "server" {
			return fmt.Errorf("%s: %s %s is not supported (want an sse server)", bindingField(name, field+".exit"), exit.Type, exit.Kind)
		}
		if r.With.Kind != 0 {
			return fmt.Errorf("%s: not supported", bindingField(name, field+".with"))
		}
		if err := t.sseServer(r.Exit, paths, mergeGuarded(r.Guarded, nil), o.Authorization, used); err != nil {
			return err
		}
	}
	return nil
}

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
		if _, err := t.binding(r.Exit, "kafka", ""); err != nil {
			return fmt.Errorf("%s: %w", bindingField(name, field+".exit"), err)
		}
		var rc routeConfig
		for j := range r.When {
			var w zillaSSEKafkaWhen
			if err := decodeStrict(&r.When[j], &w, fmt.Sprintf("%s.when[%d]", field, j)); err != nil {
				return fmt.Errorf("binding %q %w", name, err)
			}
			rc.When = append(rc.When, struct {
				Path string `yaml:"path"`
			}{w.Path})
		}
		var with zillaSSEKafkaWith
		if err := decodeStrict(&r.With, &with, field+".with"); err != nil {
			return fmt.Errorf("binding %q %w", name, err)
		}
		rc.Exit = r.Exit
		rc.With.Topic = with.Topic
		rc.With.Event.ID = with.Event.ID
		for _, f := range with.Filters {
			rc.With.Filters = append(rc.With.Filters, struct {
				Key     *string           `yaml:"key"`
				Headers map[string]string `yaml:"headers"`
			}{f.Key, f.Headers})
		}
		rc.Guarded = mergeGuarded(guarded, r.Guarded)
		for _, g := range authOnly {
			if _, ok := rc.Guarded[g]; !ok {
				t.note("binding %q options.authorization.%s: no route names the guard; the streams of %q %s are guarded by it (no roles required)", t.httpName(), g, name, field)
				rc.Guarded = mergeGuarded(rc.Guarded, map[string][]string{g: nil})
			}
		}
		routes := []routeConfig{rc}
		if len(httpPaths) > 0 {
			// The http binding routes only these paths here: each one that
			// this route matches becomes a route of its own, its params
			// resolved (Zilla matches the same path at both bindings).
			routes = nil
			for _, p := range httpPaths {
				if c, ok := concreteRoute(rc, p); ok {
					routes = append(routes, c)
				}
			}
		}
		for _, c := range routes {
			if strings.Contains(c.With.Topic, "${") {
				// Zilla serves any topic the template makes; we serve the
				// topics the cache bootstraps, or refuse.
				if len(t.cfg.Kafka.Bootstrap) == 0 {
					return fmt.Errorf("%s: the topic %q is made from the request; ssekafka serves such a route only for the kafka cache_server's options.bootstrap topics, and none are listed", bindingField(name, field+".with.topic"), c.With.Topic)
				}
				q := make([]string, len(t.cfg.Kafka.Bootstrap))
				for k, topic := range t.cfg.Kafka.Bootstrap {
					q[k] = regexp.QuoteMeta(topic)
				}
				c.With.TopicPattern = strings.Join(q, "|")
			}
			t.origin[fmt.Sprintf("routes[%d]", len(t.cfg.Routes))] = "bindings." + name + "." + field
			t.cfg.Routes = append(t.cfg.Routes, c)
		}
	}
	return nil
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

// mergeGuarded is the union of two guarded maps (roles of both required).
func mergeGuarded(a, b map[string][]string) map[string][]string {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := map[string][]string{}
	for _, m := range []map[string][]string{a, b} {
		for g, roles := range m {
			for _, r := range roles {
				if !slices.Contains(out[g], r) {
					out[g] = append(out[g], r)
				}
			}
			if _, ok := out[g]; !ok {
				out[g] = nil
			}
		}
	}
	return out
}

func secondsDuration(s int) time.Duration { return time.Duration(s) * time.Second }

// logNotes logs what a zilla.yaml had that is ignored.
func (cfg *config) logNotes(log *slog.Logger) {
	for _, n := range cfg.notes {
		log.Warn(n)
	}
}
