// Package route compiles sse-kafka routes (Zilla's when/with/guarded) and
// matches records against their resolved filters.
package route

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/proto"
)

// Config is one sse-kafka route, as in Zilla's binding.
type Config struct {
	// Paths are the route's when[].path patterns: "{name}" captures (greedy,
	// may match "/"), "*" matches anything.
	Paths []string
	// Topic is the Kafka topic, a template.
	Topic string
	// TopicPattern is a regular expression (anchored at both ends) that a
	// topic made from a template must match, checked before any cache
	// request. Required when Topic has a ${params.x}: a route must not
	// serve every topic of the cluster to whoever asks. A topic made only
	// of literals and the guard's claims is named by the token's issuer
	// and needs none (as in Zilla).
	TopicPattern string
	// Filters: the fields of one filter are ANDed, the filters ORed. Empty: every record.
	Filters []FilterConfig
	// EventID is the id template: "${etag}" (default) or `["${base64(key)}","${etag}"]`.
	EventID string
	// Guarded names the guard (one) that verifies the route's clients and
	// the roles their tokens must grant, as Zilla's routes[].guarded.
	// Its expressions ${guarded['NAME'].identity} and
	// ${guarded['NAME'].attributes.x} may be used in the topic and filters.
	Guarded map[string][]string
	// Compression is the content codings the route's streams offer, in
	// order of preference; nil: the edge's.
	Compression []compress.Encoding
}

// FilterConfig matches a record by key and/or headers; values are templates.
type FilterConfig struct {
	Key     *string
	Headers map[string]string
}

// Route is a compiled Config.
type Route struct {
	paths    []*regexp.Regexp
	topic    template
	topicsOK *regexp.Regexp // TopicPattern; nil: any topic the template makes
	filters  []filterTemplate
	idFormat proto.IDFormat
	guard    string   // the guard's name; empty: not guarded
	roles    []string // the roles the guard's tokens must grant
	claims   []string // the guarded expressions its templates use: a token must have each
	// compression is the codings its streams offer; nil: the edge's.
	compression []compress.Encoding
}

type filterTemplate struct {
	key     *template
	headers []headerTemplate // sorted by name
}

type headerTemplate struct {
	name  string
	value template
}

// template is a string with ${...} expressions, resolved against a context.
type template struct {
	parts []templatePart
}

type templatePart struct {
	literal string
	expr    string // e.g. "params.id"; empty for a literal
}

// Context resolves template expressions such as "params.id" or
// "guarded['jwt'].identity" for one request.
type Context map[string]string

