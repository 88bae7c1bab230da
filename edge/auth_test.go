package edge_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/guard"
	"github.com/ssekafka/ssekafka/internal/ssetest"
)

// rsaKeys are two real signing keys, made once per test binary.
var rsaKeys = sync.OnceValue(func() [2]*rsa.PrivateKey {
	var ks [2]*rsa.PrivateKey
	for i := range ks {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		ks[i] = k
	}
	return ks
})

const testIssuer = "https://auth.example.com"

// jwksServer serves a JWKS whose keys a test may change.
type jwksServer struct {
	mu   sync.Mutex
	keys map[string]*rsa.PrivateKey // kid → key
	url  string
}

func newJWKS(t testing.TB) *jwksServer {
	ks := rsaKeys()
	j := &jwksServer{keys: map[string]*rsa.PrivateKey{"k1": ks[0], "k2": ks[1]}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.mu.Lock()
		var set struct {
			Keys []jwkset.JWKMarshal `json:"keys"`
		}
		for kid, k := range j.keys {
			jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
			if err != nil {
				panic(err)
			}
			set.Keys = append(set.Keys, jwk.Marshal())
		}
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	j.url = srv.URL
	return j
}

func (j *jwksServer) remove(kid string) {
	j.mu.Lock()
	delete(j.keys, kid)
	j.mu.Unlock()
}

// token signs claims for sub with key kid, expiring at exp, tenant acme.
func token(t testing.TB, kid, sub string, exp time.Time, scope string) string {
	t.Helper()
	return tenantToken(t, kid, sub, exp, scope, "acme")
}

// tenantToken is token with the tenant attribute given.
func tenantToken(t testing.TB, kid, sub string, exp time.Time, scope, tenant string) string {
	t.Helper()
	key := rsaKeys()[0]
	if kid == "k2" {
		key = rsaKeys()[1]
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": testIssuer, "aud": "sse", "sub": sub,
		"exp": exp.Unix(), "scope": scope, "tenant": tenant})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// guardedRoutes are the routes of the auth tests: a guarded stream of
// every record, one filtered by the token's identity, a topic named by it.
func guardedRoutes() []edge.RouteConfig {
	g := map[string][]string{"jwt": {"read"}}
	return []edge.RouteConfig{
		{Paths: []string{"/tasks"}, Topic: "tasks", Guarded: g},
		{Paths: []string{"/mine"}, Topic: "tasks", Guarded: g, Filters: []edge.FilterConfig{{Key: ptr("${guarded['jwt'].identity}")}}},
		{Paths: []string{"/inbox"}, Topic: "inbox.${guarded['jwt'].identity}", TopicPattern: `inbox\.[a-z]+`, Guarded: g},
		{Paths: []string{"/tenant"}, Topic: "tasks", Guarded: g, Filters: []edge.FilterConfig{{Headers: map[string]string{"tenant": `${guarded["jwt"].attributes.tenant}`}}}},
		{Paths: []string{"/open"}, Topic: "tasks"},
	}
}

// guardConfig returns an edge.Config tweak with the "jwt" guard reading
// keys from j; each edge gets a guard of its own, as separate processes do.
func guardConfig(t testing.TB, j *jwksServer, challenge time.Duration, cors *edge.CORS) func(*edge.Config) {
	return func(c *edge.Config) {
		g, err := guard.New(context.Background(), guard.Options{Name: "jwt", Issuer: testIssuer, Audience: "sse",
			KeysURL: j.url, Challenge: challenge, Refresh: 200 * time.Millisecond, UnknownKeyRefresh: 50 * time.Millisecond,
			Attributes: map[string]string{"tenant": "tenant"}, Logger: c.Logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		c.Guards = map[string]edge.Authorization{"jwt": {Guard: g, Credentials: guard.Credentials{
			Headers: map[string]string{"authorization": "Bearer {credentials}"},
			Query:   map[string]string{"access_token": "{credentials}"},
			Cookies: map[string]string{"sse_token": "{credentials}"},
		}}}
		c.CORS = cors
	}
}

// addGuardedEdge starts another edge on the stack's NATS, with the same routes.
func (s *stack) addGuardedEdge(routes []edge.RouteConfig, tweak func(*edge.Config)) string {
	s.t.Helper()
	_, url := s.serveAnotherEdge(routes, edge.Config{Logger: testLogger(s.t), RetryJitter: -1, Registerer: prometheus.NewRegistry(),
		ProbeInterval: 200 * time.Millisecond, PageTimeout: 500 * time.Millisecond}, tweak)
	return url
}

// do sends one request and returns its status, headers and body.
func do(t *testing.T, method, url string, h http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	// A stream answered 200 is read to its ready marker (its state part
	// done), then closed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode != http.StatusOK {
		body, _ = io.ReadAll(resp.Body)
	} else if resp.Header.Get("Content-Type") == "text/event-stream" {
		if _, err := ssetest.NewReader(resp.Body).Until(ssetest.IsReady); err != nil {
			t.Fatalf("%s %s: %v before event:ready", method, url, err)
		}
	}
	return resp.StatusCode, resp.Header, string(body)
}

// waitNoClients waits until the edge has let every stream go: none is
// left to log after the test.
func (s *stack) waitNoClients() {
	s.t.Helper()
	eventually(s.t, 10*time.Second, "every stream released", func() bool {
		mfs, err := s.edgeReg.Gather()
		if err != nil {
			s.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ssekafka_edge_clients" {
				return mf.GetMetric()[0].GetGauge().GetValue() == 0
			}
		}
		return true
	})
}

func TestGuardedRouteRefusals(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), topics: []string{"tasks", "inbox.alice"}, edgeCfg: guardConfig(t, j, 0, nil)})
	hour := time.Now().Add(time.Hour)
	good := token(t, "k1", "alice", hour, "read write")
	forged := token(t, "k1", "alice", hour, "read")
	forged = forged[:strings.LastIndexByte(forged, '.')] + "." + strings.Repeat("A", 342) // not k1's signature
	for _, tc := range []struct {
		name   string
		path   string
		header http.Header
		status int
		auth   string // WWW-Authenticate
	}{
		{"no credentials", "/tasks", nil, 401, `Bearer realm="jwt"`},
		{"bad signature", "/tasks", bearer(forged), 401, `Bearer realm="jwt", error="invalid_token", error_description="bad signature"`},
		{"expired", "/tasks", bearer(token(t, "k1", "alice", time.Now().Add(-time.Minute), "read")), 401, `Bearer realm="jwt", error="invalid_token", error_description="expired"`},
		{"unknown key", "/tasks", bearer(token(t, "k9", "alice", hour, "read")), 401, `Bearer realm="jwt", error="invalid_token", error_description="unknown key"`},
		{"not bearer", "/tasks", http.Header{"Authorization": {"Basic " + good}}, 401, `Bearer realm="jwt", error="invalid_request", error_description="credentials in header authorization do not fit Bearer {credentials}"`},
		{"header and query", "/tasks?access_token=" + good, bearer(good), 401, `Bearer realm="jwt", error="invalid_request", error_description="credentials in more than one place"`},
		{"role missing", "/tasks", bearer(token(t, "k1", "alice", hour, "write")), 403, `Bearer realm="jwt", error="insufficient_scope", error_description="role read missing"`},
		{"identity makes a bad topic", "/inbox", bearer(token(t, "k1", "a*b", hour, "read")), 400, ""},
		{"identity outside the topic pattern", "/inbox", bearer(token(t, "k1", "Bob", hour, "read")), 404, ""},
		{"header", "/tasks", bearer(good), 200, ""},
		{"query", "/tasks?access_token=" + good, nil, 200, ""},
		{"cookie", "/tasks", http.Header{"Cookie": {"sse_token=" + good}}, 200, ""},
		{"cookie and header", "/tasks", http.Header{"Cookie": {"sse_token=" + good}, "Authorization": {"Bearer " + good}}, 401, `Bearer realm="jwt", error="invalid_request", error_description="credentials in more than one place"`},
		{"identity topic", "/inbox", bearer(good), 200, ""},
		{"open route", "/open", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := do(t, http.MethodGet, s.url+tc.path, tc.header)
			if status != tc.status || h.Get("WWW-Authenticate") != tc.auth {
				t.Fatalf("status %d, WWW-Authenticate %q (%q); want %d, %q", status, h.Get("WWW-Authenticate"), body, tc.status, tc.auth)
			}
			if tok := strings.TrimPrefix(tc.header.Get("Authorization"), "Bearer "); strings.Contains(body, good) || tok != "" && strings.Contains(body, tok) {
				t.Fatalf("the answer holds the token: %q", body)
			}
		})
	}
	if status, h, _ := do(t, http.MethodPut, s.url+"/tasks", nil); status != 405 || h.Get("Allow") != "GET, POST" {
		t.Fatalf("PUT on a guarded route: %d, Allow %q; want 405, GET, POST (renewals)", status, h.Get("Allow"))
	}
	// A renewal is verified before anything else, and needs its headers.
	if status, _, _ := do(t, http.MethodPost, s.url+"/tasks", bearer(good)); status != 400 {
		t.Fatalf("a renewal without its content-type: %d, want 400", status)
	}
	if n := s.edgeCounter("ssekafka_edge_auth_refusals_total"); n != 8 {
		t.Fatalf("auth_refusals_total %v, want 8", n)
	}
	s.waitNoClients()
}

