package main

import (
	"strings"
	"testing"

	"github.com/ssekafka/ssekafka/edge"
)

// sse.keyReads reaches the edge as edge.KeyReadLimits (-1 is edge.Off), and
// a bad value is refused naming the field and its line.
func TestKeyReadsConfig(t *testing.T) {
	cfg, err := parseConfig([]byte("sse:\n  keyReads: {minRate: -1, maxBytes: 1048576, maxBytesPerIP: 0, ratePerIP: 2.5, cacheRequestsPerIP: -1}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	want := edge.KeyReadLimits{MinRate: edge.Off, MaxBytes: 1 << 20, RatePerIP: 2.5, CacheRequestsPerIP: edge.Off}
	if got := cfg.SSE.KeyReads.edge(); got != want {
		t.Fatalf("key reads %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"sse:\n  keyReads:\n    minRate: -2\n", "line 3: sse.keyReads.minRate: must be -1"},
		{"sse:\n  keyReads:\n    maxBytes: -5\n", "line 3: sse.keyReads.maxBytes: must be -1"},
		{"sse:\n  keyReads:\n    maxBytesPerIP: -2\n", "line 3: sse.keyReads.maxBytesPerIP: must be -1"},
		{"sse:\n  keyReads:\n    ratePerIP: -0.5\n", "line 3: sse.keyReads.ratePerIP: must be -1"},
		{"sse:\n  keyReads:\n    cacheRequestsPerIP: .nan\n", "line 3: sse.keyReads.cacheRequestsPerIP: must be -1"},
		{"sse:\n  keyReads:\n    rate: 5\n", "line 3: field rate not found"},
	} {
		_, err := parseConfig([]byte(tc.yaml), false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want it to contain %q", tc.yaml, err, tc.want)
		}
	}
}
