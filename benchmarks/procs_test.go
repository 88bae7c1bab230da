//go:build linux

package benchmarks

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ssekafka/ssekafka/internal/gitbuild"
	"github.com/ssekafka/ssekafka/internal/proctest"
)

// buildSSEKafka builds cmd/ssekafka into dir: from this tree when ref is
// empty, else from that git commit (see gitbuild.Build), so that a
// scenario measures a baseline and the change in one run.
func buildSSEKafka(tb testing.TB, dir, ref string) string {
	tb.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		tb.Fatal(err)
	}
	bin, err := gitbuild.Build(root, dir, ref)
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}

func run(tb testing.TB, dir string, name string, args ...string) {
	tb.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// proc is a running ssekafka process whose output is kept and searched.
type proc = proctest.Proc

func startProc(tb testing.TB, bin, name string, args ...string) *proc {
	tb.Helper()
	return proctest.Start(tb, bin, name, args...)
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// procCluster is embedded Kafka and NATS (one `ssekafka dev --only
// kafka,nats` process), one cache node and some edges, each its own
// process, as they are deployed.
type procCluster struct {
	Kafka, NATSURL, CacheHTTP string
	Edges                     []*proc
	EdgeURLs                  []string
	cache                     *proc
}

// startProcCluster starts the cluster from bin with config (YAML) and
// edges edge processes, and waits until each serves.
func startProcCluster(tb testing.TB, bin, config string, edges int) *procCluster {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ssekafka.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		tb.Fatal(err)
	}
	kafka, natsAddr := freeAddr(tb), freeAddr(tb)
	c := &procCluster{Kafka: kafka, NATSURL: "nats://" + natsAddr, CacheHTTP: freeAddr(tb)}
	svc := startProc(tb, bin, "kafka+nats", "dev", "--config", path, "--only", "kafka,nats", "--kafka", kafka, "--nats", natsAddr)
	svc.WaitFor(tb, "embedded nats listening")
	c.cache = startProc(tb, bin, "cache", "cache", "--config", path, "--kafka", kafka, "--nats", c.NATSURL, "--http", c.CacheHTTP)
	c.cache.WaitFor(tb, "cache node running")
	for i := range edges {
		addr := freeAddr(tb)
		e := startProc(tb, bin, fmt.Sprintf("edge %d", i), "edge", "--config", path, "--nats", c.NATSURL, "--http", addr)
		e.WaitFor(tb, "edge serving")
		c.Edges = append(c.Edges, e)
		c.EdgeURLs = append(c.EdgeURLs, "http://"+addr)
	}
	return c
}

// cacheCounter reads one counter from the cache node's /metrics.
func (c *procCluster) cacheCounter(tb testing.TB, name string) float64 {
	tb.Helper()
	resp, err := http.Get("http://" + c.CacheHTTP + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				tb.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("no %s in the cache's metrics", name)
	return 0
}
