package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge"
)

// validate --print writes the effective config: the libraries' defaults
// filled in, off as the YAML spells it, and it parses back to itself.
func TestValidatePrintFillsDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yml := "sse: {retry: 0, keepalive: off, maxConnectionsPerIP: -1, resumeRingBytes: -1, setupConcurrency: 8, keyReads: {ratePerIP: -1}}\n" +
		"kafka: {bootstrap: [a, b]}\ncache: {maxBytes: 0}\n"
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runValidate([]string{"--config", path, "--print"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "# "+path+": ok (0 routes, 2 bootstrap topics)") {
		t.Fatalf("no ok line first:\n%s", out.String())
	}
	cfg, err := parseConfig([]byte(out.String()), false)
	if err != nil {
		t.Fatalf("printed config refused: %v\n%s", err, out.String())
	}
	s, c, d := cfg.SSE, cfg.Cache, edge.DefaultConfig()
	switch {
	case s.retry() != edge.Off || s.keepAlive() != edge.Off || s.MaxConnectionsPerIP != -1 || s.ResumeRingBytes != -1 || s.KeyReads.RatePerIP != -1:
		t.Errorf("off not kept: %+v", s)
	case s.SetupConcurrency != 8 || s.SetupPerAddress != 8 || s.SetupQueue != d.SetupQueue || s.SetupQueuePerAddress != d.SetupQueue:
		t.Errorf("setup defaults (no share without a per-address cap): %+v", s)
	case s.RetryMax != 30000 || s.StateMinRate != d.StateMinRate || s.FeedMemoryBytes != d.FeedMemoryBytes || s.MaxConnections != d.MaxConnections ||
		s.ReleaseAfterBurst != 1000 || s.KeyReads.MinRate != d.KeyReads.MinRate || s.ResumeRingAge != time.Minute:
		t.Errorf("edge defaults not filled: %+v", s)
	case c.MaxBytes != 256<<20 || c.ApartBytes != 64<<20 || c.MaxTopics != 1000 || c.TopicIdle != 10*time.Minute || c.MaxPageBytes != 1<<20:
		t.Errorf("cache defaults not filled: %+v", c)
	case cfg.Cluster.ProbeInterval != time.Second || cfg.Cluster.ProbeTimeout != 500*time.Millisecond || cfg.Cluster.SuspicionMult != 4:
		t.Errorf("cluster defaults (memberlist's LAN values) not filled: %+v", cfg.Cluster)
	}
	var again strings.Builder
	if err := printEffective(&again, cfg); err != nil {
		t.Fatal(err)
	}
	if _, printed, _ := strings.Cut(out.String(), "\n"); again.String() != printed {
		t.Errorf("the effective config of the effective config differs:\n%s\n---\n%s", printed, again.String())
	}
}

// validate --print shows no secret: not the admin token (only where it is
// read from), not a password in nats.url, not an inline HMAC key.
func TestValidatePrintRedactsSecrets(t *testing.T) {
	const token, natsPassword = "s3cret-admin-token", "hunter2-nats"
	hmac := base64.RawURLEncoding.EncodeToString([]byte("an HMAC key of thirty-two bytes!"))
	t.Setenv("SSEKAFKA_PRINT_TEST_TOKEN", token)
	yml := "sse:\n  adminToken: {env: SSEKAFKA_PRINT_TEST_TOKEN}\n  authorization: {g: {credentials: {headers: {authorization: 'Bearer {credentials}'}}}}\n" +
		"nats: {url: 'nats://alice:" + natsPassword + "@127.0.0.1:4222'}\n" +
		"kafka: {sasl: {mechanism: PLAIN, user: bob, password: {file: /run/secrets/kafka}}}\n" +
		"guards: {g: {type: jwt, options: {keys: [{kty: oct, kid: h, alg: HS256, k: " + hmac + "}]}}}\n" +
		"routes: [{when: [{path: /x}], with: {topic: t}, guarded: {g: [r]}}]\n"
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := runValidate([]string{"--config", path, "--print"}, &out); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	for _, secret := range []string{token, natsPassword, hmac} {
		if strings.Contains(printed, secret) {
			t.Errorf("secret %q printed:\n%s", secret, printed)
		}
	}
	for _, want := range []string{"url: nats://REDACTED@127.0.0.1:4222", "k: REDACTED", "kid: h", "env: SSEKAFKA_PRINT_TEST_TOKEN", "file: /run/secrets/kafka"} {
		if !strings.Contains(printed, want) {
			t.Errorf("printed config lacks %q:\n%s", want, printed)
		}
	}
}