// A key filter and a topic made from the token's identity give each user
// exactly their own records; an attribute in a header filter likewise.
func TestIdentityDerivedTopicAndFilters(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), topics: []string{"tasks", "inbox.alice", "inbox.bob"}, edgeCfg: guardConfig(t, j, 0, nil)})
	hour := time.Now().Add(time.Hour)
	alice, bob := bearer(token(t, "k1", "alice", hour, "read")), bearer(token(t, "k1", "bob", hour, "read"))
	s.produce("tasks", rec(0, "alice", "a1"), rec(1, "bob", "b1"), rec(2, "carol", "c1"))
	s.produce("inbox.alice", rec(0, "m1", "for alice"))
	s.produce("inbox.bob", rec(0, "m2", "for bob"))
	tenantRec := rec(1, "acme-job", "x")
	tenantRec.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte("acme")}}
	s.produce("tasks", tenantRec)

	datas := func(evs []event) []string {
		var ds []string
		for _, ev := range evs {
			if ev.Event != "ready" && ev.HasData {
				ds = append(ds, ev.Data)
			}
		}
		return ds
	}
	for _, tc := range []struct {
		path   string
		header http.Header
		want   string
	}{
		{"/mine", alice, "a1"},
		{"/mine", bob, "b1"},
		{"/inbox", alice, "for alice"},
		{"/inbox", bob, "for bob"},
		{"/tenant", bob, "x"},
	} {
		c := s.connect(tc.path, tc.header)
		if got := datas(c.untilReady()); len(got) != 1 || got[0] != tc.want {
			t.Fatalf("%s as %s: state %q, want [%q]", tc.path, tc.header.Get("Authorization")[:12], got, tc.want)
		}
		c.close()
	}
	// Live, too: alice's stream gets her change, not bob's.
	c := s.connect("/mine", alice)
	c.untilReady()
	s.produce("tasks", rec(1, "bob", "b2"), rec(0, "alice", "a2"))
	if ev := c.mustNext(); ev.Data != "a2" {
		t.Fatalf("alice live: %q, want a2", ev.Raw)
	}
}