// parseTemplate parses s; known checks an expression and returns its
// canonical form (the key it is resolved by).
func parseTemplate(s string, known func(expr string) (string, error)) (template, error) {
	var t template
	for len(s) > 0 {
		i := strings.Index(s, "${")
		if i < 0 {
			t.parts = append(t.parts, templatePart{literal: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, templatePart{literal: s[:i]})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return template{}, fmt.Errorf("unclosed ${ in %q", s)
		}
		expr, err := known(strings.TrimSpace(s[i+2 : i+j]))
		if err != nil {
			return template{}, err
		}
		t.parts = append(t.parts, templatePart{expr: expr})
		s = s[i+j+1:]
	}
	return t, nil
}

// fromRequest reports whether a part of t comes from the request's path
// (${params.x}), which the client chooses, not the token's issuer.
func (t template) fromRequest() bool {
	for _, p := range t.parts {
		if strings.HasPrefix(p.expr, "params.") {
			return true
		}
	}
	return false
}

func (t template) resolve(ctx Context) string {
	if len(t.parts) == 1 && t.parts[0].expr == "" {
		return t.parts[0].literal
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == "" {
			b.WriteString(p.literal)
		} else {
			b.WriteString(ctx[p.expr])
		}
	}
	return b.String()
}

var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Compile validates and compiles a route. Every ${params.x} used must be
// captured by every path of the route; ${guarded['NAME']...} needs the route
// to be guarded by NAME.
func Compile(rc Config) (*Route, error) {
	if len(rc.Paths) == 0 {
		return nil, fmt.Errorf("when: at least one path is required")
	}
	if rc.Topic == "" {
		return nil, fmt.Errorf("with.topic: required")
	}
	rcomp := &routeCompiler{rc: rc, r: &Route{}}
	for _, step := range []func() error{rcomp.guard, rcomp.paths, rcomp.topic, rcomp.filters, rcomp.eventID} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	rcomp.r.compression = slices.Clone(rc.Compression)
	return rcomp.r, nil
}

// routeCompiler compiles one Config, a step at a time.
type routeCompiler struct {
	rc       Config
	r        *Route
	captures []map[string]bool // the parameters each path captures
}

func (rcomp *routeCompiler) guard() error {
	if len(rcomp.rc.Guarded) > 1 {
		return fmt.Errorf("guarded: one guard per route, not %d", len(rcomp.rc.Guarded))
	}
	for name, roles := range rcomp.rc.Guarded {
		if name == "" {
			return fmt.Errorf("guarded: an empty guard name")
		}
		rcomp.r.guard, rcomp.r.roles = name, roles
	}
	return nil
}

func (rcomp *routeCompiler) paths() error {
	for i, p := range rcomp.rc.Paths {
		re, names, err := compilePath(p)
		if err != nil {
			return fmt.Errorf("when[%d].path: %w", i, err)
		}
		rcomp.r.paths = append(rcomp.r.paths, re)
		rcomp.captures = append(rcomp.captures, names)
	}
	return nil
}

// known checks an expression of a template: a parameter every path
// captures, or a claim of the route's guard.
func (rcomp *routeCompiler) known(expr string) (string, error) {
	r := rcomp.r
	if name, ok := strings.CutPrefix(expr, "params."); ok {
		for i, names := range rcomp.captures {
			if !names[name] {
				return "", fmt.Errorf("${%s}: path %q has no {%s}", expr, rcomp.rc.Paths[i], name)
			}
		}
		return expr, nil
	}
	if strings.HasPrefix(expr, "guarded[") {
		key, err := guardedExpr(expr, r.guard)
		if err == nil && !slices.Contains(r.claims, key) {
			r.claims = append(r.claims, key)
		}
		return key, err
	}
	return "", fmt.Errorf("${%s}: unknown expression (want ${params.NAME} or ${guarded['NAME'].identity})", expr)
}

func (rcomp *routeCompiler) topic() error {
	rc, r := rcomp.rc, rcomp.r
	var err error
	if r.topic, err = parseTemplate(rc.Topic, rcomp.known); err != nil {
		return fmt.Errorf("with.topic: %w", err)
	}
	literal := len(r.topic.parts) == 1 && r.topic.parts[0].expr == ""
	switch {
	case literal && rc.TopicPattern != "":
		return fmt.Errorf("with.topicPattern: the topic %q has no expression to check", rc.Topic)
	case literal:
		if err := proto.ValidTopic(rc.Topic); err != nil {
			return fmt.Errorf("with.topic: %w", err)
		}
	case rc.TopicPattern == "" && !r.topic.fromRequest():
		// Made only of the token's claims: its issuer names the topic, as
		// in Zilla; a name unknown to the edge is bounded as any other
		// (lookup.go's rates, the cache's MaxTopics, the feed budget).
	case rc.TopicPattern == "":
		return fmt.Errorf("with.topicPattern: required with a topic made from the request path (%q), or any client could read any topic", rc.Topic)
	default:
		if r.topicsOK, err = regexp.Compile(`^(?:` + rc.TopicPattern + `)$`); err != nil {
			return fmt.Errorf("with.topicPattern: %w", err)
		}
	}
	return nil
}

func (rcomp *routeCompiler) filters() error {
	for i, fc := range rcomp.rc.Filters {
		ft, err := rcomp.filter(fc)
		if err != nil {
			return fmt.Errorf("with.filters[%d]%w", i, err)
		}
		rcomp.r.filters = append(rcomp.r.filters, ft)
	}
	return nil
}

// filter compiles one filter; its errors start with the field's path below
// the filter (".key: ...").
func (rcomp *routeCompiler) filter(fc FilterConfig) (filterTemplate, error) {
	var ft filterTemplate
	if fc.Key == nil && len(fc.Headers) == 0 {
		return ft, fmt.Errorf(": needs key or headers")
	}
	if fc.Key != nil {
		kt, err := parseTemplate(*fc.Key, rcomp.known)
		if err != nil {
			return ft, fmt.Errorf(".key: %w", err)
		}
		ft.key = &kt
	}
	for name, v := range fc.Headers {
		vt, err := parseTemplate(v, rcomp.known)
		if err != nil {
			return ft, fmt.Errorf(".headers.%s: %w", name, err)
		}
		ft.headers = append(ft.headers, headerTemplate{name: name, value: vt})
	}
	sort.Slice(ft.headers, func(a, b int) bool { return ft.headers[a].name < ft.headers[b].name })
	return ft, nil
}

func (rcomp *routeCompiler) eventID() error {
	var err error
	if rcomp.r.idFormat, err = proto.ParseIDFormat(rcomp.rc.EventID); err != nil {
		return fmt.Errorf("with.event.id: %w", err)
	}
	return nil
}

// Guard is the name of the guard that verifies the route's clients; empty:
// not guarded.
func (r *Route) Guard() string { return r.guard }

// Roles are the roles the guard's tokens must grant.
func (r *Route) Roles() []string { return r.roles }

// Claims are the guarded expressions the route's templates use: a token
// must have each.
func (r *Route) Claims() []string { return r.claims }

// IDFormat is the route's event id format.
func (r *Route) IDFormat() proto.IDFormat { return r.idFormat }

// Compression is the content codings the route's streams offer, in order
// of preference; nil: the edge's.
func (r *Route) Compression() []compress.Encoding { return r.compression }

// Topic resolves the route's topic template for a request.
func (r *Route) Topic(ctx Context) string { return r.topic.resolve(ctx) }

// AllowsTopic reports whether a resolved topic may be served by the route.
func (r *Route) AllowsTopic(topic string) bool {
	return r.topicsOK == nil || r.topicsOK.MatchString(topic)
}

// compilePath turns a Zilla path pattern into an anchored regexp.
func compilePath(pattern string) (*regexp.Regexp, map[string]bool, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, nil, fmt.Errorf("%q must start with /", pattern)
	}
	names := map[string]bool{}
	var b strings.Builder
	b.WriteString("^")
	for s := pattern; len(s) > 0; {
		switch {
		case s[0] == '{':
			j := strings.IndexByte(s, '}')
			if j < 0 {
				return nil, nil, fmt.Errorf("%q: unclosed {", pattern)
			}
			name := s[1:j]
			if !paramName.MatchString(name) || names[name] {
				return nil, nil, fmt.Errorf("%q: bad or repeated parameter name %q", pattern, name)
			}
			names[name] = true
			fmt.Fprintf(&b, "(?P<%s>.+)", name)
			s = s[j+1:]
		case s[0] == '*':
			b.WriteString(".*")
			s = s[1:]
		default:
			j := strings.IndexAny(s, "{*")
			if j < 0 {
				j = len(s)
			}
			b.WriteString(regexp.QuoteMeta(s[:j]))
			s = s[j:]
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, nil, fmt.Errorf("%q: %w", pattern, err)
	}
	return re, names, nil
}

// Match returns the route's params for path, or false.
func (r *Route) Match(path string) (Context, bool) {
	for _, re := range r.paths {
		m := re.FindStringSubmatch(path)
		if m == nil {
			continue
		}
		ctx := Context{}
		for i, name := range re.SubexpNames() {
			if name != "" {
				ctx["params."+name] = m[i]
			}
		}
		return ctx, true
	}
	return nil, false
}

// Filter is a resolved filter.
type Filter struct {
	Key     *string
	headers []resolvedHeader
}

type resolvedHeader struct {
	name  string
	value []byte
}

// ResolveFilters resolves the route's filters and returns them with a
// canonical string naming them (views with equal strings share frames).
func (r *Route) ResolveFilters(ctx Context) ([]Filter, string) {
	var fs []Filter
	var b strings.Builder
	for _, ft := range r.filters {
		var f Filter
		b.WriteString("|")
		if ft.key != nil {
			k := ft.key.resolve(ctx)
			f.Key = &k
			fmt.Fprintf(&b, "k%q", k)
		}
		for _, h := range ft.headers {
			v := h.value.resolve(ctx)
			f.headers = append(f.headers, resolvedHeader{name: h.name, value: []byte(v)})
			fmt.Fprintf(&b, "h%q=%q", h.name, v)
		}
		fs = append(fs, f)
	}
	return fs, b.String()
}

// Matches reports whether rec passes the filters (ORed; fields ANDed). A
// tombstone passes a filter's header conditions when its own headers match
// them, when the headers of the record it deletes did (so a client that
// could hold the key learns of its delete, one that never could does not),
// or when the cache did not know that record (it may have been compacted
// away: the client may hold the key, so it is told).
func Matches(fs []Filter, rec *proto.Record) bool {
	if len(fs) == 0 {
		return true
	}
	for i := range fs {
		if fs[i].match(rec) {
			return true
		}
	}
	return false
}

func (f *Filter) match(rec *proto.Record) bool {
	if f.Key != nil && (rec.KeyNull || string(rec.Key) != *f.Key) {
		return false
	}
	if f.headersMatch(rec.Headers) {
		return true
	}
	return rec.Tombstone && (!rec.SupersededKnown || f.headersMatch(rec.SupersededHeaders))
}

// headersMatch reports whether every header condition of f is among hs.
func (f *Filter) headersMatch(hs []proto.Header) bool {
	for _, h := range f.headers {
		found := false
		for _, rh := range hs {
			if rh.Key == h.name && string(rh.Value) == string(h.value) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// guardedExprRE is ${guarded['NAME'].identity} or ${guarded['NAME'].attributes.x}
// (quotes single or double).
var guardedExprRE = regexp.MustCompile(`^guarded\[\s*(?:'([^']+)'|"([^"]+)")\s*\]\.(identity|attributes\.([A-Za-z_][A-Za-z0-9_-]*))$`)

// guardedExpr checks a guard expression against the route's guard and
// returns its canonical form, the key a request's Context holds it by.
func guardedExpr(expr, routeGuard string) (string, error) {
	m := guardedExprRE.FindStringSubmatch(expr)
	if m == nil {
		return "", fmt.Errorf("${%s}: want ${guarded['NAME'].identity} or ${guarded['NAME'].attributes.NAME}", expr)
	}
	name := m[1] + m[2]
	if name != routeGuard {
		return "", fmt.Errorf("${%s}: the route is not guarded by %q (guarded: {%s: [...]})", expr, name, name)
	}
	if m[4] != "" {
		return GuardedKey(name, "attributes."+m[4]), nil
	}
	return GuardedKey(name, "identity"), nil
}

// GuardedKey is the key a request's Context holds a guard's value by.
func GuardedKey(name, what string) string { return "guarded['" + name + "']." + what }
