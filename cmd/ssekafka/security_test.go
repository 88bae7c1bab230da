package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/testcert"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/proto"
)

// startNATSFromConf runs deploy/nats/nats-server.conf (the permissions
// docker-compose uses) on a free loopback port, with the passwords set.
func startNATSFromConf(t *testing.T) string {
	t.Helper()
	t.Setenv("SSEKAFKA_NATS_CACHE_PASSWORD", "cache-secret-1")
	t.Setenv("SSEKAFKA_NATS_EDGE_PASSWORD", "edge-secret-2")
	// The cluster of docker-compose.yml is left out: this is one server.
	t.Setenv("SSEKAFKA_NATS_NAME", "nats-1")
	t.Setenv("SSEKAFKA_NATS_ROUTE_PASSWORD", "route-secret-3")
	for _, n := range []string{"1", "2", "3"} {
		t.Setenv("SSEKAFKA_NATS_ROUTE_"+n, "nats://route:route-secret-3@127.0.0.1:6222")
	}
	opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "deploy", "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, 0, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// Only the two roles connect, and each may use only its own subjects: an
// outsider cannot connect; an edge cannot publish a change or answer state
// requests as a cache would.
func TestNATSPermissions(t *testing.T) {
	url := startNATSFromConf(t)
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an outsider connected without credentials")
	}
	if nc, err := nats.Connect(url, nats.UserInfo("edge", "wrong")); err == nil {
		nc.Close()
		t.Fatal("a wrong password connected")
	}
	violations := make(chan error, 10)
	connect := func(user, pw string) *nats.Conn {
		nc, err := nats.Connect(url, nats.UserInfo(user, pw), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			violations <- err
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	cacheNC, edgeNC := connect("cache", "cache-secret-1"), connect("edge", "edge-secret-2")
	subj := proto.Subjects{Prefix: "ssekafka"}
	got, err := edgeNC.SubscribeSync(subj.Events("t"))
	if err != nil {
		t.Fatal(err)
	}
	if err := edgeNC.Flush(); err != nil {
		t.Fatal(err)
	}
	// An edge's publish of a change is refused; a cache's arrives.
	_ = edgeNC.Publish(subj.Event("t", 0), []byte("forged"))
	_ = edgeNC.Flush()
	waitViolation(t, violations, "publish")
	if err := cacheNC.Publish(subj.Event("t", 0), []byte("real")); err != nil {
		t.Fatal(err)
	}
	m, err := got.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "real" {
		t.Fatalf("got %v, %v: want the cache's change only", m, err)
	}
	// An edge cannot serve state requests.
	if _, err := edgeNC.Subscribe(subj.State("t", 0), func(*nats.Msg) {}); err == nil {
		_ = edgeNC.Flush()
		waitViolation(t, violations, "subscription")
	}
	// A cache answers an edge's state request.
	if _, err := cacheNC.Subscribe(subj.State("t", 0), func(m *nats.Msg) { _ = m.Respond([]byte("page")) }); err != nil {
		t.Fatal(err)
	}
	_ = cacheNC.Flush()
	if reply, err := edgeNC.Request(subj.State("t", 0), nil, 5*time.Second); err != nil || string(reply.Data) != "page" {
		t.Fatalf("state request: %v, %v", reply, err)
	}
	// An edge answers another edge's renewal of a stream it holds.
	otherEdge := connect("edge", "edge-secret-2")
	if _, err := otherEdge.Subscribe(subj.Renew("e2"), func(m *nats.Msg) { _ = m.Respond([]byte("204")) }); err != nil {
		t.Fatal(err)
	}
	_ = otherEdge.Flush()
	if reply, err := edgeNC.Request(subj.Renew("e2"), []byte("{}"), 5*time.Second); err != nil || string(reply.Data) != "204" {
		t.Fatalf("renewal between edges: %v, %v", reply, err)
	}
	// A cache cannot take an edge's renewals.
	if _, err := cacheNC.Subscribe(subj.Renew("e3"), func(*nats.Msg) {}); err == nil {
		_ = cacheNC.Flush()
		waitViolation(t, violations, "subscription")
	}
}

func waitViolation(t *testing.T, violations <-chan error, kind string) {
	t.Helper()
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("error %v, want a permissions violation for %s", err, kind)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no permissions violation for the %s", kind)
	}
}

// The product runs on the authenticated NATS with credentials from the
// environment and from a file, and never logs them.
func TestCacheAndEdgeOnAuthenticatedNATS(t *testing.T) {
	url := startNATSFromConf(t)
	kafka := startKafkaTopic(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pwFile := filepath.Join(t.TempDir(), "edge-password")
	if err := os.WriteFile(pwFile, []byte("edge-secret-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := fmt.Sprintf("routes: [{when: [{path: /t}], with: {topic: t}}]\nkafka: {brokers: [%s], bootstrap: [t]}\n", kafka)
	cacheCfg, err := parseConfig([]byte(common+"nats: {url: "+url+", credentials: {user: cache, password: {env: SSEKAFKA_NATS_CACHE_PASSWORD}}}\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	edgeCfg, err := parseConfig([]byte(common+"nats: {url: "+url+", credentials: {user: edge, password: {file: "+pwFile+"}}}\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	rc, err := startCache(ctx, cacheCfg, cacheCfg.Kafka.Brokers, url, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- serveEdge(ctx, edgeCfg, "127.0.0.1:0", url, log, newRegistry(), nil, func(a net.Addr) { addr <- a })
	}()
	var a net.Addr
	select {
	case a = <-addr:
	case err := <-edgeDone:
		t.Fatal(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// The ack does not mean the cache has applied v1: a stream that starts
	// before it is right to show none; open again until it is in the state.
	waitUntil(t, "a stream whose first event is v1", func() bool {
		s := openStream(t, "http://"+a.String()+"/t", "")
		defer s.cancel()
		return s.next(t).data == "v1"
	})
	cancel()
	<-edgeDone
	<-rc.done
	for _, secret := range []string{"cache-secret-1", "edge-secret-2"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a password reached the log:\n%s", logs.String())
		}
	}
}

func TestSecurityConfigRefused(t *testing.T) {
	base := "routes: [{when: [{path: /t}], with: {topic: t}}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{"nats: {credentials: {user: u, password: hunter2}}", "not inline"},
		{"nats: {credentials: {user: u, password: {file: a, env: B}}}", "give one"},
		{"nats: {credentials: {user: u}}", "user and password go together"},
		{"nats: {credentials: {user: u, password: {env: P}, token: {env: T}}}", "give one of"},
		{"nats: {url: 'nats://u:p@h:4222', credentials: {token: {env: T}}}", "credentials in the URL"},
		{"nats: {tls: {cert: c.pem}}", "nats.tls: cert and key"},
		{"kafka: {sasl: {mechanism: GSSAPI}}", "kafka.sasl.mechanism"},
		{"kafka: {sasl: {mechanism: PLAIN, user: u}}", "needs user and password"},
		{"kafka: {sasl: {mechanism: OAUTHBEARER}}", "needs token"},
	} {
		_, err := parseConfig([]byte(base+tc.yaml+"\n"), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
	if got := redactURL("nats://user:hunter2@host:4222"); strings.Contains(got, "hunter2") || strings.Contains(got, "user") {
		t.Fatalf("redacted %q", got)
	}
	if got := redactURL("nats://s3cr3t-token@host:4222"); strings.Contains(got, "s3cr3t") {
		t.Fatalf("redacted %q", got)
	}
}

// syncWriter lets several goroutines log into one builder.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and
// returns its files and the server's TLS config.
func selfSigned(t *testing.T) (certFile, keyFile string, server *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := testcert.Write(certFile, keyFile, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// A cache node reads Kafka over TLS with SASL (kfake behind a TLS listener,
// SCRAM-SHA-256 and PLAIN users), as managed Kafka requires; a wrong
// password or no TLS does not get in.
func TestCacheOnKafkaWithTLSAndSASL(t *testing.T) {
	caFile, _, serverTLS := selfSigned(t)
	kc, kafka, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{Extra: []kfake.Opt{
		kfake.TLS(serverTLS), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-256", "ssekafka", "kafka-secret-3"), kfake.Superuser("PLAIN", "plainuser", "kafka-secret-4"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	t.Setenv("SSEKAFKA_TEST_KAFKA_PW", "kafka-secret-3")
	t.Setenv("SSEKAFKA_TEST_KAFKA_PLAIN_PW", "kafka-secret-4")
	nsrv, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nsrv.Shutdown)
	cfgFor := func(sasl string) *config {
		cfg, err := parseConfig([]byte(fmt.Sprintf("kafka: {brokers: [%s], bootstrap: [t], tls: {ca: %s}, sasl: %s}\n", kafka, caFile, sasl)), false)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := cfgFor("{mechanism: SCRAM-SHA-256, user: ssekafka, password: {env: SSEKAFKA_TEST_KAFKA_PW}}")
	opts, err := cfg.Kafka.options()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devstack.CreateCompactedTopicsWith(ctx, []string{kafka}, opts, 1, "t"); err != nil {
		t.Fatal(err)
	}
	// The same options with a wrong password, or without TLS, are refused.
	t.Setenv("SSEKAFKA_TEST_WRONG_PW", "wrong")
	wrong, err := cfgFor("{mechanism: SCRAM-SHA-256, user: ssekafka, password: {env: SSEKAFKA_TEST_WRONG_PW}}").Kafka.options()
	if err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string][]kgo.Opt{"wrong password": wrong, "no TLS": opts[1:]} {
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kafka), kgo.RequestRetries(0)}, o...)...)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
		err = cl.Ping(pctx)
		pcancel()
		cl.Close()
		if err == nil {
			t.Fatalf("%s: kafka let the client in", name)
		}
	}
	for _, sasl := range []string{"{mechanism: SCRAM-SHA-256, user: ssekafka, password: {env: SSEKAFKA_TEST_KAFKA_PW}}",
		"{mechanism: PLAIN, user: plainuser, password: {env: SSEKAFKA_TEST_KAFKA_PLAIN_PW}}"} {
		cfg := cfgFor(sasl)
		opts, err := cfg.Kafka.options()
		if err != nil {
			t.Fatal(err)
		}
		prod, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("t")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte(sasl)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		prod.Close()
		rctx, rcancel := context.WithCancel(ctx)
		rc, err := startCache(rctx, cfg, cfg.Kafka.Brokers, nsrv.ClientURL(), slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !rc.node.Ready() {
			t.Fatalf("%s: the cache node did not catch up over TLS+SASL", sasl)
		}
		rcancel()
		<-rc.done
	}
}

// sse.tls: both files or none; a file that cannot be read, or a pair that
// does not load, is refused at start with the field named.
func TestSSETLSConfig(t *testing.T) {
	base := "routes: [{when: [{path: /t}], with: {topic: t}}]\n"
	for _, y := range []string{"sse:\n  tls: {cert: a.pem}\n", "sse:\n  tls: {key: a.pem}\n", "sse:\n  tls: {}\n"} {
		if _, err := parseConfig([]byte(base+y), true); err == nil || !strings.Contains(err.Error(), "line 3: sse.tls: cert and key") {
			t.Errorf("%q: error %v", y, err)
		}
	}
	certFile, keyFile, _ := selfSigned(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	for _, tc := range []struct{ cert, key, want string }{
		{missing, keyFile, "sse.tls.cert: open"},
		{certFile, missing, "sse.tls.key: open"},
		{certFile, junk, "sse.tls: "},
	} {
		cfg, err := parseConfig([]byte(base+"sse:\n  tls: {cert: "+tc.cert+", key: "+tc.key+"}\n"), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cfg.SSE.edgeTLS(nil); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("cert %s key %s: error %v, want %q", tc.cert, tc.key, err, tc.want)
		}
	}
	cfg, err := parseConfig([]byte(base+"sse:\n  tls: {cert: "+certFile+", key: "+keyFile+"}\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cfg.SSE.edgeTLS(nil)
	if err != nil || !slices.Equal(tc.NextProtos, []string{"h2", "http/1.1"}) || tc.GetCertificate == nil {
		t.Fatalf("config %+v, %v", tc, err)
	}
}