// A topic made only of the token's claims and literals (Zilla's
// ${guarded['g'].identity}-topic) needs no topicPattern: the token's issuer
// names it. Each user reads the topic their token names; a name no topic
// has goes through the edge's topic lookup and is 404.
func TestTopicFromTheTokenIsServedWithoutTopicPattern(t *testing.T) {
	j := newJWKS(t)
	g := map[string][]string{"jwt": {"read"}}
	routes := []edge.RouteConfig{{Paths: []string{"/own"}, Topic: "${guarded['jwt'].identity}-topic", Guarded: g}}
	s := newStack(t, stackOptions{routes: routes, topics: []string{"alice-topic", "bob-topic"}, edgeCfg: guardConfig(t, j, 0, nil)})
	hour := time.Now().Add(time.Hour)
	s.produce("alice-topic", rec(0, "m1", "for alice"))
	s.produce("bob-topic", rec(0, "m2", "for bob"))
	for _, who := range []string{"alice", "bob"} {
		c := s.connect("/own", bearer(token(t, "k1", who, hour, "read")))
		var got []string
		for _, ev := range c.untilReady() {
			if ev.Event != "ready" && ev.HasData {
				got = append(got, ev.Data)
			}
		}
		if len(got) != 1 || got[0] != "for "+who {
			t.Fatalf("/own as %s: state %q, want [%q]", who, got, "for "+who)
		}
		c.close()
	}
	if status, _, body := do(t, http.MethodGet, s.url+"/own", bearer(token(t, "k1", "carol", hour, "read"))); status != http.StatusNotFound || !strings.Contains(body, "carol-topic not found") {
		t.Fatalf("a topic the token names that does not exist: %d %q", status, body)
	}
	if status, _, _ := do(t, http.MethodGet, s.url+"/own", nil); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", status)
	}
}

