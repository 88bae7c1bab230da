package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// zillaKeystorePassword is the test keystore's password, given to the
// fixture as ${{env.KEYSTORE_PASSWORD}}.
const zillaKeystorePassword = "generated-for-the-test"

// zillaExample copies a fixture and its www/ into a directory of its own,
// with a PKCS12 keystore for localhost in tls/localhost.p12 (the password
// in $KEYSTORE_PASSWORD); it returns the config's path and a PEM file that
// trusts the key.
func zillaExample(t *testing.T, fixture string) (config, caFile string) {
	t.Helper()
	dir := t.TempDir()
	config = filepath.Join(dir, "zilla.yaml")
	if err := os.WriteFile(config, []byte(readFile(t, filepath.Join("testdata/zilla", fixture))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte(readFile(t, "testdata/zilla/www/index.html")), 0o644); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p12, err := pkcs12.Modern.Encode(key, cert, nil, zillaKeystorePassword)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls", "localhost.p12"), p12, 0o600); err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KEYSTORE_PASSWORD", zillaKeystorePassword)
	return config, caFile
}

// zillaCheckData is what Zilla's examples check: the data: lines of
// `curl -N --http2 -H Accept:text/event-stream URL` within 3 seconds (the
// curl binary if installed, else Go's client making the same request).
func zillaCheckData(t *testing.T, url, caFile, addr string) string {
	t.Helper()
	var out []byte
	if curl, err := exec.LookPath("curl"); err == nil {
		args := []string{"-sS", "-N", "--http2", "--max-time", "3", "-H", "Accept:text/event-stream"}
		if strings.HasPrefix(url, "https:") {
			_, port, _ := net.SplitHostPort(addr)
			args = append(args, "--cacert", caFile, "--resolve", "localhost:"+port+":127.0.0.1")
		}
		out, _ = exec.Command(curl, append(args, url)...).Output() // ends by --max-time
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		if resp, err := zillaClient(t, caFile, addr).Do(req); err == nil {
			out, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
	}
	var data []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			data = append(data, sc.Text())
		}
	}
	return strings.Join(data, "\n")
}

// zillaClient is an HTTP client that trusts caFile, dialling addr for localhost.
func zillaClient(t *testing.T, caFile, addr string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(readFile(t, caFile)))
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

