// Package confcheck is the validation table of the edge's and the cache's
// Config (as franz-go's cfg.validate): each row bounds one field's value,
// defaults filled, by a minimum, a maximum (or another field's value), and
// says whether Off is allowed; Check returns the first row that fails as an
// *Error naming the field.
package confcheck

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Off, in a field that may be off, turns off what zero would give the
// default of. The edge exports it as edge.Off.
const Off = -1

// Unit says how a row's values are written in errors.
type Unit int

const (
	Count    Unit = iota // an integer: sizes, counts
	Duration             // a time.Duration
	Rate                 // a float: rates, ratios
)

// A Row bounds one field. V and the bounds are float64, exact for every
// integer a config sets (below 2^53) and for durations to the nanosecond
// below 104 days.
type Row struct {
	Field string  // the Go name: "RetryMax", "KeyReads.MinRate", "Brokers[1]"
	V     float64 // the value, defaults filled
	Unit  Unit
	// Min is the smallest valid value; MinRule, if set, says what it is
	// ("at least twice {Retry}"; other fields in braces) in place of the
	// number.
	Min     float64
	MinRule string
	// Max is the largest valid value; 0: none.
	Max float64
	// Off says what Off means where the field may be off; "": it may not.
	Off string
	// Default is the default as errors show it ("" : none to show).
	Default string
	// Rule, if set, is the whole rule in place of the one made from the
	// columns above (a phrasing operators already know).
	Rule string
}

// An Error is an invalid config field.
type Error struct {
	Component string // "edge", "cache"
	Field     string // the Go name, as in Row
	Rule      string // what the field must be; other fields in braces
	Value     string // the value given, "" where the rule says it all
}

func (e *Error) Error() string {
	return e.Component + " config: " + e.Field + ": " + e.Explain(func(f string) string { return f })
}

var otherField = regexp.MustCompile(`\{([A-Za-z0-9.\[\]]+)\}`)

// Explain is the rule and the value, other fields named by name (cmd/ssekafka
// names them as its YAML does).
func (e *Error) Explain(name func(field string) string) string {
	s := otherField.ReplaceAllStringFunc(e.Rule, func(m string) string { return name(m[1 : len(m)-1]) })
	if e.Value != "" {
		s += ", not " + e.Value
	}
	return s
}

// Check returns the first row of rows whose value is out of bounds, as an
// *Error of component, or nil.
func Check(component string, rows []Row) error {
	for _, r := range rows {
		if !r.ok() {
			return &Error{Component: component, Field: r.Field, Rule: r.rule(), Value: r.Unit.format(r.V)}
		}
	}
	return nil
}

func (r *Row) ok() bool {
	switch {
	case math.IsNaN(r.V) || math.IsInf(r.V, 0):
		return false
	case r.Off != "" && r.V == Off:
		return true
	case r.V < r.Min:
		return false
	}
	return r.Max == 0 || r.V <= r.Max
}

// rule says what r's field must be, for the value it has.
func (r *Row) rule() string {
	if r.Rule != "" {
		return r.Rule
	}
	if r.Max != 0 && r.V > r.Max {
		return "must be at most " + r.Unit.format(r.Max)
	}
	positive := r.MinRule == "" && r.Min <= r.Unit.least()
	if r.Off == "" && positive && r.V < 0 {
		if r.Default != "" {
			return "must not be negative (0: the default, " + r.Default + ")"
		}
		return "must not be negative"
	}
	least := "at least " + r.Unit.format(r.Min)
	if r.MinRule != "" {
		least = r.MinRule + " (" + r.Unit.format(r.Min) + ")"
	}
	var alts []string
	if r.Off != "" {
		alts = append(alts, "-1 (Off: "+r.Off+")")
	}
	if r.Default != "" {
		alts = append(alts, "0 (the default, "+r.Default+")")
	}
	if positive && len(alts) > 0 {
		least = "more"
	}
	if len(alts) == 0 {
		return "must be " + least
	}
	return "must be " + strings.Join(alts, ", ") + " or " + least
}

// least is the smallest positive value of the unit.
func (u Unit) least() float64 {
	if u == Rate {
		return math.SmallestNonzeroFloat64
	}
	return 1
}

func (u Unit) format(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0) || u == Rate:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case u == Duration:
		return time.Duration(v).String()
	}
	return strconv.FormatInt(int64(v), 10)
}

// Bytes writes a size for a row's Default: in GiB, MiB or KiB when it is
// a whole number of them ("4 MiB"), else in bytes.
func Bytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}

// SubjectPrefix checks a NATS subject prefix (Config.SubjectPrefix).
func SubjectPrefix(component, p string) error {
	if strings.ContainsAny(p, " \t\r\n*>") {
		return &Error{Component: component, Field: "SubjectPrefix", Rule: "must be a NATS subject prefix (no spaces, '*' or '>')",
			Value: strconv.Quote(p)}
	}
	return nil
}

// OrDefault sets *v to def where it is zero: how a Config's WithDefaults
// fills the fields a caller left out.
func OrDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