// challengeRE is event:challenge in Zilla's shape, with the stream's handle.
var challengeRE = regexp.MustCompile(`^event:challenge\ndata:\{"method":"POST","headers":\{"content-type":"application/x-challenge-response","x-ssekafka-stream":"([0-9a-f]+-[0-9]+)"\}\}\n\n$`)

// Without renewal, a stream is challenged at exp - challenge and closed at exp.
func TestStreamChallengedThenEndsAtExpiry(t *testing.T) {
	for _, noHijack := range []bool{false, true} {
		t.Run(map[bool]string{false: "hijacked", true: "net/http"}[noHijack], func(t *testing.T) {
			j := newJWKS(t)
			tweak := guardConfig(t, j, time.Second, nil)
			s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: func(c *edge.Config) { tweak(c); c.NoHijack = noHijack }})
			// Seconds: exp is whole seconds; the margin is for a loaded machine.
			exp := time.Unix(time.Now().Add(4*time.Second).Unix(), 0)
			c := s.connect("/tasks", bearer(token(t, "k1", "alice", exp, "read")))
			c.untilReady()
			ev, err := c.next(5 * time.Second)
			at := time.Now()
			if err != nil || !challengeRE.MatchString(ev.Raw) {
				t.Fatalf("got %q, %v: want event:challenge", ev.Raw, err)
			}
			if at.Before(exp.Add(-time.Second)) {
				t.Fatalf("challenged %v before expiry, want at most 1s", exp.Sub(at))
			}
			if ev, err := c.next(5 * time.Second); err != errStreamEnded {
				t.Fatalf("after the challenge: %q, %v; want the stream to end", ev.Raw, err)
			}
			if time.Now().Before(exp) {
				t.Fatalf("stream ended %v before its token's expiry", time.Until(exp))
			}
			eventually(t, 5*time.Second, "streams_expired_total", func() bool { return s.edgeCounter("ssekafka_edge_streams_expired_total") == 1 })
		})
	}
}

// challengeHandle reads c's state part and the challenge after it, and
// returns the stream handle the challenge names.
func challengeHandle(t *testing.T, c *sseClient) string {
	t.Helper()
	c.untilReady()
	ev := c.mustNext()
	m := challengeRE.FindStringSubmatch(ev.Raw)
	if m == nil {
		t.Fatalf("got %q, want event:challenge", ev.Raw)
	}
	return m[1]
}

