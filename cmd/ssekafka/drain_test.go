package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// edgeWithAdmin starts NATS, Kafka, a cache and an edge with an admin
// listener and a 300 ms drain window; it returns the edge process and its
// public and admin addresses.
func edgeWithAdmin(t *testing.T) (*process, string, string) {
	t.Helper()
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	kafkaAddr, natsURL := devServices(t)
	config := fixture(t, "tasks-drain")
	cacheProc := start(t, "cache", "--config", config, "--kafka", kafkaAddr, "--nats", natsURL)
	cacheProc.waitFor(t, "cache node running")
	edgeProc := start(t, "edge", "--config", config, "--nats", natsURL, "--http", httpAddr, "--admin", adminAddr)
	edgeProc.waitFor(t, "edge serving")
	return edgeProc, httpAddr, adminAddr
}

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// streamTail opens /tasks, reads up to ready, and returns a channel that
// gets the rest of the stream once it ends.
func streamTail(t *testing.T, httpAddr string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/tasks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before ready: %v", err)
		}
		if line == "event:ready\n" {
			break
		}
	}
	tail := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		b, _ := io.ReadAll(br)
		tail <- string(b)
	}()
	return tail
}

// drainedStream checks a stream ended with a final retry after its ready block.
func drainedStream(t *testing.T, tail <-chan string) {
	t.Helper()
	select {
	case rest := <-tail:
		rest = strings.ReplaceAll(rest, ":\n\n", "") // keep-alives
		if !strings.HasPrefix(rest, "data:{}\n\nretry:") || !strings.HasSuffix(rest, "\n\n") {
			t.Fatalf("stream ended with %q, want the end of ready, then a final retry", rest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end")
	}
}

func exited(t *testing.T, p *process) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("edge exited with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("edge did not exit after its drain")
	}
}

// POST /_ssekafka/drain on the admin listener (never on the public one)
// ends the streams with a final retry, refuses new ones with 200, reports
// not ready, and the process exits once the streams are gone.
func TestEdgeDrainsOnAdminPOST(t *testing.T) {
	edgeProc, httpAddr, adminAddr := edgeWithAdmin(t)
	waitUntil(t, "ready", func() bool {
		code, _ := get(t, http.MethodGet, "http://"+adminAddr+"/_ssekafka/ready")
		return code == 200
	})
	for _, p := range []string{"/health", "/_ssekafka/health", "/metrics", "/_ssekafka/metrics"} {
		if code, _ := get(t, http.MethodGet, "http://"+adminAddr+p); code != 200 {
			t.Fatalf("admin %s: %d", p, code)
		}
	}
	if code, _ := get(t, http.MethodGet, "http://"+httpAddr+"/_ssekafka/ready"); code != 200 {
		t.Fatalf("public ready: %d", code)
	}
	tail := streamTail(t, httpAddr)
	if code, _ := get(t, http.MethodPost, "http://"+httpAddr+"/_ssekafka/drain"); code != http.StatusNotFound {
		t.Fatalf("POST drain on the public listener: %d, want 404", code)
	}
	if code, _ := get(t, http.MethodGet, "http://"+adminAddr+"/_ssekafka/drain"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET drain: %d, want 405", code)
	}
	// A long window: the process stays up while the refusal is checked.
	if code, body := adminRequest(t, http.MethodPost, "http://"+adminAddr+"/_ssekafka/drain?window=2s", http.Header{"X-Ssekafka-Admin": {"1"}}); code != http.StatusAccepted {
		t.Fatalf("POST drain: %d %q", code, body)
	}
	drainedStream(t, tail)
	if code, body := get(t, http.MethodGet, "http://"+adminAddr+"/_ssekafka/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("ready while draining: %d %q", code, body)
	}
	code, body := get(t, http.MethodGet, "http://"+httpAddr+"/tasks")
	if code != 200 || !strings.HasPrefix(body, ": edge draining\nretry:") {
		t.Fatalf("a new stream while draining: %d %q", code, body)
	}
	exited(t, edgeProc)
}

// SIGTERM drains the same way over sse.drainWindow, then exits.
func TestEdgeDrainsOnSIGTERM(t *testing.T) {
	edgeProc, httpAddr, _ := edgeWithAdmin(t)
	tail := streamTail(t, httpAddr)
	if err := edgeProc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	drainedStream(t, tail)
	exited(t, edgeProc)
}

// adminRequest sends method to url with headers h and returns the status and body.
func adminRequest(t *testing.T, method, url string, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("x"))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A page in an operator's browser cannot drain an edge: the admin
// listener refuses cross-site requests (Origin, Sec-Fetch-Site) and POSTs
// a page could send without a CORS preflight (no Authorization, no
// X-Ssekafka-Admin), and caps ?window=. The edge stays up and ready.
func TestAdminListenerRefusesCrossSiteAndSimpleRequests(t *testing.T) {
	_, _, adminAddr := edgeWithAdmin(t)
	drain := "http://" + adminAddr + "/_ssekafka/drain"
	for _, tc := range []struct {
		name   string
		url    string
		header http.Header
		want   int
	}{
		{"cross-site text/plain", drain, http.Header{"Content-Type": {"text/plain"}, "Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"Sec-Fetch-Site cross-site alone", drain, http.Header{"Sec-Fetch-Site": {"cross-site"}, "X-Ssekafka-Admin": {"1"}}, http.StatusForbidden},
		{"same-site page", drain, http.Header{"Sec-Fetch-Site": {"same-site"}, "X-Ssekafka-Admin": {"1"}}, http.StatusForbidden},
		{"another origin", drain, http.Header{"Origin": {"http://localhost:1"}, "X-Ssekafka-Admin": {"1"}}, http.StatusForbidden},
		{"opaque origin", drain, http.Header{"Origin": {"null"}, "X-Ssekafka-Admin": {"1"}}, http.StatusForbidden},
		{"simple form POST", drain, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, http.StatusForbidden},
		{"metrics read cross-site", "http://" + adminAddr + "/metrics", http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"window past the cap", drain + "?window=1000h", http.Header{"X-Ssekafka-Admin": {"1"}}, http.StatusBadRequest},
	} {
		method := http.MethodPost
		if strings.HasSuffix(tc.url, "/metrics") {
			method = http.MethodGet
		}
		if code, body := adminRequest(t, method, tc.url, tc.header); code != tc.want {
			t.Fatalf("%s: %d %q, want %d", tc.name, code, body, tc.want)
		}
	}
	if code, body := get(t, http.MethodGet, "http://"+adminAddr+"/_ssekafka/ready"); code != http.StatusOK {
		t.Fatalf("ready after the refused drains: %d %q", code, body)
	}
	if code, _ := get(t, http.MethodGet, "http://"+adminAddr+"/metrics"); code != http.StatusOK {
		t.Fatalf("a scrape (no Origin, no Sec-Fetch-Site): %d", code)
	}
}
