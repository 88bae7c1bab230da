package main

import (
	"os"
	"path/filepath"
	"testing"
)

// fixture is the absolute path of testdata/<name>.yaml, a config the
// process tests share (a process may run in another directory).
func fixture(t *testing.T, name string) string {
	t.Helper()
	path, err := filepath.Abs(filepath.Join("testdata", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return path
}

// devServices starts the embedded Kafka and NATS of `ssekafka dev` on free
// loopback ports and returns the broker's address and the NATS URL.
func devServices(t *testing.T) (kafkaAddr, natsURL string) {
	t.Helper()
	kafkaAddr, natsAddr := freeAddr(t), freeAddr(t)
	services := start(t, "dev", "--only", "kafka,nats", "--kafka", kafkaAddr, "--nats", natsAddr)
	services.waitFor(t, "embedded nats listening")
	return kafkaAddr, "nats://" + natsAddr
}

// TestFixturesAreValidConfigs: every shared fixture passes validation.
func TestFixturesAreValidConfigs(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, needRoutes := range []bool{false, true} {
			if _, err := parseConfig(data, needRoutes); err != nil {
				t.Errorf("%s (needRoutes %v): %v", path, needRoutes, err)
			}
		}
	}
}
