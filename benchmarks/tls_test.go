//go:build linux

package benchmarks

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/testcert"
)

var (
	tlsStreams = flag.Int("tls-streams", 1000, "idle streams per edge in BenchmarkIdleStreamMemoryTLS")
	tlsSettle  = flag.Duration("tls-settle", 10*time.Second, "wait after the streams are ready before RSS is read")
)

// BenchmarkIdleStreamMemoryTLS measures, in one run, the RSS an edge
// process adds per idle stream over plain HTTP/1.1, TLS with HTTP/1.1 and
// HTTP/2 (sse.tls): three edges of one cluster, -tls-streams streams each
// from this process, read to event:ready, then -tls-settle.
func BenchmarkIdleStreamMemoryTLS(b *testing.B) {
	dir := b.TempDir()
	bin := buildSSEKafka(b, dir, "")
	c := startProcCluster(b, bin, stormConfig, 1)
	certFile, keyFile, pool := benchCert(b, dir)
	tlsPath := filepath.Join(dir, "tls.yaml")
	if err := os.WriteFile(tlsPath, []byte(strings.Replace(stormConfig, "sse:\n", "sse:\n  tls: {cert: "+certFile+", key: "+keyFile+"}\n", 1)), 0o644); err != nil {
		b.Fatal(err)
	}
	type edgeRun struct {
		name string
		pid  int
		url  string
		tr   *http.Transport
		prof string // the edge's --pprof address, if any
	}
	runs := []edgeRun{{"plain HTTP/1.1", c.Edges[0].Pid(), c.EdgeURLs[0], &http.Transport{}, ""}}
	for _, h2 := range []bool{false, true} {
		addr, prof := freeAddr(b), freeAddr(b)
		e := startProc(b, bin, fmt.Sprintf("tls edge h2=%v", h2), "edge", "--config", tlsPath, "--nats", c.NATSURL, "--http", addr, "--pprof", prof)
		e.WaitFor(b, "edge serving")
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
		name := "TLS HTTP/2"
		if !h2 {
			tr.TLSClientConfig.NextProtos, name = []string{"http/1.1"}, "TLS HTTP/1.1"
		}
		runs = append(runs, edgeRun{name, e.Pid(), "https://" + addr, tr, prof})
	}
	for range b.N {
		for _, r := range runs {
			before := rssOf(r.pid)
			ctx, cancel := context.WithCancel(context.Background())
			var ready, conns atomic.Int64
			client := &http.Client{Transport: r.tr}
			for range *tlsStreams {
				go func() {
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/t", nil)
					resp, err := client.Do(req)
					if err != nil {
						return
					}
					defer resp.Body.Close()
					br := bufio.NewReader(resp.Body)
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if line == "event:ready\n" {
							ready.Add(1)
						}
					}
				}()
			}
			waitUntil(b, 2*time.Minute, r.name+": every stream ready", func() bool { return ready.Load() == int64(*tlsStreams) })
			time.Sleep(*tlsSettle) // a measurement: the runtime settles, as sseload -settle
			after := rssOf(r.pid)
			conns.Store(int64(tcpConns(r.pid)))
			per := float64(after-before) / float64(*tlsStreams)
			fmt.Printf("%s: %d streams, %d sockets in the edge, edge RSS %.1f → %.1f MiB, %.0f B per stream\n",
				r.name, *tlsStreams, conns.Load(), float64(before)/(1<<20), float64(after)/(1<<20), per)
			if r.prof != "" {
				fmt.Printf("  %s\n", memStats(b, r.prof))
			}
			b.ReportMetric(per, strings.NewReplacer(" ", "-", "/", "").Replace(r.name)+"-B/stream")
			cancel()
			r.tr.CloseIdleConnections()
		}
	}
}

// tcpConns counts the process's sockets (its listener and NATS included).
func tcpConns(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

func benchCert(b *testing.B, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	cert, err := testcert.Write(certFile, keyFile, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// memStats reads the heap and stack figures from an edge's heap profile.
func memStats(b *testing.B, addr string) string {
	resp, err := http.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, k := range []string{"# HeapInuse = ", "# HeapIdle = ", "# HeapReleased = ", "# Stack = ", "# Sys = "} {
			if v, ok := strings.CutPrefix(sc.Text(), k); ok {
				out = append(out, strings.TrimPrefix(k, "# ")+v)
			}
		}
	}
	return strings.Join(out, ", ")
}
