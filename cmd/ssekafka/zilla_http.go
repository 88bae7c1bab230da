package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The http server binding: its options give the edge's CORS and where
// tokens are read; its routes say which paths are streams (through the sse
// server) and which are files (through http-filesystem).

type zillaHTTPFilesystemPath struct {
	Path string `yaml:"path"`
}

type zillaFilesystemOptions struct {
	Location string `yaml:"location"`
}

func (t *zillaTranslation) httpServer(name string, used map[string]bool) error {
	b := t.z.Bindings[name]
	var o zillaHTTPOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if err := t.httpVersions(name, o.Versions); err != nil {
		return err
	}
	if err := t.httpAccessControl(name, o.AccessControl); err != nil {
		return err
	}
	t.cfg.SSE.Authorization = o.Authorization
	t.origin["sse.authorization"] = "bindings." + name + ".options.authorization"
	for g := range o.Authorization {
		if _, ok := t.z.Guards[g]; !ok {
			return fmt.Errorf("%s: no guard %q in guards", bindingField(name, "options.authorization."+g), g)
		}
	}
	for i, r := range b.Routes {
		if err := t.httpRoute(name, i, r, o.Authorization, used); err != nil {
			return err
		}
	}
	return nil
}

// httpVersions: http/1.1 and h2 are served; h2 over TLS (ALPN). On plain
// http the edge answers HTTP/1.1, which is what a client asking to upgrade
// to h2c (curl --http2) goes on with.
func (t *zillaTranslation) httpVersions(name string, versions []string) error {
	for i, v := range versions {
		if v != "http/1.1" && v != "h2" {
			return fmt.Errorf("%s: %q is not served (http/1.1 or h2)", bindingField(name, fmt.Sprintf("options.versions[%d]", i)), v)
		}
	}
	if len(versions) == 0 {
		return nil
	}
	if tl := t.serve.tls; tl != nil {
		tl.alpn = slices.DeleteFunc(slices.Clone(tl.alpn), func(p string) bool { return !slices.Contains(versions, p) })
		if len(tl.alpn) == 0 {
			return fmt.Errorf("%s: none of the tls binding's alpn", bindingField(name, "options.versions"))
		}
	} else if slices.Contains(versions, "h2") {
		t.note("binding %q options.versions: h2 is served over TLS; on plain http requests are answered in HTTP/1.1 (a client's h2c upgrade goes on in HTTP/1.1)", name)
	}
	return nil
}

func (t *zillaTranslation) httpAccessControl(name string, ac *zillaAccessControl) error {
	if ac == nil {
		return nil
	}
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
	return nil
}

// httpRoute reads one route of the http binding: the paths it matches go
// to the streams or to the files, in route order (the first match wins).
func (t *zillaTranslation) httpRoute(name string, i int, r zillaRoute, auth map[string]authorizationConfig, used map[string]bool) error {
	field := fmt.Sprintf("routes[%d]", i)
	literal, re, err := t.httpWhen(name, field, r.When)
	if err != nil {
		return err
	}
	exit := t.z.Bindings[r.Exit]
	switch exit.Type + " " + exit.Kind {
	case "http-filesystem proxy":
		if len(r.Guarded) > 0 || r.With.Kind != 0 {
			return fmt.Errorf("%s: guarded and with are not supported on a route to files (the files are served to anyone)", bindingField(name, field))
		}
		files, err := t.httpFilesystem(r.Exit, used)
		if err != nil {
			return err
		}
		t.serve.paths = append(t.serve.paths, zillaPath{re: re, files: files})
		t.cfg.SSE.Demo = new(bool) // the files are the page
		return nil
	case "sse server":
	default:
		return fmt.Errorf("%s: %s %s is not supported (want an sse server or http-filesystem proxy)", bindingField(name, field+".exit"), exit.Type, exit.Kind)
	}
	if r.With.Kind != 0 {
		return fmt.Errorf("%s: not supported", bindingField(name, field+".with"))
	}
	// One edge route serves every path its pattern matches: a second route
	// to the same sse server can only add literal paths to literal paths.
	if raw, seen := t.sseRaw[r.Exit]; seen && (raw || literal == nil) {
		return fmt.Errorf("%s: a second route to %q with a :path pattern or none is not supported (route literal :path values, or one route)", bindingField(name, field), r.Exit)
	}
	t.sseRaw[r.Exit] = literal == nil
	t.serve.paths = append(t.serve.paths, zillaPath{re: re})
	return t.sseServer(r.Exit, literal, mergeGuarded(r.Guarded, nil), auth, used)
}

