package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/guard"
)

// guardConfig is one of the top-level guards, in Zilla's shape.
type guardConfig struct {
	Type    string `yaml:"type"`
	Options struct {
		Issuer   string  `yaml:"issuer"`
		Audience string  `yaml:"audience"`
		Keys     jwkKeys `yaml:"keys"`
		// Challenge is in seconds before expiry, as in Zilla; 0: none.
		Challenge  int               `yaml:"challenge"`
		Identity   string            `yaml:"identity"`
		Roles      string            `yaml:"roles"`
		Attributes map[string]string `yaml:"attributes"`
		// Ours: algorithms allowed, clock leeway, JWKS refresh interval, and
		// whether a key removed from the JWKS ends the streams it signed.
		Algorithms      []string      `yaml:"algorithms"`
		Leeway          time.Duration `yaml:"leeway"`
		Refresh         time.Duration `yaml:"refresh"`
		EndOnKeyRemoval *bool         `yaml:"endOnKeyRemoval"`
	} `yaml:"options"`
}

// jwkKeys is options.keys: a list of JWKs, or the URL of a JWKS.
type jwkKeys struct {
	inline []json.RawMessage
	url    string
}

func (k *jwkKeys) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Decode(&k.url)
	case yaml.SequenceNode:
		for _, item := range n.Content {
			var m map[string]any
			if err := item.Decode(&m); err != nil {
				return fmt.Errorf("line %d: guards.*.options.keys: a JWK is a mapping: %w", item.Line, err)
			}
			b, err := json.Marshal(m)
			if err != nil {
				return fmt.Errorf("line %d: guards.*.options.keys: %w", item.Line, err)
			}
			k.inline = append(k.inline, b)
		}
		return nil
	}
	return fmt.Errorf("line %d: guards.*.options.keys: a list of JWKs or a JWKS URL", n.Line)
}

// MarshalYAML writes keys as they are read: the URL, or the JWKs.
func (k jwkKeys) MarshalYAML() (any, error) {
	if k.url != "" || len(k.inline) == 0 {
		return k.url, nil
	}
	var l []map[string]any
	for _, raw := range k.inline {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
		l = append(l, m)
	}
	return l, nil
}

// authorizationConfig is sse.authorization.NAME: where requests carry tokens.
type authorizationConfig struct {
	Credentials struct {
		Headers map[string]string `yaml:"headers"`
		Query   map[string]string `yaml:"query"`
		Cookies map[string]string `yaml:"cookies"`
	} `yaml:"credentials"`
}

func (a authorizationConfig) credentials() guard.Credentials {
	return guard.Credentials{Headers: a.Credentials.Headers, Query: a.Credentials.Query, Cookies: a.Credentials.Cookies}
}

// corsConfig is sse.cors.
type corsConfig struct {
	Origins     corsOrigins   `yaml:"origins"`
	Credentials bool          `yaml:"credentials"`
	MaxAge      time.Duration `yaml:"maxAge"`
}

// corsOrigins is a list of origins, or "*".
type corsOrigins []string

func (o *corsOrigins) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*o = corsOrigins{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*o = l
	return nil
}

func (c *corsConfig) edge() *edge.CORS {
	if c == nil {
		return nil
	}
	return &edge.CORS{Origins: c.Origins, Credentials: c.Credentials, MaxAge: c.MaxAge}
}

// options is the guard's configuration as guard.Options.
func (g *guardConfig) options(name string, log *slog.Logger) guard.Options {
	o := g.Options
	return guard.Options{Name: name, Issuer: o.Issuer, Audience: o.Audience, Keys: o.Keys.inline, KeysURL: o.Keys.url,
		Challenge: time.Duration(o.Challenge) * time.Second, Identity: o.Identity, Roles: o.Roles, Attributes: o.Attributes,
		Algorithms: o.Algorithms, Leeway: o.Leeway, Refresh: o.Refresh, Logger: log}
}

