package edge_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/teststack"
)

// BenchmarkNewStream is the edge's new-stream rate, one stream after
// another, each read to event:ready (100 keys of state) and closed:
// "open" on an unguarded route, "guarded" with an RS256 token in the
// authorization header verified against a JWKS, in one run.
func BenchmarkNewStream(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tiers := teststack.Start(b, "tasks")
	prod := tiers.Producer(kgo.DefaultProduceTopic("tasks"))
	for i := range 100 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte("value")}).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	var routes []*edge.Route
	for _, rc := range guardedRoutes() {
		r, err := edge.CompileRoute(rc)
		if err != nil {
			b.Fatal(err)
		}
		routes = append(routes, r)
	}
	j := newJWKS(b)
	cfg := edge.Config{NATS: tiers.Connect(), Routes: routes}
	guardConfig(b, j, 0, nil)(&cfg)
	e, err := edge.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = e.Serve(ln, srv) }()
	defer srv.Close()
	defer ln.Close()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	stream := func(path string, h http.Header) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %s", path, resp.Status)
		}
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(line, "event:ready") {
				return
			}
		}
	}
	tok := token(b, "k1", "alice", time.Now().Add(time.Hour), "read")
	for _, bc := range []struct {
		name, path string
		h          http.Header
	}{{"open", "/open", http.Header{}}, {"guarded", "/tasks", bearer(tok)}} {
		b.Run(bc.name, func(b *testing.B) {
			stream(bc.path, bc.h) // the topic's feed starts outside the loop
			for b.Loop() {
				stream(bc.path, bc.h)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "streams/s")
		})
	}
}
