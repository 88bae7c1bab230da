package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	Vaults    map[string]zillaVault   `yaml:"vaults"`
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
	// TopicPattern (ssekafka only) restricts a topic made from the request
	// to the topics this regular expression matches (anchored).
	TopicPattern string `yaml:"topicPattern"`
}

type zillaCacheServerOptions struct {
	Bootstrap []string          `yaml:"bootstrap"`
	Topics    []zillaCacheTopic `yaml:"topics"`
}

// zillaCacheTopic is a topic of the cache server's options.topics; the
// cache client's has a name only here (key and value models are refused).
type zillaCacheTopic struct {
	Name          string `yaml:"name"`
	DefaultOffset string `yaml:"defaultOffset"`
	DeltaType     string `yaml:"deltaType"`
}

type zillaCacheClientOptions struct {
	Topics []struct {
		Name string `yaml:"name"`
	} `yaml:"topics"`
}

// zillaKafkaClientOptions: sasl is refused by checkFields (our secrets are
// files or environment variables, not inline values).
type zillaKafkaClientOptions struct {
	Servers []string `yaml:"servers"`
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
	scheme string            // "http", or "https" behind a tls binding
	serve  zillaServe        // what the http binding serves, the TLS keys
	vault  map[string]zillaVaultOptions
	sseRaw map[string]bool // sse servers reached: true if with their sse-kafka routes as they are
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
	t := &zillaTranslation{cfg: defaultConfig(), origin: map[string]string{}, sseRaw: map[string]bool{}}
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
	cfg.zilla = &t.serve
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

// zillaSouth are the Kafka side's bindings, each read on its own.
var zillaSouth = map[string]func(t *zillaTranslation, name string) error{
	"kafka cache_client": (*zillaTranslation).kafkaCacheClient,
	"kafka cache_server": (*zillaTranslation).kafkaCacheServer,
	"kafka client":       (*zillaTranslation).kafkaClient,
	"tcp client":         (*zillaTranslation).tcpClient,
}

// zillaNorth are the bindings a request passes, read from the tcp server on.
var zillaNorth = map[string]bool{
	"tcp server": true, "tls server": true, "http server": true, "sse server": true,
	"sse-kafka proxy": true, "http-filesystem proxy": true, "filesystem server": true,
}

func (t *zillaTranslation) translate() error {
	z := &t.z
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
	if err := t.vaults(); err != nil {
		return err
	}
	north := map[string][]string{}
	for _, name := range sortedKeys(z.Bindings) {
		if err := t.checkExits(name); err != nil {
			return err
		}
		b := z.Bindings[name]
		kind := b.Type + " " + b.Kind
		if read, ok := zillaSouth[kind]; ok {
			if err := read(t, name); err != nil {
				return err
			}
			continue
		}
		if !zillaNorth[kind] {
			return fmt.Errorf("%s: %s is not supported (ssekafka takes tcp and tls server, http server, sse server, sse-kafka proxy, http-filesystem proxy, filesystem server, kafka cache_client, cache_server and client, tcp client)", bindingField(name, "type"), kind)
		}
		north[kind] = append(north[kind], name)
	}
	return t.north(north)
}

// checkExits refuses exits that name no binding, and a vault anywhere but
// on a tls binding.
func (t *zillaTranslation) checkExits(name string) error {
	b := t.z.Bindings[name]
	if _, ok := t.z.Bindings[b.Exit]; b.Exit != "" && !ok {
		return fmt.Errorf("%s: no binding %q", bindingField(name, "exit"), b.Exit)
	}
	for i, r := range b.Routes {
		if _, ok := t.z.Bindings[r.Exit]; !ok {
			return fmt.Errorf("%s: no binding %q", bindingField(name, fmt.Sprintf("routes[%d].exit", i)), r.Exit)
		}
	}
	if b.Vault != "" && b.Type != "tls" {
		return fmt.Errorf("%s: not supported (a vault holds the keys of a tls binding)", bindingField(name, "vault"))
	}
	return nil
}

// north reads the chain a request passes: tcp server, tls server (if any),
// http server, then what its routes lead to.
func (t *zillaTranslation) north(byKind map[string][]string) error {
	for _, kind := range []string{"tcp server", "tls server", "http server"} {
		if n := byKind[kind]; len(n) > 1 {
			return fmt.Errorf("%s: one %s is supported, not %d", bindingField(n[1], "type"), kind, len(n))
		}
	}
	t.scheme = "http"
	if n := byKind["tcp server"]; len(n) == 1 {
		if err := t.tcpServer(n[0]); err != nil {
			return err
		}
	}
	if n := byKind["tls server"]; len(n) == 1 {
		if err := t.tlsServer(n[0]); err != nil {
			return err
		}
	}
	used := map[string]bool{}
	if n := byKind["http server"]; len(n) == 1 {
		if err := t.httpServer(n[0], used); err != nil {
			return err
		}
	}
	for _, kind := range []string{"sse server", "sse-kafka proxy"} {
		for _, name := range byKind[kind] {
			if !used[name] {
				return fmt.Errorf("%s: no route of the http server leads here", bindingField(name, "type"))
			}
		}
	}
	for _, kind := range []string{"http-filesystem proxy", "filesystem server"} {
		for _, name := range byKind[kind] {
			if !used[name] {
				t.note("binding %q (%s) ignored: no route of the http server leads here", name, kind)
			}
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