// validateGuards checks guards, sse.authorization, sse.cors and the
// routes' guarded. Inline keys are parsed here; a JWKS URL is read at start.
func (cfg *config) validateGuards(at func(string) string) error {
	for _, name := range sortedKeys(cfg.Guards) {
		if err := cfg.validateGuard(name, at); err != nil {
			return err
		}
	}
	for _, name := range sortedKeys(cfg.SSE.Authorization) {
		field := "sse.authorization." + name
		if _, ok := cfg.Guards[name]; !ok {
			return fmt.Errorf("%s: unknown guard %q (not among guards)", at(field), name)
		}
		if err := cfg.SSE.Authorization[name].credentials().Validate(); err != nil {
			return fmt.Errorf("%s: %w", at(field+".credentials"), err)
		}
	}
	for i, rc := range cfg.Routes {
		for name := range rc.Guarded {
			if _, ok := cfg.Guards[name]; !ok {
				return fmt.Errorf("%s: unknown guard %q (not among guards)", at(fmt.Sprintf("routes[%d].guarded", i)), name)
			}
		}
	}
	if err := cfg.SSE.CORS.edge().Validate(); err != nil {
		return fmt.Errorf("%s: %s", at("sse.cors"), strings.TrimPrefix(err.Error(), "edge config: "))
	}
	return nil
}

// validateGuard checks guards.NAME, and that a guard the routes use has
// credentials in sse.authorization.
func (cfg *config) validateGuard(name string, at func(string) string) error {
	g := cfg.Guards[name]
	field := "guards." + name
	if g.Type != "jwt" {
		return fmt.Errorf("%s: %q is not a guard type (want jwt)", at(field+".type"), g.Type)
	}
	o := g.Options
	switch {
	case o.Challenge < 0:
		return fmt.Errorf("%s: must not be negative (seconds before expiry; 0: none)", at(field+".options.challenge"))
	case o.Leeway < 0:
		return fmt.Errorf("%s: must not be negative", at(field+".options.leeway"))
	case o.Refresh < 0:
		return fmt.Errorf("%s: must not be negative", at(field+".options.refresh"))
	}
	for i, a := range o.Algorithms {
		if a == "none" || jwt.GetSigningMethod(a) == nil {
			return fmt.Errorf("%s: %q is not a JWS algorithm", at(fmt.Sprintf("%s.options.algorithms[%d]", field, i)), a)
		}
	}
	if err := g.checkKeys(name); err != nil {
		return fmt.Errorf("%s: %w", at(field+".options.keys"), err)
	}
	if _, ok := cfg.SSE.Authorization[name]; !ok && cfg.guardUsed(name) {
		return fmt.Errorf("%s: no credentials for guard %s: say where requests carry tokens (sse.authorization.%s.credentials)", at("sse.authorization"), name, name)
	}
	return nil
}

// checkKeys parses inline keys (guard.New), or checks the JWKS URL, which
// is read at start.
func (g *guardConfig) checkKeys(name string) error {
	o := g.Options
	if len(o.Keys.inline) > 0 {
		gd, err := guard.New(context.Background(), g.options(name, nil))
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "guard "+name+": "))
		}
		gd.Close()
		return nil
	}
	u := o.Keys.url
	if u == "" && o.Issuer != "" {
		u = strings.TrimSuffix(o.Issuer, "/") + "/.well-known/jwks.json"
	}
	if p, err := url.Parse(u); u == "" || err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return fmt.Errorf("want a list of JWKs or a JWKS URL (default: issuer + /.well-known/jwks.json), not %q", u)
	}
	return nil
}

func (cfg *config) guardUsed(name string) bool {
	return slices.ContainsFunc(cfg.Routes, func(rc routeConfig) bool { _, ok := rc.Guarded[name]; return ok })
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// startGuards makes the guards the routes use (a JWKS URL is read now:
// the edge does not start without its keys). close stops their refreshes.
func (cfg *config) startGuards(ctx context.Context, log *slog.Logger) (guards map[string]edge.Authorization, closeAll func(), err error) {
	var made []*guard.Guard
	closeAll = func() {
		for _, g := range made {
			g.Close()
		}
	}
	for _, name := range sortedKeys(cfg.Guards) {
		if !cfg.guardUsed(name) {
			continue
		}
		gc := cfg.Guards[name]
		g, err := guard.New(ctx, gc.options(name, log.With("guard", name)))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		made = append(made, g)
		if guards == nil {
			guards = map[string]edge.Authorization{}
		}
		keep := gc.Options.EndOnKeyRemoval != nil && !*gc.Options.EndOnKeyRemoval
		guards[name] = edge.Authorization{Guard: g, Credentials: cfg.SSE.Authorization[name].credentials(), KeepOnKeyRemoval: keep}
	}
	return guards, closeAll, nil
}