// Each Zilla example's shape runs unchanged with `ssekafka dev --config` and
// passes the example's own check: one record produced with kcat, and the
// data: lines of curl --http2 are exactly that record's; over TLS (a PKCS12
// vault, h2) with the token in ?access_token= for the JWT shape. The
// filesystem binding's page is served.
func TestZillaExamplesPassTheirChecks(t *testing.T) {
	kcatPath := kcat(t)
	const input = `{"id":1,"name":"Hello World!"}`
	const expected = `data:{"id":1,"name":"Hello World!"}`
	for _, ex := range []struct {
		name, fixture, path string
		kcatArgs            []string
		topic               string // produced to; "" is events
		topicTemplate       string // the sse-kafka route's with.topic instead of ${params.topic}
	}{
		{"fanout", "sse.kafka.fanout.yaml", "/events", nil, "", ""},
		// The http route made /*: a topic the path names, not bootstrapped,
		// is served as Zilla serves it.
		{"topic from the path", "sse.kafka.fanout.compose.yaml", "/ticks/1/abc", []string{"-H", "tag=abc"}, "ticks", ""},
		{"compose fan-out", "sse.kafka.fanout.compose.yaml", "/events/1/abc", []string{"-H", "tag=abc"}, "", ""},
		{"jwt over tls", "sse.kafka.fanout.jwt.tls.yaml", "/events?access_token=", nil, "", ""},
		// The topic named by the token (alice's), not bootstrapped: served
		// as Zilla serves it.
		{"topic from the token", "sse.kafka.fanout.jwt.tls.yaml", "/events?access_token=", nil, "alice-topic", "${guarded['jwt0'].identity}-topic"},
	} {
		t.Run(ex.name, func(t *testing.T) {
			httpAddr, kafkaAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
			setZillaEnv(t, kafkaAddr)
			config, caFile := zillaExample(t, ex.fixture)
			if ex.topic != "" {
				allPaths := strings.Replace(readFile(t, config), ":path: /events/*", ":path: /*", 1)
				if ex.topicTemplate != "" {
					allPaths = strings.Replace(allPaths, "topic: ${params.topic}", "topic: "+ex.topicTemplate, 1)
				}
				if err := os.WriteFile(config, []byte(allPaths), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p := start(t, "dev", "--config", config, "--http", httpAddr, "--kafka", kafkaAddr, "--nats", natsAddr)
			p.waitFor(t, "ssekafka dev is up")
			_, port, _ := net.SplitHostPort(httpAddr)
			base := "http://" + httpAddr
			if strings.Contains(ex.fixture, "tls") {
				base = "https://localhost:" + port
			}
			url := base + ex.path
			if strings.HasSuffix(url, "access_token=") {
				url += zillaToken(t, "alice", time.Now().Add(time.Hour))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topic := cmp.Or(ex.topic, "events")
			args := append([]string{"-P", "-b", kafkaAddr, "-t", topic, "-k", "1"}, ex.kcatArgs...)
			cmd := exec.CommandContext(ctx, kcatPath, args...)
			cmd.Stdin = strings.NewReader(input + "\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("kcat %v: %v\n%s", args, err, out)
			}
			var got string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the check's last data: lines: %q, want %q", got, expected)
				}
			})
			waitUntil(t, "the example's check", func() bool {
				got = zillaCheckData(t, url, caFile, httpAddr)
				return got == expected
			})
			if ex.topic != "" {
				return // every path is a stream here
			}
			resp, err := zillaClient(t, caFile, httpAddr).Get(base + "/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "ssekafka zilla fixture") {
				t.Fatalf("GET /: %s %q", resp.Status, page)
			}
			if strings.HasPrefix(base, "https:") && resp.ProtoMajor != 2 {
				t.Fatalf("GET / over TLS: %s, want HTTP/2", resp.Proto)
			}
		})
	}
}

// The http binding's :path patterns (Zilla's *) send the paths they match
// to the streams, whose sse-kafka route takes the topic, key and header
// from the path; other paths go to the next route (the files).
func TestZillaHTTPPathPatternRoutesToStreams(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	cfg, err := loadConfig("testdata/zilla/sse.kafka.fanout.compose.yaml", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].When[0].Path != "/{topic}/{key}/{tag}" || cfg.Routes[0].With.TopicPattern != zillaAnyTopic {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
	// A second route to the same sse server cannot have a path gate of its own.
	second := strings.Replace(readFile(t, "testdata/zilla/sse.kafka.fanout.compose.yaml"), "              :path: /events/*\n        exit: north_sse_server\n",
		"              :path: /events/*\n        exit: north_sse_server\n      - when:\n          - headers:\n              :path: /other/*\n        exit: north_sse_server\n", 1)
	if _, err := parseConfig([]byte(second), true); err == nil || !strings.Contains(err.Error(), `binding "north_http_server" routes[1]: a second route to "north_sse_server"`) {
		t.Fatalf("second pattern route: %v", err)
	}
	streams := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "stream") })
	h := cfg.zilla.handler(streams, testLogger())
	for path, want := range map[string]string{"/events/1/abc": "stream", "/events/": "stream", "/": "ssekafka zilla fixture", "/eventsx": "404"} {
		rec := httptestRecord(h, http.MethodGet, path)
		if !strings.Contains(rec, want) {
			t.Errorf("GET %s: %q, want %q", path, rec, want)
		}
	}
}

