package upgrade

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ssekafka/ssekafka/internal/gitbuild"
	"github.com/ssekafka/ssekafka/internal/proctest"
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
type proc = proctest.Proc

func startProc(t testing.TB, bin, name string, args ...string) *proc {
	t.Helper()
	return proctest.Start(t, bin, name, args...)
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
