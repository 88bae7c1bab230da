package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
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

	"github.com/ssekafka/ssekafka/internal/ssetest"
	"github.com/ssekafka/ssekafka/proto"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes the binary built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// binary builds ssekafka once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ssekafka-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ssekafka")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func kcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("kcat is not installed: .ci/run installs it")
		}
		t.Skip("kcat is not installed (apt-get install kcat)")
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process runs the binary until the test ends; its output goes to the test log.
type process struct {
	lines chan string
	cmd   *exec.Cmd

	mu      sync.Mutex
	log     strings.Builder
	logLine int // lines written so far
}

func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startWrapped(t, nil, args...)
}

// startWrapped is start with the binary run by a wrapper command (such as
// prlimit and its flags, ending in "--"), which execs it.
func startWrapped(t *testing.T, wrapper []string, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	argv := append(append(slices.Clone(wrapper), binary(t)), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{lines: make(chan string, 1024), cmd: cmd}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.logLine++
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("ssekafka %s output:\n%s", strings.Join(args, " "), p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

// logLines is how many lines the process has written.
func (p *process) logLines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logLine
}

func (p *process) waitFor(t *testing.T, substr string) {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, substr) {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %q", substr)
		}
	}
}

func produce(t *testing.T, broker string, lines string, extra ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"-b", broker, "-t", "tasks", "-P", "-K:"}, extra...)
	cmd := exec.CommandContext(ctx, kcat(t), args...)
	cmd.Stdin = strings.NewReader(lines)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat %v: %v\n%s", args, err, out)
	}
}

type sseEvent struct{ id, event, data string }

// stream reads SSE events from a plain HTTP GET: the events with data
// or a name (retry-only blocks and keep-alives skipped), read by ssetest.
type stream struct {
	events chan sseEvent // closed when the stream ends
	cancel context.CancelFunc
}

func openStream(t *testing.T, url, lastID string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	st := ssetest.Start(resp.Body, cancel)
	s := &stream{events: make(chan sseEvent), cancel: cancel}
	go func() {
		defer close(s.events)
		for ev := range st.Events() {
			if ev.Data == "" && ev.Event == "" {
				continue
			}
			select {
			case s.events <- sseEvent{id: ev.ID, event: ev.Event, data: ev.Data}:
			case <-ctx.Done():
				st.Abandon()
				return
			}
		}
	}()
	t.Cleanup(st.Close)
	return s
}

func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for an event")
	}
	return sseEvent{}
}

// untilReady returns the data of the events before ready, and ready's id.
func (s *stream) untilReady(t *testing.T) (data []string, readyID string) {
	t.Helper()
	for {
		ev := s.next(t)
		if ev.event == "ready" {
			return data, ev.id
		}
		if ev.event != "" {
			data = append(data, ev.event+":"+ev.data)
		} else {
			data = append(data, ev.data)
		}
	}
}

// checkTasksFlow is Done-when 2 of the foundation issue, against a running
// deployment: kcat produces, curl-like clients stream, resume and reset.
func checkTasksFlow(t *testing.T, httpAddr, broker string) {
	url := "http://" + httpAddr + "/tasks"
	produce(t, broker, "a:one\nb:two\n")
	s := openStream(t, url, "")
	var got []string // before or after ready, depending on when the cache consumed them
	for ready := false; len(got) < 2 || !ready; {
		switch ev := s.next(t); ev.event {
		case "":
			got = append(got, ev.data)
		case "ready":
			ready = true
		}
	}
	if strings.Join(sorted(got), ",") != "one,two" {
		t.Fatalf("state: %q", got)
	}
	produce(t, broker, "a:\n", "-Z")
	del := s.next(t)
	if del.event != "delete" || del.data != base64.URLEncoding.EncodeToString([]byte("a")) || del.id == "" {
		t.Fatalf("tombstone arrived as %+v", del)
	}
	produce(t, broker, "c:three\n")
	last := s.next(t)
	if last.data != "three" {
		t.Fatalf("live: %+v", last)
	}
	// Reconnecting with the last id: nothing older comes again.
	data, _ := openStream(t, url, last.id).untilReady(t)
	if len(data) != 0 {
		t.Fatalf("resume from the last id resent %q", data)
	}
	// From the delete's id: only what came after it.
	data, _ = openStream(t, url, del.id).untilReady(t)
	if strings.Join(data, ",") != "three" {
		t.Fatalf("resume from the delete's id: %q", data)
	}
	// A garbage id: the full state, no error page.
	data, _ = openStream(t, url, "not-an-id").untilReady(t)
	if strings.Join(sorted(data), ",") != "three,two" {
		t.Fatalf("garbage id: %q", data)
	}
	// An id of another epoch: reset, then the full state.
	p, err := proto.ParseEventID(last.id)
	if err != nil {
		t.Fatal(err)
	}
	p.Epoch ^= 0x10
	data, _ = openStream(t, url, string(proto.AppendProgress(nil, &p))).untilReady(t)
	if len(data) != 3 || !strings.HasPrefix(data[0], "reset:") || strings.Join(sorted(data[1:]), ",") != "three,two" {
		t.Fatalf("other epoch: %q", data)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestDevModeWithKcat(t *testing.T) {
	kcat(t)
	httpAddr, kafkaAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	p := start(t, "dev", "--http", httpAddr, "--kafka", kafkaAddr, "--nats", natsAddr)
	p.waitFor(t, "ssekafka dev is up")
	checkTasksFlow(t, httpAddr, kafkaAddr)
	// The demo page and the client module it loads are served at /.
	for path, want := range map[string]string{"/": `<meta name="ssekafka-stream" content="/keyed/tasks">`,
		"/_ssekafka/ssekafka.js": "export class SSEKafka", "/_ssekafka/demo.js": "new SSEKafka(stream"} {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %d %.200s", path, resp.StatusCode, body)
		}
	}
}

func TestSeparateCacheAndEdgeProcesses(t *testing.T) {
	kcat(t)
	httpAddr, kafkaAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	services := start(t, "dev", "--only", "kafka,nats", "--kafka", kafkaAddr, "--nats", natsAddr)
	services.waitFor(t, "embedded nats listening")
	natsURL := "nats://" + natsAddr
	cacheProc := start(t, "cache", "--kafka", kafkaAddr, "--nats", natsURL)
	cacheProc.waitFor(t, "cache node running")
	edgeProc := start(t, "edge", "--nats", natsURL, "--http", httpAddr)
	edgeProc.waitFor(t, "edge serving")
	checkTasksFlow(t, httpAddr, kafkaAddr)
}