// httpWhen reads a route's conditions: the literal :path values (nil when
// a pattern or no :path lets other paths through too) and the regexp of
// the paths it matches (nil: any path).
func (t *zillaTranslation) httpWhen(name, field string, when []yaml.Node) ([]string, *regexp.Regexp, error) {
	var literal, alts []string
	anyPath := len(when) == 0
	for j := range when {
		var w zillaHTTPWhen
		if err := decodeStrict(&when[j], &w, fmt.Sprintf("%s.when[%d]", field, j)); err != nil {
			return nil, nil, fmt.Errorf("binding %q %w", name, err)
		}
		at := func(h string) string { return bindingField(name, fmt.Sprintf("%s.when[%d].headers.%s", field, j, h)) }
		p, ok := w.Headers[":path"]
		for _, h := range sortedKeys(w.Headers) {
			if err := t.httpHeader(at(h), h, w.Headers[h]); err != nil {
				return nil, nil, err
			}
		}
		switch {
		case !ok:
			anyPath = true
		case strings.Contains(p, "*"):
			alts = append(alts, zillaGlob(p))
			anyPath = anyPath || p == "*" || p == "/*"
			literal = append(literal, "") // not literal: the sse-kafka routes stay patterns
		default:
			alts = append(alts, regexp.QuoteMeta(p))
			literal = append(literal, p)
		}
	}
	if anyPath {
		return nil, nil, nil
	}
	if slices.Contains(literal, "") {
		literal = nil
	}
	return literal, regexp.MustCompile("^(?:" + strings.Join(alts, "|") + ")$"), nil
}

func (t *zillaTranslation) httpHeader(field, h, v string) error {
	switch h {
	case ":path":
		if strings.Contains(v, "{") || !strings.HasPrefix(v, "/") && v != "*" {
			return fmt.Errorf("%s: %q is not a path (a literal path, or * for any characters)", field, v)
		}
	case ":scheme":
		if v == t.scheme {
			return nil
		}
		if t.scheme == "http" {
			return fmt.Errorf("%s: %q is not supported here (no tls server binding is in front of the http binding)", field, v)
		}
		return fmt.Errorf("%s: %q is not supported here (behind the tls binding every request is https)", field, v)
	default:
		return fmt.Errorf("%s: not supported", field)
	}
	return nil
}

// zillaGlob is the regexp of a Zilla :path value, * matching any characters.
func zillaGlob(p string) string {
	parts := strings.Split(p, "*")
	for i := range parts {
		parts[i] = regexp.QuoteMeta(parts[i])
	}
	return strings.Join(parts, ".*")
}

// httpFilesystem reads an http-filesystem proxy that maps the request path
// onto a filesystem server's location, the one shape ssekafka serves.
func (t *zillaTranslation) httpFilesystem(name string, used map[string]bool) (*zillaFiles, error) {
	b := t.z.Bindings[name]
	used[name] = true
	if b.Options.Kind != 0 || b.Exit != "" || len(b.Routes) != 1 {
		return nil, fmt.Errorf("%s: one route and no options or exit are supported", bindingField(name, "routes"))
	}
	r := b.Routes[0]
	var w zillaHTTPFilesystemPath
	var with zillaHTTPFilesystemPath
	if len(r.When) > 1 || len(r.Guarded) > 0 {
		return nil, fmt.Errorf("%s: one when and no guarded are supported", bindingField(name, "routes[0]"))
	}
	if len(r.When) == 1 {
		if err := decodeStrict(&r.When[0], &w, "routes[0].when[0]"); err != nil {
			return nil, fmt.Errorf("binding %q %w", name, err)
		}
	}
	if err := decodeStrict(&r.With, &with, "routes[0].with"); err != nil {
		return nil, fmt.Errorf("binding %q %w", name, err)
	}
	_, names := zillaPathRegexp(w.Path)
	if len(names) != 1 || w.Path != "/{"+names[0]+"}" || with.Path != "${params."+names[0]+"}" {
		return nil, fmt.Errorf("%s: want when path /{path} and with path ${params.path} (the request's path is the file's)", bindingField(name, "routes[0]"))
	}
	fs, err := t.binding(r.Exit, "filesystem", "server")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", bindingField(name, "routes[0].exit"), err)
	}
	used[r.Exit] = true
	var o zillaFilesystemOptions
	if err := decodeStrict(&fs.Options, &o, "options"); err != nil {
		return nil, fmt.Errorf("binding %q %w", r.Exit, err)
	}
	if o.Location == "" {
		return nil, fmt.Errorf("%s: required", bindingField(r.Exit, "options.location"))
	}
	return &zillaFiles{field: bindingField(r.Exit, "options.location"), location: o.Location}, nil
}
