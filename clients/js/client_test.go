// Package jsclient_test runs the browser client's node tests (node's test
// runner, the npm eventsource package) against the real product: kfake,
// nats-server, a cache node and an edge, behind a reverse proxy that the
// tests can make answer 502 or 503, as nginx does when its upstream is
// down. A small control server lets the node tests produce records and
// switch the proxy.
package jsclient_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/teststack"
)

func TestBrowserClient(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "eventsource")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("clients/js/node_modules missing: .ci/run runs npm ci there")
		}
		t.Skip("run `npm ci` in clients/js first")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tiers := teststack.Start(t, "tasks")
	kafka, connect := tiers.Kafka, tiers.Connect

	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/tasks"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`})
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{NATS: connect(), Routes: []*edge.Route{route}, Retry: 200 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	edgeSrv := &http.Server{Handler: e}
	go func() { _ = e.Serve(ln, edgeSrv) }()
	defer edgeSrv.Close()

	px := newProxy(t, "http://"+ln.Addr().String())
	pxSrv := &http.Server{Handler: px}
	pxLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = pxSrv.Serve(pxLn) }()
	defer pxSrv.Close()

	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctl := newControl(t, prod, px)
	ctlSrv := &http.Server{Handler: ctl}
	ctlLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ctlSrv.Serve(ctlLn) }()
	defer ctlSrv.Close()

	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "test/")
	cmd.Env = append(os.Environ(), "SSEKAFKA_URL=http://"+pxLn.Addr().String()+"/tasks", "SSEKAFKA_CONTROL=http://"+ctlLn.Addr().String())
	out, err := cmd.CombinedOutput()
	t.Logf("node --test:\n%s", out)
	if err != nil {
		t.Fatalf("node tests: %v", err)
	}
}

// proxy is a reverse proxy in front of the edge: "ok" passes streams
// through unbuffered; "502" and "503" answer as a proxy whose upstream is
// down; cut ends every stream passing through.
type proxy struct {
	rp   *httputil.ReverseProxy
	mode atomic.Value // string
	mu   sync.Mutex
	live map[int]context.CancelFunc
	next int
}

func newProxy(t *testing.T, upstream string) *proxy {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{rp: httputil.NewSingleHostReverseProxy(u), live: map[int]context.CancelFunc{}}
	p.rp.FlushInterval = -1
	p.rp.ErrorLog = log.New(io.Discard, "", 0)
	p.mode.Store("ok")
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch mode := p.mode.Load().(string); mode {
	case "502", "503":
		code, _ := strconv.Atoi(mode)
		http.Error(w, "upstream unavailable", code)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	p.mu.Lock()
	id := p.next
	p.next++
	p.live[id] = cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.live, id)
		p.mu.Unlock()
		cancel()
	}()
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cancel := range p.live {
		cancel()
	}
}

// control is what the node tests drive: POST /produce?key=K[&value=V] (no
// value: a tombstone), POST /proxy?mode=ok|502|503, POST /cut, and GET
// /state, the topic's state as produced.
type control struct {
	t     *testing.T
	prod  *kgo.Client
	px    *proxy
	mu    sync.Mutex
	state map[string]string
}

func newControl(t *testing.T, prod *kgo.Client, px *proxy) *control {
	return &control{t: t, prod: prod, px: px, state: map[string]string{}}
}

func (c *control) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/produce":
		rec := &kgo.Record{Key: []byte(q.Get("key"))}
		v, has := q["value"]
		if has {
			rec.Value = []byte(v[0])
		}
		if err := c.prod.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		c.mu.Lock()
		if has {
			c.state[q.Get("key")] = v[0]
		} else {
			delete(c.state, q.Get("key"))
		}
		c.mu.Unlock()
	case "/proxy":
		c.px.mode.Store(q.Get("mode"))
	case "/cut":
		c.px.cut()
	case "/state":
		c.mu.Lock()
		defer c.mu.Unlock()
		_ = json.NewEncoder(w).Encode(c.state)
		return
	default:
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
