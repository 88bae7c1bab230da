package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unknownFieldError is a mapping key that the type it is decoded into does
// not have: its path, line and the nearest field that type has.
type unknownFieldError struct {
	path    string // as "routes[0].with.topik"
	key     string
	line    int
	nearest string // "" when no field is near
}

func (e *unknownFieldError) Error() string {
	if e.nearest != "" {
		return fmt.Sprintf("%s: not supported (did you mean %s?)", e.path, e.nearest)
	}
	return e.path + ": not supported"
}

// checkFields refuses mapping keys of n that t (a struct, through slices,
// maps and pointers) does not have, naming the first by its path
// (*unknownFieldError).
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
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		return checkStructFields(n, t, path)
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkFields(n.Content[i+1], t.Elem(), joinField(path, n.Content[i].Value)); err != nil {
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

func checkStructFields(n *yaml.Node, t reflect.Type, path string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		f, ok := fieldByTag(t, k)
		if !ok {
			return &unknownFieldError{path: joinField(path, k), key: k, line: n.Content[i].Line, nearest: nearestField(t, k)}
		}
		if err := checkFields(n.Content[i+1], f.Type, joinField(path, k)); err != nil {
			return err
		}
	}
	return nil
}

// joinField is path.k, k quoted when it has spaces, dots or colons, so that
// it can be found.
func joinField(path, k string) string {
	if k == "" || strings.IndexFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) >= 0 {
		k = strconv.Quote(k)
	}
	if path == "" {
		return k
	}
	return path + "." + k
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

// nearestField is t's YAML field closest to key in edits (case aside), if
// it is near enough to be a typo: at most a third of key's letters, at least one.
func nearestField(t reflect.Type, key string) string {
	best, bestD := "", max(1, len(key)/3)+1
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !t.Field(i).IsExported() {
			continue
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(name)); d < bestD {
			best, bestD = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var yamlUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type `)

// explainUnknownField rewrites the YAML decoder's "field X not found in
// type struct {...}" (a Go type, which tells a user nothing) as the field's
// path and the nearest field there; other errors are returned as they are.
func explainUnknownField(err error, root *yaml.Node, t reflect.Type) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 || !yamlUnknownField.MatchString(te.Errors[0]) {
		return err
	}
	var ue *unknownFieldError
	if !errors.As(checkFields(root, t, ""), &ue) {
		return err
	}
	m := yamlUnknownField.FindStringSubmatch(te.Errors[0])
	msg := fmt.Sprintf("line %s: field %s not found (%s", m[1], m[2], ue.path)
	if ue.nearest != "" {
		msg += ": did you mean " + ue.nearest + "?"
	}
	return errors.New(msg + ")")
}

// refuseEmptyRoutes refuses a file whose routes are written as an empty
// list: it serves nothing (a cache-only config leaves routes out).
func refuseEmptyRoutes(data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	if _, v := mappingEntry(root.Content[0], "routes"); v != nil && v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
		return fmt.Errorf("line %d: routes: at least one route is required (a cache-only config leaves routes out)", v.Line)
	}
	return nil
}