// A renewal POSTed to another edge extends the stream held by the first:
// it keeps its connection and receives changes after the old expiry.
func TestRenewalOnAnotherEdgeExtendsTheStream(t *testing.T) {
	j := newJWKS(t)
	tweak := guardConfig(t, j, 2*time.Second, nil)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: tweak})
	other := s.addGuardedEdge(guardedRoutes(), guardConfig(t, j, 2*time.Second, nil))
	exp := time.Unix(time.Now().Add(5*time.Second).Unix(), 0)
	c := s.connect("/tasks", bearer(token(t, "k1", "alice", exp, "read")))
	handle := challengeHandle(t, c)
	renew := func(h http.Header) int {
		h.Set("Content-Type", "application/x-challenge-response")
		if h.Get("X-Ssekafka-Stream") == "" {
			h.Set("X-Ssekafka-Stream", handle)
		}
		status, _, body := do(t, http.MethodPost, other+"/tasks", h)
		t.Logf("renewal: %d %q", status, body)
		return status
	}
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		// The renewal first: the refusals after it change nothing, and the
		// old expiry is near.
		{"fresh token, signed by the other key", bearer(token(t, "k2", "alice", later, "read")), 204},
		{"no token", http.Header{}, 401},
		{"another identity", bearer(token(t, "k1", "bob", later, "read")), 404}, // no more said than for no stream
		{"role missing", bearer(token(t, "k1", "alice", later, "write")), 403},
		{"unknown stream", http.Header{"Authorization": {"Bearer " + token(t, "k1", "alice", later, "read")}, "X-Ssekafka-Stream": {strings.Split(handle, "-")[0] + "-999"}}, 404},
		{"no such edge", http.Header{"Authorization": {"Bearer " + token(t, "k1", "alice", later, "read")}, "X-Ssekafka-Stream": {"0123456789abcdef-1"}}, 404},
	} {
		if got := renew(tc.header); got != tc.want {
			t.Fatalf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	// Past the old expiry the stream is still open, and quiet.
	if ev, err := c.next(time.Until(exp) + 300*time.Millisecond); err == nil || err == errStreamEnded {
		t.Fatalf("around the old expiry: %q, %v; want nothing", ev.Raw, err)
	}
	s.produce("tasks", rec(0, "k", "after the old expiry"))
	if ev := c.mustNext(); ev.Data != "after the old expiry" {
		t.Fatalf("got %q, want the change (same connection, no reconnect)", ev.Raw)
	}
	// The renewal's key is the stream's now: removing the first key ends
	// a stream still signed by it, and leaves the renewed one open.
	victim := s.connect("/tasks", bearer(token(t, "k1", "bob", later, "read")))
	victim.untilReady()
	j.remove("k1")
	if ev, err := victim.next(5 * time.Second); err != errStreamEnded {
		t.Fatalf("a stream signed by the removed key: %q, %v; want it ended", ev.Raw, err)
	}
	s.produce("tasks", rec(0, "k", "after k1 left"))
	if ev := c.mustNext(); ev.Data != "after k1 left" {
		t.Fatalf("got %q after k1 left the JWKS", ev.Raw)
	}
}

// A renewal whose token carries another value for an attribute the
// stream's route uses (its filter's tenant) is refused with 403, on the
// holding edge as on another; the stream keeps its grant until its
// current expiry and then ends. On a route that uses no attribute the
// same token renews.
func TestRenewalWithOtherAttributesIsRefused(t *testing.T) {
	j := newJWKS(t)
	tweak := guardConfig(t, j, 2*time.Second, nil)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: tweak})
	other := s.addGuardedEdge(guardedRoutes(), guardConfig(t, j, 2*time.Second, nil))
	exp := time.Unix(time.Now().Add(5*time.Second).Unix(), 0)
	later := time.Now().Add(time.Hour)
	handle := func(c *sseClient) string {
		ev := c.mustNext()
		m := challengeRE.FindStringSubmatch(ev.Raw)
		if m == nil {
			t.Fatalf("got %q, want event:challenge", ev.Raw)
		}
		return m[1]
	}
	renew := func(base, path, stream, tok string) int {
		h := bearer(tok)
		h.Set("Content-Type", "application/x-challenge-response")
		h.Set("X-Ssekafka-Stream", stream)
		status, _, body := do(t, http.MethodPost, base+path, h)
		t.Logf("renewal of %s on %s: %d %q", path, base, status, body)
		return status
	}
	tenant := s.connect("/tenant", bearer(token(t, "k1", "alice", exp, "read")))
	tenant.untilReady()
	plain := s.connect("/tasks", bearer(token(t, "k1", "alice", exp, "read")))
	plain.untilReady()
	th, ph := handle(tenant), handle(plain)
	otherTenant := tenantToken(t, "k1", "alice", later, "read", "globex")
	if got := renew(other, "/tenant", th, otherTenant); got != http.StatusForbidden {
		t.Fatalf("renewal with another tenant, on another edge: %d, want 403", got)
	}
	if got := renew(s.url, "/tenant", th, otherTenant); got != http.StatusForbidden {
		t.Fatalf("renewal with another tenant, on the holding edge: %d, want 403", got)
	}
	if got := renew(other, "/tasks", ph, otherTenant); got != http.StatusNoContent {
		t.Fatalf("renewal of a stream whose route uses no attribute: %d, want 204", got)
	}
	// The refused stream ends at its first token's expiry; the renewed one lives on.
	if ev, err := tenant.next(time.Until(exp) + 5*time.Second); err != errStreamEnded {
		t.Fatalf("the stream refused a renewal: %q, %v; want it ended at its expiry", ev.Raw, err)
	}
	if time.Now().Before(exp) {
		t.Fatalf("stream ended %v before its token's expiry", time.Until(exp))
	}
	s.produce("tasks", rec(0, "k", "after the old expiry"))
	if ev := plain.mustNext(); ev.Data != "after the old expiry" {
		t.Fatalf("got %q, want the change on the renewed stream", ev.Raw)
	}
}