// The filesystem binding's location is served read-only: files and a
// directory's index.html, never a listing, nothing outside it.
func TestZillaFilesServedReadOnlyWithoutEscape(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	for _, d := range []string{root, filepath.Join(root, "sub"), filepath.Join(root, "app")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"www/index.html": "home", "www/sub/a.txt": "a", "www/app/index.html": "app", "secret.txt": "secret"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(root, "out.txt")); err != nil {
		t.Fatal(err)
	}
	s := &zillaServe{paths: []zillaPath{{files: &zillaFiles{location: root}}}}
	h := s.handler(nil, testLogger())
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/", "200 home"}, {"GET", "/index.html", "200 home"}, {"GET", "/sub/a.txt", "200 a"},
		{"GET", "/app/", "200 app"}, {"GET", "/sub/", "404"}, {"GET", "/sub", "404"},
		{"GET", "/../secret.txt", "404"}, {"GET", "/out.txt", "404"}, {"GET", "/missing", "404"},
		{"POST", "/index.html", "405"}, {"HEAD", "/index.html", "200"},
	} {
		if got := httptestRecord(h, tc.method, tc.path); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

// A tls binding's vault, keys, alpn and the http versions map onto the
// edge's TLS; what cannot be served is refused, naming the field.
func TestZillaTLSBindingMapsAndRefuses(t *testing.T) {
	setZillaEnv(t, "127.0.0.1:9999")
	config, _ := zillaExample(t, "sse.kafka.fanout.jwt.tls.yaml")
	cfg, err := loadConfig(config, true)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := cfg.zilla.edgeTLS(nil)
	if err != nil || len(tl.Certificates) != 1 || strings.Join(tl.NextProtos, ",") != "h2" {
		t.Fatalf("tls: %v %+v", err, tl)
	}
	if _, err := tl.GetConfigForClient(&tls.ClientHelloInfo{ServerName: "other.example"}); err == nil {
		t.Error("a server name not in sni is served")
	}
	base := readFile(t, "testdata/zilla/sse.kafka.fanout.jwt.tls.yaml")
	for _, tc := range []struct{ old, new, want string }{
		{"vault: server_keys", "vault: nowhere", `binding "north_tls_server" vault: "nowhere" is no vault with keys`},
		{"        - h2\n    exit", "        - h3\n    exit", `binding "north_tls_server" options.alpn[0]: "h3" is not served`},
		{"        - localhost\n      sni", "        - localhost\n        - other\n      sni", `binding "north_tls_server" options.keys: one key is supported`},
		{"      alpn:", "      mutual: required\n      alpn:", `binding "north_tls_server" options.mutual: not supported`},
		{"type: pkcs12", "type: jks", "vaults.server_keys.options.keys.type: jks is not supported"},
		{"      versions:\n        - h2\n", "      versions:\n        - h3\n", `binding "north_http_server" options.versions[0]: "h3" is not served`},
		{"      versions:\n        - h2\n", "      versions:\n        - http/1.1\n", `binding "north_http_server" options.versions: none of the tls binding's alpn`},
		{":scheme: https\n              :path", ":scheme: http\n              :path", `"http" is not supported here (behind the tls binding`},
		{"    vault: server_keys\n", "    vault: server_keys\n    routes:\n      - when: [{authority: x}]\n        exit: north_http_server\n", `routes[0]: when, guarded and with are not supported on a tls route`},
	} {
		if !strings.Contains(base, tc.old) {
			t.Fatalf("%q not in the fixture", tc.old)
		}
		_, err := parseConfig([]byte(strings.Replace(base, tc.old, tc.new, 1)), true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q -> %q: error %v, want %q", tc.old, tc.new, err, tc.want)
		}
	}
	// A wrong password is refused at start, naming the vault.
	t.Setenv("KEYSTORE_PASSWORD", "wrong")
	cfg, err = loadConfig(config, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.zilla.edgeTLS(nil); err == nil || !strings.Contains(err.Error(), "vaults.server_keys.options.keys") {
		t.Fatalf("wrong password: %v", err)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// httptestRecord is "STATUS BODY" of a request to h.
func httptestRecord(h http.Handler, method, path string) string {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return strconv.Itoa(rec.Code) + " " + rec.Body.String()
}
