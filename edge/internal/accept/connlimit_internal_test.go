package accept

import (
	"net/http"
	"net/netip"
	"testing"
)

// A trusted proxy's X-Forwarded-For gives the rightmost address that is not
// a trusted proxy; what the header cannot tell (missing, malformed where it
// is read) counts against the proxy itself.
func TestForwardedClient(t *testing.T) {
	l := newConnLimiter(100, 10, []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("10.0.0.0/8")})
	peer := netip.MustParseAddr("127.0.0.2")
	for _, tc := range []struct {
		name   string
		values []string // X-Forwarded-For lines; nil: none
		want   string
	}{
		{"no header: the proxy's own request", nil, "127.0.0.2"},
		{"one client", []string{"198.51.100.7"}, "198.51.100.7"},
		{"through a second trusted proxy", []string{"198.51.100.7, 10.1.2.3"}, "198.51.100.7"},
		{"the client's own forgery left of it is not read", []string{"203.0.113.1, 198.51.100.7"}, "198.51.100.7"},
		{"garbage left of the client is not read", []string{"garbage, 198.51.100.7"}, "198.51.100.7"},
		{"header lines in order", []string{"203.0.113.1", "198.51.100.7"}, "198.51.100.7"},
		{"with a port", []string{"198.51.100.7:4711"}, "198.51.100.7"},
		{"IPv6 with a port", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv4-mapped", []string{"::ffff:198.51.100.7"}, "198.51.100.7"},
		{"only trusted proxies: the leftmost", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"malformed", []string{"198.51.100.7, unknown"}, "127.0.0.2"},
		{"trailing comma", []string{"198.51.100.7,"}, "127.0.0.2"},
		{"empty", []string{""}, "127.0.0.2"},
	} {
		h := http.Header{}
		for _, v := range tc.values {
			h.Add("X-Forwarded-For", v)
		}
		if got := l.forwardedClient(peer, h); got.String() != tc.want {
			t.Errorf("%s: %q gave %v, want %s", tc.name, tc.values, got, tc.want)
		}
	}
}
