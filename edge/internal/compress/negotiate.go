package compress

// Negotiate picks the content coding of a response from the request's
// Accept-Encoding field values (r.Header.Values("Accept-Encoding"); several
// fields are one comma-separated list, RFC 9110 5.3) among offer, the
// codings the edge sends in its order of preference.
//
// The rules are RFC 9110 12.5.3:
//   - A coding is acceptable when listed with a weight above 0, or when
//     not listed and "*" is, with a weight above 0. Names are case
//     insensitive; "x-gzip" is "gzip" (RFC 9110 8.4.1.3).
//   - Identity is acceptable unless refused by "identity;q=0", or by
//     "*;q=0" with no entry of its own; not listed, it is the last resort
//     (the lowest weight). When offer does not name it, it is tried after
//     every coding offer names.
//   - No field, or an empty one, accepts identity only: a client that does
//     not ask for a coding gets none (curl without --compressed).
//   - The highest weight wins; among equal weights, offer's order.
//   - A coding listed twice counts at its lowest weight: a refusal anywhere
//     in the field is honoured.
//   - An element that is not `token *( OWS ";" OWS token "=" value )`, or
//     whose q is not a valid weight ("0" to "1" with up to three decimals),
//     is ignored; parameters other than q are ignored. Garbage thus never
//     makes a coding acceptable that the rest of the field refuses.
//
// ok is false when nothing in offer, nor identity, is acceptable; enc is
// then Identity. RFC 9110 12.1 lets a server disregard the field then
// rather than answer 406, and the edge must: an EventSource that gets
// anything but a 200 with text/event-stream fails for good and never
// reconnects, so the caller sends identity, and ok only tells it to count
// the case. Negotiate does not allocate.
func Negotiate(fields []string, offer []Encoding) (enc Encoding, ok bool) {
	var acc acceptance
	for _, f := range fields {
		acc.parse(f)
	}
	best, bestQ := Identity, -1
	tried := [numEncodings]bool{}
	for _, e := range offer {
		if e >= numEncodings || tried[e] {
			continue
		}
		tried[e] = true
		if q := acc.weight(e); q > bestQ {
			best, bestQ = e, q
		}
	}
	if !tried[Identity] {
		if q := acc.weight(Identity); q > bestQ {
			best, bestQ = Identity, q
		}
	}
	if bestQ <= 0 {
		return Identity, false
	}
	return best, true
}

// acceptance is what a field says of each coding the edge knows and of
// "*": a weight in thousandths, -1 where not listed.
type acceptance struct {
	q    [numEncodings]int
	star int
	seen bool // an element was parsed at all
}

// weight is e's weight in thousandths, 0 where not acceptable.
func (a *acceptance) weight(e Encoding) int {
	if !a.seen {
		if e == Identity {
			return 1000
		}
		return 0
	}
	if q := a.q[e]; q >= 0 {
		return q
	}
	if e == Identity {
		if a.star == 0 {
			return 0
		}
		return 1 // acceptable unless refused (RFC 9110), but the last resort
	}
	if a.star > 0 {
		return a.star
	}
	return 0
}

func (a *acceptance) parse(field string) {
	if !a.seen {
		a.seen = true
		a.star = -1
		for i := range a.q {
			a.q[i] = -1
		}
	}
	for len(field) > 0 {
		var elem string
		elem, field = cut(field, ',')
		name, q, valid := parseElement(elem)
		if !valid || name == "" {
			continue // an empty list element is allowed; garbage is ignored
		}
		target := &a.star
		if name != "*" {
			e, known := lookup(name)
			if !known {
				continue
			}
			target = &a.q[e]
		}
		if *target < 0 || q < *target {
			*target = q
		}
	}
}

// parseElement parses `coding *( OWS ";" OWS name "=" value )`: its coding
// name (empty for an empty element) and its weight in thousandths.
func parseElement(elem string) (name string, q int, valid bool) {
	elem = trimOWS(elem)
	if elem == "" {
		return "", 0, true
	}
	name, rest := cut(elem, ';')
	name = trimOWS(name)
	if !isToken(name) && name != "*" {
		return "", 0, false
	}
	q = 1000
	for rest != "" {
		var param string
		param, rest = cut(rest, ';')
		k, v, found := cutString(trimOWS(param), "=")
		if !found || !isToken(k) {
			return "", 0, false
		}
		if len(k) == 1 && (k[0] == 'q' || k[0] == 'Q') {
			if q, valid = parseQ(v); !valid {
				return "", 0, false
			}
		}
	}
	return name, q, true
}

// parseQ parses a weight, `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`,
// into thousandths.
func parseQ(v string) (int, bool) {
	if v == "" || len(v) > 5 || (v[0] != '0' && v[0] != '1') {
		return 0, false
	}
	q := int(v[0]-'0') * 1000
	if len(v) == 1 {
		return q, true
	}
	if v[1] != '.' {
		return 0, false
	}
	scale := 100
	for i := 2; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0, false
	}
	return q, true
}

// lookup maps a coding name to the Encoding the edge knows by it.
func lookup(name string) (Encoding, bool) {
	switch {
	case equalFold(name, "gzip"), equalFold(name, "x-gzip"):
		return Gzip, true
	case equalFold(name, "zstd"):
		return Zstd, true
	case equalFold(name, "identity"):
		return Identity, true
	}
	return 0, false
}

// equalFold is strings.EqualFold for an ASCII lower-case b.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != b[i] {
			return false
		}
	}
	return true
}

func cut(s string, sep byte) (before, after string) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

func cutString(s, sep string) (before, after string, found bool) {
	b, a := cut(s, sep[0])
	return b, a, len(b) < len(s)
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isToken reports whether s is an RFC 9110 token: 1*tchar.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' ||
			c == '*' || c == '+' || c == '-' || c == '.' || c == '^' || c == '_' ||
			c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}
