package guard

import (
	"fmt"
	"net/http"
	"strings"
)

// Credentials say where a request carries its token, in Zilla's shape:
// each value is a template with one "{credentials}", such as
// "Bearer {credentials}" for the authorization header. EventSource cannot
// set headers, so browsers use the query or a cookie.
type Credentials struct {
	Headers map[string]string // header name → template
	Query   map[string]string // query parameter → template
	Cookies map[string]string // cookie name → template
}

const placeholder = "{credentials}"

// Validate checks that every template holds the placeholder once and that
// at least one location is given.
func (c Credentials) Validate() error {
	n := 0
	for _, loc := range []struct {
		kind string
		m    map[string]string
	}{{"headers", c.Headers}, {"query", c.Query}, {"cookies", c.Cookies}} {
		for name, tmpl := range loc.m {
			if name == "" {
				return fmt.Errorf("credentials.%s: an empty name", loc.kind)
			}
			if strings.Count(tmpl, placeholder) != 1 {
				return fmt.Errorf("credentials.%s.%s: %q does not hold %s once", loc.kind, name, tmpl, placeholder)
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("credentials: none (want headers, query or cookies)")
	}
	return nil
}

// Token finds the request's token. No token at all is ("", nil); a token
// in more than one place, or a value that does not fit its template, is a
// 401 refusal (invalid_request), so that no proxy or page can smuggle a
// second token past the one that is checked.
func (c Credentials) Token(r *http.Request) (string, error) {
	var found []string
	add := func(where, tmpl string, values []string) error {
		for _, v := range values {
			tok, ok := fill(tmpl, v)
			if !ok {
				return &Refusal{Status: http.StatusUnauthorized, Code: "invalid_request", Reason: "credentials in " + where + " do not fit " + tmpl}
			}
			found = append(found, tok)
		}
		return nil
	}
	for name, tmpl := range c.Headers {
		if err := add("header "+name, tmpl, r.Header.Values(name)); err != nil {
			return "", err
		}
	}
	if len(c.Query) > 0 {
		q := r.URL.Query()
		for name, tmpl := range c.Query {
			if err := add("query "+name, tmpl, q[name]); err != nil {
				return "", err
			}
		}
	}
	for name, tmpl := range c.Cookies {
		var values []string
		for _, ck := range r.CookiesNamed(name) {
			values = append(values, ck.Value)
		}
		if err := add("cookie "+name, tmpl, values); err != nil {
			return "", err
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		if found[0] == "" {
			return "", &Refusal{Status: http.StatusUnauthorized, Code: "invalid_request", Reason: "empty credentials"}
		}
		return found[0], nil
	default:
		return "", &Refusal{Status: http.StatusUnauthorized, Code: "invalid_request", Reason: "credentials in more than one place"}
	}
}

// fill takes the credentials out of v by tmpl ("Bearer {credentials}").
// The scheme of an authorization header is matched without regard to case.
func fill(tmpl, v string) (string, bool) {
	prefix, suffix, _ := strings.Cut(tmpl, placeholder)
	if len(v) < len(prefix)+len(suffix) || !strings.EqualFold(v[:len(prefix)], prefix) || !strings.HasSuffix(v, suffix) {
		return "", false
	}
	return v[len(prefix) : len(v)-len(suffix)], true
}
