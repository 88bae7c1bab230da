package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kgo"
)

var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// zillaJWTConfig is shaped as Zilla's sse.kafka.fanout.jwt example: a jwt
// guard with an inline key (n in standard base64, as Zilla's examples write
// it), the credentials of the http binding, a guarded route with an
// identity filter. Only sse.authorization's place differs: it is the edge's.
func zillaJWTConfig(extra string) string {
	n := base64.StdEncoding.EncodeToString(testKey().N.Bytes())
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(testKey().E)).Bytes())
	return fmt.Sprintf(`guards:
  jwt0:
    type: jwt
    options:
      issuer: https://auth.example.com
      audience: https://api.example.com
      keys:
        - kty: RSA
          n: %s
          e: %s
          alg: RS256
          kid: example
      challenge: 2
sse:
  authorization:
    jwt0:
      credentials:
        headers:
          authorization: Bearer {credentials}
        query:
          access_token: "{credentials}"
routes:
  - when:
      - path: /tasks
    exit: kafka_cache_client0
    guarded:
      jwt0:
        - read:items
    with:
      topic: t
      filters:
        - key: ${guarded['jwt0'].identity}
`, n, e) + extra
}

func zillaToken(t *testing.T, sub string, exp time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://auth.example.com", "aud": "https://api.example.com",
		"sub": sub, "exp": exp.Unix(), "scope": "read:items"})
	tok.Header["kid"] = "example"
	s, err := tok.SignedString(testKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGuardConfigErrorsNameTheField(t *testing.T) {
	route := "routes: [{when: [{path: /x}], with: {topic: t}, guarded: {g: [r]}}]\n"
	auth := "sse: {authorization: {g: {credentials: {headers: {authorization: 'Bearer {credentials}'}}}}}\n"
	hs := func(k string) string {
		return "guards: {g: {type: jwt, options: {keys: [{kty: oct, kid: h, alg: HS256, k: " + k + "}]}}}\n"
	}
	for _, tc := range []struct{ yaml, want string }{
		{route, `routes[0].guarded: unknown guard "g"`},
		{route + auth, `sse.authorization.g: unknown guard "g"`},
		{route + "guards: {g: {type: opa}}\n" + auth, "guards.g.type: \"opa\" is not a guard type"},
		{route + "guards: {g: {type: jwt, options: {keys: [{kty: XYZ, kid: a}]}}}\n" + auth, "line 2: guards.g.options.keys:"},
		{route + hs(base64.RawURLEncoding.EncodeToString([]byte("short"))) + auth, "guards.g.options.keys: keys[0]: kid \"h\": an HMAC key of 5 bytes is too short"},
		{route + "guards: {g: {type: jwt, options: {keys: ftp://x}}}\n" + auth, "guards.g.options.keys: want a list of JWKs or a JWKS URL"},
		{route + "guards: {g: {type: jwt, options: {}}}\n" + auth, "guards.g.options.keys"},
		{route + "guards: {g: {type: jwt, options: {keys: https://k/jwks, challenge: -1}}}\n" + auth, "guards.g.options.challenge: must not be negative"},
		{route + "guards: {g: {type: jwt, options: {keys: https://k/jwks, algorithms: [none]}}}\n" + auth, "guards.g.options.algorithms[0]"},
		{route + "guards: {g: {type: jwt, options: {keys: https://k/jwks}}}\n", "sse.authorization: no credentials for guard g"},
		{route + "guards: {g: {type: jwt, options: {keys: https://k/jwks}}}\nsse: {authorization: {g: {credentials: {}}}}\n", "sse.authorization.g.credentials: credentials: none"},
		{route + "guards: {g: {type: jwt, options: {keys: https://k/jwks}}}\nsse: {authorization: {g: {credentials: {query: {t: x}}}}}\n", "sse.authorization.g.credentials: credentials.query.t"},
		{"guards: {g: {type: jwt, options: {keys: https://k/jwks}}}\nsse: {authorization: {h: {credentials: {query: {t: '{credentials}'}}}}}\n", `sse.authorization.h: unknown guard "h"`},
		{"routes: [{when: [{path: /x}], with: {topic: '${guarded[''g''].identity}', topicPattern: '.+'}}]\n", `routes[0].with.topic: ${guarded['g'].identity}: the route is not guarded by "g"`},
		{"sse: {cors: {origins: '*', credentials: true}}\n", "sse.cors: CORS.Credentials: not with any origin"},
		{"sse: {cors: {origins: [https://App.example.com]}}\n", "sse.cors: CORS.Origins[0]"},
	} {
		_, err := parseConfig([]byte(tc.yaml), false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := parseConfig([]byte(zillaJWTConfig("")), true)
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.Guards["jwt0"]; g.Options.Challenge != 2 || len(g.Options.Keys.inline) != 1 || len(cfg.routes) != 1 {
		t.Fatalf("%+v", cfg)
	}
}

// Zilla's JWT example, pasted, starts and enforces what it declares, on the
// authenticated NATS of deploy/: no token, 401; a token, the user's own
// records; the challenge's renewal, sent to another edge, keeps the stream
// past the first token's expiry.
func TestZillaJWTConfigEnforced(t *testing.T) {
	url := startNATSFromConf(t)
	edgeNATS := "nats: {url: " + url + ", credentials: {user: edge, password: {env: SSEKAFKA_NATS_EDGE_PASSWORD}}}\n"
	guardedRenewalAcrossEdges(t, url, "nats: {url: "+url+", credentials: {user: cache, password: {env: SSEKAFKA_NATS_CACHE_PASSWORD}}}\n", [2]string{edgeNATS, edgeNATS})
}

// guardedRenewalAcrossEdges runs a cache and two edges of Zilla's JWT
// example on the NATS at url, each with its nats: section: no token, 401;
// a token, the user's own records; the challenge's renewal, sent to the
// other edge, keeps the stream past the first token's expiry.
func guardedRenewalAcrossEdges(t *testing.T, url, cacheNATS string, edgeNATS [2]string) {
	t.Helper()
	kafka := startKafkaTopic(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	common := fmt.Sprintf("kafka: {brokers: [%s], bootstrap: [t]}\n", kafka)
	cacheCfg, err := parseConfig([]byte(common+cacheNATS), false)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &strings.Builder{}}, nil))
	rc, err := startCache(ctx, cacheCfg, cacheCfg.Kafka.Brokers, url, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	var edges []string
	var done []chan error
	for i := range 2 {
		edgeCfg, err := parseConfig([]byte(zillaJWTConfig(common+edgeNATS[i])), true)
		if err != nil {
			t.Fatal(err)
		}
		addr := make(chan net.Addr, 1)
		errc := make(chan error, 1)
		go func() {
			errc <- serveEdge(ctx, edgeCfg, "127.0.0.1:0", url, log, newRegistry(), nil, func(a net.Addr) { addr <- a })
		}()
		select {
		case a := <-addr:
			edges = append(edges, "http://"+a.String())
		case err := <-errc:
			t.Fatal(err)
		}
		done = append(done, errc)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	for _, kv := range [][2]string{{"alice", "a1"}, {"bob", "b1"}} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(kv[0]), Value: []byte(kv[1])}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.Get(edges[0] + "/tasks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="jwt0"` {
		t.Fatalf("no token: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	// Opened again until the cache has applied a1 (the ack comes first).
	var s *stream
	var exp time.Time
	waitUntil(t, "alice's state", func() bool {
		exp = time.Unix(time.Now().Add(5*time.Second).Unix(), 0)
		s = openStream(t, edges[0]+"/tasks?access_token="+zillaToken(t, "alice", exp), "")
		data, _ := s.untilReady(t)
		if len(data) > 1 || len(data) == 1 && data[0] != "a1" {
			t.Fatalf("alice's state: %q, want [a1]", data)
		}
		if len(data) == 0 {
			s.cancel()
		}
		return len(data) == 1
	})
	ch := s.next(t)
	handle, ok := strings.CutPrefix(ch.data, `{"method":"POST","headers":{"content-type":"application/x-challenge-response","x-ssekafka-stream":"`)
	if ch.event != "challenge" || !ok {
		t.Fatalf("got %+v, want event:challenge", ch)
	}
	handle = strings.TrimSuffix(handle, `"}}`)
	req, _ := http.NewRequest(http.MethodPost, edges[1]+"/tasks", nil)
	req.Header.Set("Content-Type", "application/x-challenge-response")
	req.Header.Set("X-Ssekafka-Stream", handle)
	req.Header.Set("Authorization", "Bearer "+zillaToken(t, "alice", time.Now().Add(time.Hour)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("renewal on the other edge: %s", resp.Status)
	}
	for time.Now().Before(exp.Add(200 * time.Millisecond)) {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("the renewed stream ended at the first token's expiry")
			}
			t.Fatalf("unexpected %+v", ev)
		case <-time.After(time.Until(exp.Add(200 * time.Millisecond))):
		}
	}
	for _, kv := range [][2]string{{"bob", "b2"}, {"alice", "a2"}} {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(kv[0]), Value: []byte(kv[1])}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if ev := s.next(t); ev.data != "a2" {
		t.Fatalf("after the first expiry: %+v, want a2", ev)
	}
	cancel()
	for _, d := range done {
		<-d
	}
	<-rc.done
}

// A guard whose JWKS cannot be read does not start: the edge would refuse
// every stream, or worse, serve none it should.
func TestGuardWithUnreachableJWKSDoesNotStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/jwks.json"
	ln.Close() // nothing listens there now
	cfg, err := parseConfig([]byte("guards: {g: {type: jwt, options: {keys: '"+url+"'}}}\n"+
		"sse: {authorization: {g: {credentials: {query: {access_token: '{credentials}'}}}}}\n"+
		"routes: [{when: [{path: /x}], with: {topic: t}, guarded: {g: [r]}}]\n"), true)
	if err != nil {
		t.Fatal(err) // validate reads no URL
	}
	if _, _, err := cfg.startGuards(context.Background(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "guard g: keys: read "+url) {
		t.Fatalf("start: %v, want the guard, the field and the URL", err)
	}
}