// Every edge's NATS user may subscribe to every renewal subject
// (ssekafka.renew.*) and answer on it. A renewal routed between edges is
// sealed to the holding edge's key: a sniffer on the subjects sees no
// token, and an answer it forges is not believed (the sender waits for
// the holder's sealed answer).
func TestRenewalsOverNATSAreSealedToTheHoldingEdge(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: guardConfig(t, j, 2*time.Second, nil)})
	other := s.addGuardedEdge(guardedRoutes(), guardConfig(t, j, 2*time.Second, nil))
	sniffer := s.connectNATS()
	sniffed := make(chan *nats.Msg, 64)
	if _, err := sniffer.ChanSubscribe("ssekafka.renew.*", sniffed); err != nil {
		t.Fatal(err)
	}
	if err := sniffer.Flush(); err != nil {
		t.Fatal(err)
	}
	exp := time.Unix(time.Now().Add(5*time.Second).Unix(), 0)
	c := s.connect("/tasks", bearer(token(t, "k1", "alice", exp, "read")))
	c.untilReady()
	m := challengeRE.FindStringSubmatch(c.mustNext().Raw)
	if m == nil {
		t.Fatal("want event:challenge")
	}
	renew := func(stream, tok string) int {
		h := bearer(tok)
		h.Set("Content-Type", "application/x-challenge-response")
		h.Set("X-Ssekafka-Stream", stream)
		status, _, body := do(t, http.MethodPost, other+"/tasks", h)
		t.Logf("renewal: %d %q", status, body)
		return status
	}
	fresh := token(t, "k2", "alice", time.Now().Add(time.Hour), "read")
	if got := renew(m[1], fresh); got != http.StatusNoContent {
		t.Fatalf("renewal: %d, want 204", got)
	}
	select {
	case msg := <-sniffed:
		for _, part := range strings.Split(fresh, ".") {
			if strings.Contains(string(msg.Data), part) {
				t.Fatalf("a sniffer on %s read the token: %q", msg.Subject, msg.Data)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the sniffer saw no renewal: the test did not reach the NATS path")
	}
	// A forger answers every renewal at once. Its 204 for a stream nobody
	// holds is not believed, nor is its 404 for the real one.
	if _, err := sniffer.Subscribe("ssekafka.renew.*", func(msg *nats.Msg) { _ = msg.Respond([]byte("204")) }); err != nil {
		t.Fatal(err)
	}
	if err := sniffer.Flush(); err != nil {
		t.Fatal(err)
	}
	edgeID, _, _ := strings.Cut(m[1], "-")
	if got := renew(edgeID+"-999999", fresh); got == http.StatusNoContent {
		t.Fatal("a forged 204 renewed a stream nobody holds")
	}
	if got := renew(m[1], token(t, "k1", "bob", time.Now().Add(time.Hour), "read")); got != http.StatusNotFound {
		t.Fatalf("another identity's renewal with a forger answering 204: %d, want the holder's 404", got)
	}
}

// A key removed from the JWKS ends the streams it signed, not the others.
func TestRotatedJWKSEndsStreamsOfTheRemovedKey(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: guardConfig(t, j, 0, nil)})
	hour := time.Now().Add(time.Hour)
	old := s.connect("/tasks", bearer(token(t, "k1", "alice", hour, "read")))
	kept := s.connect("/tasks", bearer(token(t, "k2", "alice", hour, "read")))
	old.untilReady()
	kept.untilReady()
	j.remove("k1")
	if ev, err := old.next(5 * time.Second); err != errStreamEnded {
		t.Fatalf("stream signed by the removed key: %q, %v; want it ended", ev.Raw, err)
	}
	s.produce("tasks", rec(0, "k", "v"))
	if ev := kept.mustNext(); ev.Data != "v" {
		t.Fatalf("stream signed by the kept key: %q", ev.Raw)
	}
	if n := s.edgeCounter("ssekafka_edge_streams_key_removed_total"); n != 1 {
		t.Fatalf("streams_key_removed_total %v, want 1", n)
	}
	if status, _, _ := do(t, http.MethodGet, s.url+"/tasks", bearer(token(t, "k1", "alice", hour, "read"))); status != 401 {
		t.Fatalf("a new stream with the removed key: %d, want 401", status)
	}
}

