package compress

import "testing"

var offerAll = []Encoding{Zstd, Gzip, Identity}

func TestNegotiatePicksByWeightThenOfferOrder(t *testing.T) {
	tests := []struct {
		name   string
		fields []string // nil: no field
		offer  []Encoding
		want   Encoding
		wantOK bool
	}{
		{"no field: identity only", nil, offerAll, Identity, true},
		{"empty field: identity only", []string{""}, offerAll, Identity, true},
		{"chromium", []string{"gzip, deflate, br, zstd"}, offerAll, Zstd, true},
		{"chromium, gzip preferred by the edge", []string{"gzip, deflate, br, zstd"}, []Encoding{Gzip, Zstd}, Gzip, true},
		{"firefox without zstd", []string{"gzip, deflate, br"}, offerAll, Gzip, true},
		{"node eventsource", []string{"gzip,deflate"}, offerAll, Gzip, true},
		{"higher weight beats offer order", []string{"zstd;q=0.5, gzip;q=0.8"}, offerAll, Gzip, true},
		{"equal weights: offer order", []string{"gzip;q=0.5, zstd;q=0.5"}, offerAll, Zstd, true},
		{"identity preferred by weight", []string{"gzip;q=0.2, identity"}, offerAll, Identity, true},
		{"only unknown codings: identity", []string{"br, deflate"}, offerAll, Identity, true},
		{"star accepts what is not listed", []string{"*"}, offerAll, Zstd, true},
		{"star with a refusal", []string{"zstd;q=0, *"}, offerAll, Gzip, true},
		{"listed beats star's weight", []string{"*;q=0.1, gzip;q=0.9"}, offerAll, Gzip, true},
		{"star zero refuses all but listed", []string{"gzip, *;q=0"}, offerAll, Gzip, true},
		{"star zero refuses identity", []string{"*;q=0"}, offerAll, Identity, false},
		{"star zero, identity listed", []string{"*;q=0, identity"}, offerAll, Identity, true},
		{"identity refused, gzip offered", []string{"identity;q=0, gzip"}, offerAll, Gzip, true},
		{"identity refused, nothing else", []string{"identity;q=0"}, offerAll, Identity, false},
		{"identity refused, only unknown", []string{"br, identity;q=0"}, offerAll, Identity, false},
		{"gzip refused", []string{"gzip;q=0"}, []Encoding{Gzip}, Identity, true},
		{"case insensitive", []string{"GZip;Q=1, ZSTD;q=0"}, offerAll, Gzip, true},
		{"x-gzip is gzip", []string{"x-gzip"}, offerAll, Gzip, true},
		{"whitespace and tabs", []string{" \tgzip \t; \tq=0.7 , zstd ;q=0.6\t"}, offerAll, Gzip, true},
		{"empty elements", []string{",, ,gzip,,"}, offerAll, Gzip, true},
		{"several fields are one list", []string{"gzip;q=0.3", "zstd;q=0.4"}, offerAll, Zstd, true},
		{"duplicate counts at its lowest", []string{"gzip, gzip;q=0"}, offerAll, Identity, true},
		{"duplicate across fields", []string{"zstd;q=0.9", "zstd;q=0.1, gzip;q=0.5"}, offerAll, Gzip, true},
		{"invalid weight ignores the element", []string{"zstd;q=2, gzip"}, offerAll, Gzip, true},
		{"too many decimals", []string{"zstd;q=0.0001, gzip"}, offerAll, Gzip, true},
		{"1.001 is not a weight", []string{"zstd;q=1.001, gzip"}, offerAll, Gzip, true},
		{"1.000 is", []string{"zstd;q=1.000"}, offerAll, Zstd, true},
		{"0. is zero", []string{"gzip;q=0., zstd;q=0.000"}, offerAll, Identity, true},
		{"weight without value", []string{"zstd;q=, gzip"}, offerAll, Gzip, true},
		{"garbage refusal does not accept", []string{"gzip;q=0;;", "zstd"}, []Encoding{Gzip}, Identity, true},
		{"other parameters ignored", []string{"gzip;level=9;q=0.5"}, offerAll, Gzip, true},
		{"bad coding token", []string{"gz ip, zstd"}, offerAll, Zstd, true},
		{"bad parameter", []string{"gzip;=1"}, offerAll, Identity, true},
		{"garbage only", []string{"\x00\xff;;=,"}, offerAll, Identity, true},
		{"nothing offered", []string{"gzip, zstd"}, nil, Identity, true},
		{"unlisted identity is the last resort", []string{"gzip, zstd"}, []Encoding{Identity, Gzip}, Gzip, true},
		{"listed identity takes its offer place", []string{"gzip, identity"}, []Encoding{Identity, Gzip}, Identity, true},
		{"unknown offer ignored", []string{"gzip"}, []Encoding{Encoding(9), Gzip}, Gzip, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Negotiate(tt.fields, tt.offer)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("Negotiate(%q, %v) = %v, %v; want %v, %v", tt.fields, tt.offer, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNegotiateDoesNotAllocate(t *testing.T) {
	fields := []string{"gzip, deflate, br, zstd;q=0.9, *;q=0.1"}
	if n := testing.AllocsPerRun(100, func() { Negotiate(fields, offerAll) }); n != 0 {
		t.Fatalf("Negotiate allocates %v times", n)
	}
}

// FuzzNegotiate: any field gives an offered coding or identity, never
// panics, and a coding the field refuses outright (";q=0" as its only
// entry, no star) is never chosen.
func FuzzNegotiate(f *testing.F) {
	for _, s := range []string{
		"", "gzip, deflate, br, zstd", "gzip,deflate", "*", "*;q=0", "identity;q=0",
		"gzip;q=0.5, zstd;q=1.0", "x-gzip", "GZIP ; Q=0.001", "gzip;q=0;;", ",,,", "zstd;q=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		got, ok := Negotiate([]string{field}, []Encoding{Zstd, Gzip})
		if got >= numEncodings {
			t.Fatalf("Negotiate(%q) = %d", field, got)
		}
		if !ok && got != Identity {
			t.Fatalf("Negotiate(%q) = %v, not ok", field, got)
		}
		// The same field with a gzip refusal after it never gives gzip.
		if got, _ := Negotiate([]string{field, "gzip;q=0"}, []Encoding{Zstd, Gzip}); got == Gzip {
			t.Fatalf("Negotiate(%q, gzip;q=0) = gzip", field)
		}
	})
}
