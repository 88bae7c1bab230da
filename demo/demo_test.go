package demo_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/demo"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/teststack"
)

// runningEdge is an edge serving the demo page and the stream on addr.
type runningEdge struct {
	e   *edge.Edge
	ln  net.Listener
	srv *http.Server
}

func startEdge(t *testing.T, nc *nats.Conn, addr string) *runningEdge {
	t.Helper()
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/tasks"}, Topic: "tasks", EventID: `["${base64(key)}","${etag}"]`})
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{NATS: nc, Routes: []*edge.Route{route}, Retry: 300 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	deadline := time.Now().Add(10 * time.Second)
	for { // the old edge's port may take a moment to be free again
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // backoff between listen attempts
	}
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", demo.Handler("/tasks"))
	mux.Handle("GET /_ssekafka/", demo.Handler("/tasks"))
	mux.Handle("/", e)
	srv := &http.Server{Handler: mux}
	go func() { _ = e.Serve(ln, srv) }()
	return &runningEdge{e: e, ln: ln, srv: srv}
}

// kill stops the edge as a crash would: every connection dropped.
func (r *runningEdge) kill() {
	r.e.Close()
	_ = r.ln.Close()
	_ = r.srv.Close()
}

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs it")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium)")
	return ""
}

// The demo page in real headless Chromium: it shows the topic's state,
// follows updates and deletes, and after the edge is killed and started
// again it converges to the exact state with no change shown twice.
func TestDemoPageInChromium(t *testing.T) {
	browser := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tiers := teststack.Start(t, "tasks")
	kafka, connect := tiers.Kafka, tiers.Connect
	enc := connect()
	addrLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := addrLn.Addr().String()
	_ = addrLn.Close()
	ed := startEdge(t, enc, addr)
	defer func() { ed.kill() }()

	prod, err := kgo.NewClient(kgo.SeedBrokers(kafka), kgo.DefaultProduceTopic("tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	want := map[string]string{}
	produce := func(key string, value *string) {
		t.Helper()
		r := &kgo.Record{Key: []byte(key)}
		if value != nil {
			r.Value = []byte(*value)
			want[key] = *value
		} else {
			delete(want, key)
		}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	str := func(s string) *string { return &s }

	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(bctx); err != nil { // start the browser with a context that lives as long as the test
		t.Fatal(err)
	}
	var consoleMu sync.Mutex
	var console []string
	go func() {
		for m, err := range chromedp.Console(bctx) {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, m.String())
			consoleMu.Unlock()
		}
	}()
	defer func() {
		if t.Failed() {
			consoleMu.Lock()
			t.Logf("browser console:\n%s", strings.Join(console, "\n"))
			consoleMu.Unlock()
		}
	}()
	shots := t.TempDir()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sctx, scancel := context.WithTimeout(bctx, 5*time.Second)
		defer scancel()
		if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil {
			path := filepath.Join(shots, "demo-failure.png")
			if os.WriteFile(path, png, 0o644) == nil {
				t.Logf("screenshot: %s", path)
			}
		}
	})

	produce("a", str("1"))
	produce("b", str("2"))
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+addr+"/")); err != nil {
		t.Fatal(err)
	}
	shows := func(what string, wantReady bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			js, err := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify({ready: document.getElementById('ready').textContent,
				rows: [...document.querySelectorAll('#rows tr')].map((tr) => [tr.children[0].textContent, tr.children[1].textContent])})`))
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Ready string
				Rows  [][2]string
			}
			if err := json.Unmarshal([]byte(js), &got); err != nil {
				t.Fatal(err)
			}
			rows := map[string]string{}
			for _, r := range got.Rows {
				rows[r[0]] = r[1]
			}
			if (got.Ready == "yes") == wantReady && len(rows) == len(want) && len(got.Rows) == len(want) && mapsEqual(rows, want) {
				return
			}
			last = js
			time.Sleep(50 * time.Millisecond) // polling the page
		}
		t.Fatalf("%s: the page shows %s, want %v", what, last, want)
	}
	shows("initial state", true)
	produce("a", str("3"))
	produce("b", nil)
	shows("an update and a delete", true)

	ed.kill()
	produce("c", str("5"))
	produce("a", nil)
	produce("d", str("6"))
	ed = startEdge(t, enc, addr)
	shows("after the edge was killed and started again", true)

	log, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`window.ssekafkaLog`))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, change := range log {
		if seen[change] {
			t.Fatalf("change %s shown twice: %v", change, log)
		}
		seen[change] = true
	}
	if !slices.Contains(log, "c=5") || !slices.Contains(log, "d=6") {
		t.Fatalf("changes %v", log)
	}
	state, err := chromedp.Run(bctx, chromedp.Text("#state"))
	if err != nil || strings.TrimSpace(state) != "open" {
		t.Fatalf("connection state %q: %v", state, err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
