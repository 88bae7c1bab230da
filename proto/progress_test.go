package proto

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestZillaProgressExamples(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want []int64
	}{
		{"AQQABAIC", []int64{2, 1}},
		{"AQQABAIC/revision=42", []int64{2, 1}},
		{`["a2V5","AQQABAIC/revision=42"]`, []int64{2, 1}},
		{`[null,"AQQABAIC"]`, []int64{2, 1}},
		{"AQIAAg==", []int64{1}},
		{"AQIAAg", []int64{1}},
		{"AQIEAg==", []int64{0, 0, 1}}, // only partition 2 named
	} {
		p, err := ParseEventID(tc.id)
		if err != nil {
			t.Fatalf("%s: %v", tc.id, err)
		}
		if !p.Zilla || p.Epoch != 0 || !reflect.DeepEqual(p.Offsets, tc.want) {
			t.Fatalf("%s: got %+v, want offsets %v", tc.id, p, tc.want)
		}
	}
}

func TestProgressRoundTrip(t *testing.T) {
	for _, p := range []Progress{
		{Epoch: 1, TimeMs: 1, Offsets: []int64{0}},
		{Epoch: 0xFFFFFFFF, TimeMs: 1_800_000_000_000, Offsets: []int64{1 << 40, 0, 7}},
		{Epoch: 5, Offsets: nil},
	} {
		text := string(AppendProgress(nil, &p))
		if strings.ContainsAny(text, "+/=") {
			t.Fatalf("%q is not unpadded base64url", text)
		}
		got, err := ParseEventID(text)
		if err != nil {
			t.Fatal(err)
		}
		if got.Epoch != p.Epoch || got.TimeMs != p.TimeMs || fmt.Sprint(got.Offsets) != fmt.Sprint(p.Offsets) || got.Zilla {
			t.Fatalf("round trip of %+v gave %+v", p, got)
		}
	}
}

func TestAppendEventID(t *testing.T) {
	p := &Progress{Epoch: 3, TimeMs: 9, Offsets: []int64{2, 1}}
	prog := string(AppendProgress(nil, p))
	for _, tc := range []struct {
		f       IDFormat
		key     string
		keyNull bool
		etag    string
		want    string
	}{
		{IDEtag, "key", false, "", prog},
		{IDEtag, "key", false, "revision=42", prog + "/revision=42"},
		{IDKeyEtag, "key", false, "revision=42", `["a2V5","` + prog + `/revision=42"]`},
		{IDKeyEtag, "", true, "", `[null,"` + prog + `"]`},
	} {
		got := string(AppendEventID(nil, tc.f, []byte(tc.key), tc.keyNull, p, tc.etag))
		if got != tc.want {
			t.Fatalf("got %s, want %s", got, tc.want)
		}
		back, err := ParseEventID(got)
		if err != nil || fmt.Sprint(back.Offsets) != "[2 1]" || back.Epoch != 3 {
			t.Fatalf("%s parsed back as %+v, %v", got, back, err)
		}
	}
}

func TestParseEventIDRejects(t *testing.T) {
	for _, id := range []string{
		"", "!!!", "AA", "Bw", `["a"]`, `[1,2]`, `["a",null]`,
		"AQ",     // Zilla kind, no count
		"AQQABA", // Zilla, second partition missing
		"AgE",    // ours, truncated
		strings.Repeat("A", 300<<10),
	} {
		if p, err := ParseEventID(id); err == nil {
			t.Errorf("%.40q parsed as %+v", id, p)
		}
	}
	if _, err := ParseEventID(strings.Repeat("A", MaxEventIDLen+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized id: %v", err)
	}
}

func TestParseIDFormat(t *testing.T) {
	for tmpl, want := range map[string]IDFormat{"": IDEtag, "${etag}": IDEtag, `["${base64(key)}","${etag}"]`: IDKeyEtag, `["${base64(key)}", "${etag}"]`: IDKeyEtag} {
		if got, err := ParseIDFormat(tmpl); err != nil || got != want {
			t.Errorf("%q: %v %v", tmpl, got, err)
		}
	}
	if _, err := ParseIDFormat("${key}"); err == nil {
		t.Error("unknown template accepted")
	}
}

func FuzzParseEventID(f *testing.F) {
	for _, s := range []string{
		"AQQABAIC", "AQQABAIC/revision=42", `["a2V5","AQQABAIC/revision=42"]`, `[null,"AQQABAIC"]`, "AQIAAg==",
		string(AppendProgress(nil, &Progress{Epoch: 7, TimeMs: 1_800_000_000_000, Offsets: []int64{3, 0, 99}})),
		"garbage", "", "[", `["",""]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParseEventID(id)
		if err != nil {
			return
		}
		if len(p.Offsets) > MaxPartitions {
			t.Fatalf("%d partitions", len(p.Offsets))
		}
		for _, o := range p.Offsets {
			if o < 0 {
				t.Fatalf("negative offset in %+v", p)
			}
		}
		// What parses re-encodes to something that parses to the same progress.
		back, err := ParseEventID(string(AppendProgress(nil, &p)))
		if err != nil || back.Epoch != p.Epoch || back.TimeMs != p.TimeMs || fmt.Sprint(back.Offsets) != fmt.Sprint(p.Offsets) {
			t.Fatalf("re-encode of %+v gave %+v, %v", p, back, err)
		}
	})
}

// The key of a key-form id is base64url with padding, as Zilla writes it:
// "?>?" is "Pz4_" (standard base64 would be "Pz4/"), "k" is "aw==". Ids from
// before (standard alphabet, no padding) and Zilla's padded progress resume.
func TestKeyFormIDIsPaddedBase64url(t *testing.T) {
	p := &Progress{Epoch: 3, Offsets: []int64{2, 1}}
	prog := string(AppendProgress(nil, p))
	for key, want := range map[string]string{
		"?>?": `["Pz4_","` + prog + `"]`,
		"k":   `["aw==","` + prog + `"]`,
	} {
		if got := string(AppendEventID(nil, IDKeyEtag, []byte(key), false, p, "")); got != want {
			t.Errorf("key %q: id %s, want %s", key, got, want)
		}
	}
	for _, old := range []string{`["Pz4/","` + prog + `"]`, `["aw","` + prog + `"]`, `["Pz4_","` + prog + `=="]`} {
		back, err := ParseEventID(old)
		if err != nil || fmt.Sprint(back.Offsets) != "[2 1]" || back.Epoch != 3 {
			t.Errorf("%s parsed as %+v, %v", old, back, err)
		}
	}
	if back, err := ParseEventID(`["Pz4_","AQIAAg=="]`); err != nil || !back.Zilla || fmt.Sprint(back.Offsets) != "[1]" {
		t.Errorf("Zilla's padded progress: %+v, %v", back, err)
	}
}
