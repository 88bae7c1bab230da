package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/gitbuild"
	"github.com/ssekafka/ssekafka/internal/poll"
)

// previous is the release before the tier protocol gained "not yet"
// parts, heads signed by their publisher and key-read floors (issues 19
// and 20): the version a rolling upgrade starts from.
const previous = "63c3e19"

// builds holds the two binaries, built once per test binary.
var builds struct {
	once     sync.Once
	dir      string
	old, cur string
	skip     string // why the previous release cannot be built here
	err      error
}

// TestMain removes the binaries built for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	os.Exit(code)
}

// binaries returns ssekafka built from the previous release and from this
// tree. Without the previous release in git history (a shallow clone) the
// test skips, or fails under CI, whose checkout must have it.
func binaries(t *testing.T) (old, cur string) {
	t.Helper()
	builds.once.Do(buildBoth)
	if builds.skip != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: CI needs the whole history (git clone without --depth, or git fetch --unshallow)", builds.skip)
		}
		t.Skip(builds.skip)
	}
	if builds.err != nil {
		t.Fatal(builds.err)
	}
	return builds.old, builds.cur
}

func buildBoth() {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		builds.err = err
		return
	}
	if err := gitbuild.Has(root, previous); err != nil {
		builds.skip = err.Error()
		return
	}
	if builds.dir, err = os.MkdirTemp("", "ssekafka-upgrade"); err != nil {
		builds.err = err
		return
	}
	var wg sync.WaitGroup
	var oldErr, curErr error
	wg.Go(func() { builds.old, oldErr = gitbuild.Build(root, builds.dir, previous) })
	wg.Go(func() { builds.cur, curErr = gitbuild.Build(root, builds.dir, "") })
	wg.Wait()
	builds.err = errors.Join(oldErr, curErr)
}

// proc is a running ssekafka process whose output is kept and searched.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startProc(t *testing.T, bin, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			if p.out.Len() < 4<<20 {
				p.out.Write(sc.Bytes())
				p.out.WriteByte('\n')
			}
			p.mu.Unlock()
		}
	}()
	go func() { _ = p.cmd.Wait(); w.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the process has printed line, or fails.
func (p *proc) waitFor(t *testing.T, line string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := poll.Wait(ctx, 20*time.Millisecond, func() bool { return strings.Contains(p.output(), line) }); err != nil {
		t.Fatalf("%s: no %q within a minute:\n%s", p.name, line, p.output())
	}
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
