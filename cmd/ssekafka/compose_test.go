package main

import (
	"context"
	"path/filepath"
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
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kafka", "kafka-init", "nats", "cache-1", "cache-2", "cache-3", "edge"} {
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
	for _, name := range []string{"cache-1", "cache-2", "cache-3"} {
		svc, _ := project.GetService(name)
		fs, f := newCacheFlags()
		if len(svc.Command) == 0 || svc.Command[0] != "cache" {
			t.Fatalf("%s command %q", name, svc.Command)
		}
		if err := fs.Parse(svc.Command[1:]); err != nil {
			t.Fatalf("%s command %q: %v", name, svc.Command, err)
		}
		if f.kafka != "kafka:9092" || f.gossip == "" || f.name != name || f.replicas != 2 {
			t.Errorf("%s flags %+v", name, f)
		}
		if name != "cache-1" && f.join != "cache-1:7946" {
			t.Errorf("%s does not join cache-1: %q", name, f.join)
		}
		if svc.Image != "ssekafka:dev" {
			t.Errorf("%s image %q", name, svc.Image)
		}
	}
	cache1, _ := project.GetService("cache-1")
	if cache1.Build == nil {
		t.Error("cache-1 does not build the image")
	}
	edge, _ := project.GetService("edge")
	fs, f := newEdgeFlags()
	if len(edge.Command) == 0 || edge.Command[0] != "edge" {
		t.Fatalf("edge command %q", edge.Command)
	}
	if err := fs.Parse(edge.Command[1:]); err != nil || f.nats != "nats://nats:4222" {
		t.Errorf("edge command %q: %v", edge.Command, err)
	}
	if len(edge.Ports) != 1 || edge.Ports[0].Target != 8080 || edge.Image != "ssekafka:dev" {
		t.Errorf("edge ports %+v image %q", edge.Ports, edge.Image)
	}
}
