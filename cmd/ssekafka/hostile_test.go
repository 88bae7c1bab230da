package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
	"github.com/ssekafka/ssekafka/internal/poll"
	"github.com/ssekafka/ssekafka/internal/ssetest"
	"github.com/ssekafka/ssekafka/proto"
)

// Hostile input costs a log line now and then, not one per message (on
// 5f6c6aa, 100,000 garbage messages made 80,084 WARN lines), and no
// credential reaches a log line, at debug level included: not a NATS
// password in the URL, not a token in a header, a query or a renewal,
// valid, expired or forged.
func TestHostileInputLogsAreBoundedAndFreeOfSecrets(t *testing.T) {
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	// The server has no authorization: it takes the URL's user and password
	// (which a production URL would carry) without checking them.
	const urlPassword = "url-secret-3"
	natsURL := strings.Replace(ns.ClientURL(), "nats://", "nats://ssekafka:"+urlPassword+"@", 1)
	kafka := startKafkaTopic(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	yaml := zillaJWTConfig(fmt.Sprintf("kafka: {brokers: [%s], bootstrap: [t]}\nnats: {url: %q}\n", kafka, natsURL))
	cacheCfg, err := parseConfig([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	edgeCfg, err := parseConfig([]byte(yaml), true)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncWriter{w: &strings.Builder{}}
	log := newLoggerTo(logs, slog.LevelDebug)
	cacheReg, edgeReg := prometheus.NewRegistry(), newRegistry()
	rc, err := startCache(ctx, cacheCfg, cacheCfg.Kafka.Brokers, natsURL, log, cacheReg)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- serveEdge(ctx, edgeCfg, "127.0.0.1:0", natsURL, log, edgeReg, nil, func(a net.Addr) { addr <- a })
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a.String()
	case err := <-edgeDone:
		t.Fatal(err)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("alice"), Value: []byte("v1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	valid := zillaToken(t, "alice", time.Now().Add(time.Hour))
	renewal := zillaToken(t, "alice", time.Now().Add(2*time.Hour))
	expired := zillaToken(t, "alice", time.Now().Add(-time.Hour))
	forged := valid[:strings.LastIndexByte(valid, '.')+1] + "Zm9yZ2VkLXNpZ25hdHVyZS1vZi10aGUtdGVzdA"
	tokens := map[string]string{"valid": valid, "renewal": renewal, "expired": expired, "forged": forged}

	// A valid token streams; the others are refused, in a header or a query.
	waitUntil(t, "the valid token's stream to show v1", func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/tasks", nil)
		req.Header.Set("Authorization", "Bearer "+valid)
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		resp, err := http.DefaultClient.Do(req.WithContext(sctx))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		evs, _ := ssetest.NewReader(resp.Body).Until(func(ev ssetest.Event) bool { return ev.Data == "v1" || ssetest.IsReady(ev) })
		return slices.Contains(ssetest.Data(evs), "v1")
	})
	for _, tc := range []struct {
		how, token string
		want       int
	}{{"header", expired, 401}, {"query", expired, 401}, {"header", forged, 401}, {"query", forged, 401}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/tasks", nil)
		if tc.how == "header" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		} else {
			req.URL.RawQuery = "access_token=" + tc.token
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s token in the %s: %s, want %d", tc.token[len(tc.token)-6:], tc.how, resp.Status, tc.want)
		}
	}
	// A renewal of a stream no edge holds: refused, its token unlogged.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/tasks", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/x-challenge-response")
	req.Header.Set("X-Ssekafka-Stream", "nosuchedge-7")
	req.Header.Set("Authorization", "Bearer "+renewal)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	// 100,000 garbage messages on the subjects the edge and the cache read.
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subjects := proto.Subjects{Prefix: cacheCfg.NATS.Prefix}
	rng := rand.New(rand.NewPCG(1, 2))
	var changes, requests float64
	for i := range 100_000 {
		junk := make([]byte, 1+rng.IntN(64))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		var err error
		switch i % 3 {
		case 0:
			err, changes = nc.Publish(subjects.Event("t", 0), junk), changes+1
		case 1:
			err, requests = nc.PublishRequest(subjects.State("t", 0), nats.NewInbox(), junk), requests+1
		case 2:
			err, requests = nc.PublishRequest(subjects.Meta("t"), nats.NewInbox(), junk), requests+1
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// A few random messages may decode (they are then changes of a
	// plausible shape), and a subscriber may drop some as a slow consumer.
	err = poll.Wait(ctx, 20*time.Millisecond, func() bool {
		return counterSum(edgeReg, "ssekafka_edge_bad_changes_total") >= 0.95*changes &&
			counterSum(cacheReg, "ssekafka_cache_bad_requests_total") >= requests
	})
	if err != nil {
		t.Fatalf("the garbage was not all counted: edge bad changes %v of %v, cache bad requests %v of %v",
			counterSum(edgeReg, "ssekafka_edge_bad_changes_total"), changes, counterSum(cacheReg, "ssekafka_cache_bad_requests_total"), requests)
	}

	cancel()
	<-edgeDone
	<-rc.done
	out := logs.String()
	warns := strings.Count(out, "level=WARN") + strings.Count(out, "level=ERROR")
	if warns > 500 {
		t.Errorf("100,000 garbage messages made %d WARN/ERROR lines; want a few per message kind per second", warns)
	}
	t.Logf("%d WARN/ERROR lines, %d lines in all", warns, strings.Count(out, "\n"))
	secrets := map[string]string{"the NATS URL's password": urlPassword}
	for name, tok := range tokens {
		secrets["the "+name+" token's signature"] = tok[strings.LastIndexByte(tok, '.')+1:]
		secrets["the "+name+" token's claims"] = strings.Split(tok, ".")[1]
	}
	for name, s := range secrets {
		if strings.Contains(out, s) {
			i := strings.Index(out, s)
			line := out[strings.LastIndexByte(out[:i], '\n')+1:]
			line, _, _ = strings.Cut(line, "\n")
			t.Errorf("%s reached the log: %s", name, line)
		}
	}
}

// counterSum is the sum of the named counter's series in reg.
func counterSum(reg prometheus.Gatherer, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// startKafkaTopic starts kfake on 127.0.0.1 with one compacted topic of one
// partition, stopped at the test's end, and returns its address.
func startKafkaTopic(t *testing.T, topic string) string {
	t.Helper()
	kc, kafka, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := devstack.CreateCompactedTopics(ctx, []string{kafka}, 1, topic); err != nil {
		t.Fatal(err)
	}
	return kafka
}