func TestCORS(t *testing.T) {
	j := newJWKS(t)
	cors := &edge.CORS{Origins: []string{"https://app.example.com"}, Credentials: true, MaxAge: 10 * time.Minute}
	for _, noHijack := range []bool{false, true} {
		t.Run(map[bool]string{false: "hijacked", true: "net/http"}[noHijack], func(t *testing.T) {
			tweak := guardConfig(t, j, 0, cors)
			s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: func(c *edge.Config) { tweak(c); c.NoHijack = noHijack }})
			tok := token(t, "k1", "alice", time.Now().Add(time.Hour), "read")
			for _, tc := range []struct {
				name, method, path, origin string
				header                     http.Header
				status                     int
				allow                      string
			}{
				{"allowed origin", "GET", "/tasks?access_token=" + tok, "https://app.example.com", nil, 200, "https://app.example.com"},
				{"refused origin", "GET", "/tasks?access_token=" + tok, "https://evil.example.com", nil, 200, ""},
				{"error to an allowed origin", "GET", "/tasks", "https://app.example.com", nil, 401, "https://app.example.com"},
				{"preflight", "OPTIONS", "/tasks", "https://app.example.com", http.Header{"Access-Control-Request-Method": {"POST"},
					"Access-Control-Request-Headers": {"authorization,content-type,x-ssekafka-stream"}}, 204, "https://app.example.com"},
				{"preflight, refused origin", "OPTIONS", "/tasks", "https://evil.example.com", http.Header{"Access-Control-Request-Method": {"POST"}}, 204, ""},
			} {
				h := http.Header{"Origin": {tc.origin}}
				for k, v := range tc.header {
					h[k] = v
				}
				status, rh, body := do(t, tc.method, s.url+tc.path, h)
				if status != tc.status || rh.Get("Access-Control-Allow-Origin") != tc.allow || rh.Get("Vary") != "Origin" {
					t.Fatalf("%s: %d, Allow-Origin %q, Vary %q (%q); want %d, %q, Origin", tc.name, status,
						rh.Get("Access-Control-Allow-Origin"), rh.Get("Vary"), body, tc.status, tc.allow)
				}
				creds := map[bool]string{true: "true"}[tc.allow != ""]
				if rh.Get("Access-Control-Allow-Credentials") != creds {
					t.Fatalf("%s: Allow-Credentials %q", tc.name, rh.Get("Access-Control-Allow-Credentials"))
				}
				if tc.method == "OPTIONS" && tc.allow != "" && (rh.Get("Access-Control-Allow-Methods") != "GET, POST" ||
					rh.Get("Access-Control-Allow-Headers") != "authorization, content-type, last-event-id, x-ssekafka-stream, if-none-match" ||
					rh.Get("Access-Control-Max-Age") != "600") {
					t.Fatalf("preflight: %v", rh)
				}
			}
			s.waitNoClients()
		})
	}
	// Default: no CORS headers at all.
	s := newStack(t, stackOptions{})
	if _, rh, _ := do(t, "GET", s.url+"/tasks", http.Header{"Origin": {"https://app.example.com"}}); rh.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS headers without sse.cors: %v", rh)
	}
	s.waitNoClients()
}
