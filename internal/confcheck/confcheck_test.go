package confcheck

import (
	"math"
	"testing"
	"time"
)

// Each row kind says what the field must be in the words an operator reads,
// and the first failing row is the one reported.
func TestCheckNamesTheFirstFieldOutOfBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		rows []Row
		want string // "" : valid
	}{
		{"valid", []Row{{Field: "A", V: 5, Min: 1}}, ""},
		{"below min", []Row{{Field: "A", V: 0, Min: 1}}, "edge config: A: must be at least 1, not 0"},
		{"negative, default shown", []Row{{Field: "A", V: -3, Min: 1, Default: "4 MiB"}},
			"edge config: A: must not be negative (0: the default, 4 MiB), not -3"},
		{"off allowed", []Row{{Field: "A", V: Off, Min: 1, Off: "no bound"}}, ""},
		{"off not allowed", []Row{{Field: "A", V: Off, Min: 1}}, "edge config: A: must not be negative, not -1"},
		{"below min with off and default", []Row{{Field: "A", V: 1000, Min: 1 << 20, Off: "no bound", Default: "256 MiB"}},
			"edge config: A: must be -1 (Off: no bound), 0 (the default, 256 MiB) or at least 1048576, not 1000"},
		{"above max", []Row{{Field: "A", V: 3, Min: 0, Max: 2}}, "edge config: A: must be at most 2, not 3"},
		{"cross-field rule", []Row{{Field: "RetryMax", V: float64(time.Second), Unit: Duration, Min: float64(4 * time.Second), MinRule: "at least twice {Retry}"}},
			"edge config: RetryMax: must be at least twice Retry (4s), not 1s"},
		{"NaN", []Row{{Field: "R", V: math.NaN(), Unit: Rate}}, "edge config: R: must be at least 0, not NaN"},
		{"first failing row", []Row{{Field: "A", V: 1, Min: 1}, {Field: "B", V: 0, Min: 1}, {Field: "C", V: 0, Min: 1}},
			"edge config: B: must be at least 1, not 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check("edge", tc.rows)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestExplainNamesOtherFieldsAsTheCallerSpellsThem(t *testing.T) {
	e := &Error{Component: "edge", Field: "RetryMax", Rule: "must be at least twice {Retry}", Value: "1s"}
	got := e.Explain(func(f string) string { return "sse." + f })
	if want := "must be at least twice sse.Retry, not 1s"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{4 << 20: "4 MiB", 1 << 30: "1 GiB", 3 << 10: "3 KiB", 1000: "1000", (1 << 20) + 1: "1048577"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
