package edge_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/testcert"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/tlsfiles"
)

// writeCert writes a self-signed certificate for 127.0.0.1 (its own CA)
// and its key to certFile and keyFile, and returns it.
func writeCert(t *testing.T, certFile, keyFile, name string) *x509.Certificate {
	t.Helper()
	cert, err := testcert.Write(certFile, keyFile, name)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// tlsStack is a stack whose edge serves sse.tls's configuration from files
// in a temporary directory, and a client trusting its certificate that
// speaks HTTP/2 (h2) or only HTTP/1.1.
func tlsStack(t *testing.T, h2 bool, tweak ...func(*edge.Config)) (s *stack, certFile, keyFile string) {
	t.Helper()
	return tlsStackWith(t, h2, stackOptions{}, tweak...)
}

// tlsStackWith is tlsStack with more of the stack's options (its tls,
// client and edgeCfg are tlsStack's).
func tlsStackWith(t *testing.T, h2 bool, o stackOptions, tweak ...func(*edge.Config)) (s *stack, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := writeCert(t, certFile, keyFile, "first")
	r, err := tlsfiles.NewReloader(certFile, keyFile, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	o.tls, o.client = r.ServerConfig(), &http.Client{Transport: tr}
	o.edgeCfg = func(c *edge.Config) {
		c.SetupConcurrency = 1 // a stream that kept its worker would stall the next
		c.KeepAlive = 200 * time.Millisecond
		for _, f := range tweak {
			f(c)
		}
	}
	s = newStack(t, o)
	return s, certFile, keyFile
}

// A stream over TLS gets its state, ready and a live change, over
// HTTP/1.1 (the edge's own path, on the TLS connection) and over HTTP/2
// (net/http's, from the *tls.Conn the edge hands over), and is released
// as soon as its client goes.
func TestTLSStream(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"http1.1", false, 1}, {"h2", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, _ := tlsStack(t, tc.h2)
			s.produce("tasks", rec(0, "a", "1"))
			c := s.connect("/tasks", nil)
			if c.resp.ProtoMajor != tc.proto {
				t.Fatalf("response over %s, want HTTP/%d", c.resp.Proto, tc.proto)
			}
			if c.resp.TLS == nil {
				t.Fatal("response not over TLS")
			}
			evs := c.untilReady()
			if len(evs) != 3 || evs[1].Data != "1" { // retry, the state, ready
				t.Fatalf("state part %+v", evs)
			}
			s.produce("tasks", rec(1, "b", "live"))
			if ev := c.mustNext(); ev.Data != "live" {
				t.Fatalf("live change %+v", ev)
			}
			// With one setup worker, more streams still start: a live one
			// does not keep it.
			more := []*sseClient{c}
			for i := range 2 {
				more = append(more, s.connect("/tasks", nil))
				if evs := more[i+1].untilReady(); len(evs) != 4 { // retry, a, b, ready
					t.Fatalf("stream %d: state part %+v", i+2, evs)
				}
			}
			// An idle stream gets keep-alive comments, flushed.
			deadline := time.After(10 * time.Second)
			for comment := false; !comment; {
				select {
				case ev, ok := <-c.events:
					if !ok {
						t.Fatal("stream ended")
					}
					comment = ev.Comment && !ev.HasData
				case <-deadline:
					t.Fatal("no keep-alive")
				}
			}
			// Over HTTP/2 the stream's reset ends its handler's context; over
			// HTTP/1.1 the hang-up watch sees the TCP connection close
			// (before it watched the TLS connection's socket, the stream was
			// kept until a keep-alive write failed: 15s).
			for _, c := range more {
				c.close()
			}
			s.waitNoClients()
		})
	}
}

// Ten streams share one HTTP/2 connection, and each gets its state and
// ready; their setups count towards the release of memory after a burst
// (before they did not: an HTTP/2 burst's transient memory stayed resident).
func TestTLSHTTP2Multiplexes(t *testing.T) {
	s, _, _ := tlsStack(t, true, func(c *edge.Config) { c.ReleaseAfterBurst = 11 })
	s.produce("tasks", rec(0, "a", "1"))
	first := s.connect("/tasks", nil) // the connection the others share
	first.untilReady()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			c, status := s.open("/tasks", nil)
			if status != http.StatusOK {
				t.Errorf("stream %d: status %d", i, status)
				return
			}
			if c.resp.ProtoMajor != 2 {
				t.Errorf("stream %d over %s", i, c.resp.Proto)
			}
			for {
				ev, err := c.next(10 * time.Second)
				if err != nil {
					t.Errorf("stream %d: %v", i, err)
					return
				}
				if ev.Event == "ready" {
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.accepted.Load(); n != 1 {
		t.Fatalf("%d connections for 11 HTTP/2 streams, want 1", n)
	}
	eventually(t, 10*time.Second, "memory released after the burst", func() bool {
		return s.counter(s.edgeReg, "ssekafka_edge_memory_releases_total") >= 1
	})
}

// Certificate files replaced while the edge runs: a new connection gets
// the new certificate, without a restart.
func TestTLSCertificateReload(t *testing.T) {
	s, certFile, keyFile := tlsStack(t, false)
	addr := strings.TrimPrefix(s.url, "https://")
	served := func() string {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the name is checked below, not the chain
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("served %q", got)
	}
	// Written to other files and renamed into place, as a renewal does.
	dir := t.TempDir()
	newCert, newKey := filepath.Join(dir, "c"), filepath.Join(dir, "k")
	writeCert(t, newCert, newKey, "second")
	later := time.Now().Add(time.Minute) // a distinct mtime however coarse the clock
	for _, f := range []string{newCert, newKey} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(newKey, keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newCert, certFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "new certificate served", func() bool { return served() == "second" })
}

// A plain HTTP request to the TLS port gets a 400 that says why.
func TestTLSPlainRequestAnswered(t *testing.T) {
	s, _, _ := tlsStack(t, false)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET /tasks HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(got, []byte("HTTP/1.0 400 ")) || !bytes.Contains(got, []byte("HTTPS server")) {
		t.Fatalf("answer %q", got)
	}
}
