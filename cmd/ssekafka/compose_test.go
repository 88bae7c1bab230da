package main

import (
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// TestComposeFile loads docker-compose.yml with the compose-spec loader (no
// Docker engine runs here) and checks that it describes a KRaft Kafka, NATS,
// and cache and edge nodes whose commands our flag parsers accept.
func TestComposeFile(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "..", "docker-compose.yml")},
		cli.WithName("ssekafka"), cli.WithWorkingDirectory(filepath.Join("..", "..")))
	if err != nil {
		t.Fatal(err)
	}
	project, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kafka", "kafka-init", "nats", "cache", "edge"} {
		if _, err := project.GetService(name); err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
	}
	kafka, _ := project.GetService("kafka")
	if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
		t.Errorf("kafka image %q", kafka.Image)
	}
	if roles := kafka.Environment["KAFKA_PROCESS_ROLES"]; roles == nil || !strings.Contains(*roles, "controller") {
		t.Error("kafka is not in KRaft mode (KAFKA_PROCESS_ROLES with controller)")
	}
	for name := range project.Services {
		if strings.Contains(name, "zookeeper") {
			t.Errorf("service %s: KRaft needs no ZooKeeper", name)
		}
	}
	nats, _ := project.GetService("nats")
	if !strings.HasPrefix(nats.Image, "nats:") {
		t.Errorf("nats image %q", nats.Image)
	}
	for name, newFlags := range map[string]func() *flag.FlagSet{
		"cache": func() *flag.FlagSet { fs, _ := newCacheFlags(); return fs },
		"edge":  func() *flag.FlagSet { fs, _ := newEdgeFlags(); return fs },
	} {
		svc, _ := project.GetService(name)
		if len(svc.Command) == 0 || svc.Command[0] != name {
			t.Fatalf("%s command %q", name, svc.Command)
		}
		if err := newFlags().Parse(svc.Command[1:]); err != nil {
			t.Errorf("%s command %q: %v", name, svc.Command, err)
		}
		if svc.Image != "ssekafka:dev" {
			t.Errorf("%s image %q", name, svc.Image)
		}
	}
	edge, _ := project.GetService("edge")
	if len(edge.Ports) != 1 || edge.Ports[0].Target != 8080 {
		t.Errorf("edge ports %+v", edge.Ports)
	}
	cache, _ := project.GetService("cache")
	if cache.Build == nil || !slices.Contains(cache.Command, "kafka:9092") {
		t.Errorf("cache: build %+v command %q", cache.Build, cache.Command)
	}
}
