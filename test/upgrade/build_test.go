package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", previous+"^{commit}").CombinedOutput(); err != nil {
		builds.skip = fmt.Sprintf("the previous release %s is not in this checkout's git history: %v %s", previous, err, bytes.TrimSpace(out))
		return
	}
	if builds.dir, err = os.MkdirTemp("", "ssekafka-upgrade"); err != nil {
		builds.err = err
		return
	}
	src := filepath.Join(builds.dir, "src-"+previous)
	tarball := filepath.Join(builds.dir, previous+".tar")
	if err := os.Mkdir(src, 0o755); err != nil {
		builds.err = err
		return
	}
	if err := command(root, "git", "archive", "-o", tarball, previous); err != nil {
		builds.err = err
		return
	}
	if err := command(src, "tar", "-xf", tarball); err != nil {
		builds.err = err
		return
	}
	builds.old = filepath.Join(builds.dir, "ssekafka-"+previous)
	builds.cur = filepath.Join(builds.dir, "ssekafka")
	var wg sync.WaitGroup
	var oldErr, curErr error
	wg.Go(func() { oldErr = command(src, "go", "build", "-o", builds.old, "./cmd/ssekafka") })
	wg.Go(func() { curErr = command(root, "go", "build", "-o", builds.cur, "./cmd/ssekafka") })
	wg.Wait()
	if oldErr != nil {
		builds.err = fmt.Errorf("build %s: %w", previous, oldErr)
	} else if curErr != nil {
		builds.err = fmt.Errorf("build this tree: %w", curErr)
	}
}

func command(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
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
