package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// composeFile is the part of a compose file that checkCompose reads. The
// long forms compose allows for environment and depends_on are read by
// their own types below; command and entrypoint must be lists.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	DependsOn   composeDependsOn  `yaml:"depends_on"`
	Healthcheck map[string]any    `yaml:"healthcheck"`
	Restart     string            `yaml:"restart"`
	Volumes     []string          `yaml:"volumes"`
}

// mounted returns the file of the repository (relative to its root) that
// the service mounts at path, or "".
func (s composeService) mounted(path string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == path && strings.HasPrefix(parts[0], "./") {
			return parts[0]
		}
	}
	return ""
}

// composeDependsOn maps a service to its condition; the short (list) form
// means service_started.
type composeDependsOn map[string]string

func (d *composeDependsOn) UnmarshalYAML(n *yaml.Node) error {
	*d = composeDependsOn{}
	if n.Kind == yaml.SequenceNode {
		var names []string
		if err := n.Decode(&names); err != nil {
			return err
		}
		for _, s := range names {
			(*d)[s] = "service_started"
		}
		return nil
	}
	var long map[string]struct {
		Condition string `yaml:"condition"`
	}
	if err := n.Decode(&long); err != nil {
		return err
	}
	for s, c := range long {
		if c.Condition == "" {
			c.Condition = "service_started"
		}
		(*d)[s] = c.Condition
	}
	return nil
}

// checkCompose checks that a compose file describes what the README says:
// Kafka in KRaft mode from its official image, NATS, three cache nodes and
// an edge, from the image the Dockerfile builds, whose commands our flag
// parsers accept and whose addresses, ports and start order agree with one
// another. It returns every problem found.
func checkCompose(data []byte) []error {
	return checkComposeIn(data, filepath.Join("..", ".."))
}

// checkComposeIn is checkCompose with the files the compose file mounts
// read relative to root.
func checkComposeIn(data []byte, root string) []error {
	var f composeFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(false)
	if err := dec.Decode(&f); err != nil {
		return []error{fmt.Errorf("compose: %w", err)}
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	svc := func(name string) (composeService, bool) {
		s, ok := f.Services[name]
		if !ok {
			bad("service %s: missing", name)
		}
		return s, ok
	}
	// service splits host:port (or nats://host:port) of an address that must
	// name a service of the file.
	service := func(who, flag, addr string) (string, int) {
		host, port, err := net.SplitHostPort(strings.TrimPrefix(addr, "nats://"))
		p, perr := strconv.Atoi(port)
		if err != nil || perr != nil {
			bad("%s: %s %q: not host:port", who, flag, addr)
			return "", 0
		}
		if _, ok := f.Services[host]; !ok {
			bad("%s: %s %q: no service %s", who, flag, addr, host)
		}
		return host, p
	}
	// config checks that a --config path is mounted from a file of the
	// repository that parses, and that the secrets it reads from the
	// environment are set on the service.
	config := func(who string, s composeService, path string, needRoutes bool) {
		if path == "" {
			bad("%s: no --config: it would run without NATS credentials", who)
			return
		}
		file := s.mounted(path)
		if file == "" {
			bad("%s: --config %s is not mounted from the repository", who, path)
			return
		}
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			bad("%s: %v", who, err)
			return
		}
		cfg, err := parseConfig(data, needRoutes)
		if err != nil {
			bad("%s: %s: %v", who, file, err)
			return
		}
		if cfg.NATS.Credentials.Password == nil {
			bad("%s: %s gives no NATS password", who, file)
			return
		}
		if env := cfg.NATS.Credentials.Password.Env; env != "" && s.Environment[env] == "" {
			bad("%s: %s reads $%s, which the service does not set", who, file, env)
		}
	}
	for name, s := range f.Services {
		if strings.Contains(name, "zookeeper") {
			bad("service %s: KRaft needs no ZooKeeper", name)
		}
		if s.Image == "" {
			bad("service %s: no image", name)
		}
		for dep, cond := range s.DependsOn {
			target, ok := f.Services[dep]
			switch {
			case !ok:
				bad("service %s: depends on %s, which is not a service", name, dep)
			case cond == "service_healthy" && target.Healthcheck == nil:
				bad("service %s: waits for %s to be healthy, which has no healthcheck", name, dep)
			case cond == "service_completed_successfully" && target.Restart != "no":
				bad("service %s: waits for %s to complete, which restarts", name, dep)
			case cond != "service_started" && cond != "service_healthy" && cond != "service_completed_successfully":
				bad("service %s: depends on %s with condition %q", name, dep, cond)
			}
		}
	}

	kafkaPort := 0
	if kafka, ok := svc("kafka"); ok {
		if !strings.HasPrefix(kafka.Image, "apache/kafka:") {
			bad("kafka: image %q is not apache/kafka", kafka.Image)
		}
		if !strings.Contains(kafka.Environment["KAFKA_PROCESS_ROLES"], "controller") {
			bad("kafka: not in KRaft mode (KAFKA_PROCESS_ROLES with controller)")
		}
		adv := kafka.Environment["KAFKA_ADVERTISED_LISTENERS"]
		_, kafkaPort = service("kafka", "KAFKA_ADVERTISED_LISTENERS", strings.TrimPrefix(adv, "PLAINTEXT://"))
		if kafka.Healthcheck == nil {
			bad("kafka: no healthcheck")
		}
	}
	if init, ok := svc("kafka-init"); ok {
		if !slices.Contains(init.Command, "--create") || !slices.Contains(init.Command, "--config=cleanup.policy=compact") ||
			!strings.HasSuffix(strings.Join(init.Entrypoint, " "), "kafka-topics.sh") {
			bad("kafka-init: does not create a compacted topic with kafka-topics.sh: %q %q", init.Entrypoint, init.Command)
		}
		if !slices.Contains(init.Command, fmt.Sprintf("--bootstrap-server=kafka:%d", kafkaPort)) {
			bad("kafka-init: --bootstrap-server is not kafka:%d: %q", kafkaPort, init.Command)
		}
		if init.DependsOn["kafka"] != "service_healthy" {
			bad("kafka-init: does not wait for kafka to be healthy")
		}
	}
	natsPort := 0
	if nats, ok := svc("nats"); ok {
		if !strings.HasPrefix(nats.Image, "nats:") {
			bad("nats: image %q is not nats", nats.Image)
		}
		if i := slices.Index(nats.Command, "--port"); i >= 0 && i+1 < len(nats.Command) {
			natsPort, _ = strconv.Atoi(nats.Command[i+1])
		} else {
			bad("nats: command %q sets no --port", nats.Command)
		}
		if i := slices.Index(nats.Command, "-c"); i < 0 || i+1 >= len(nats.Command) ||
			nats.mounted(nats.Command[i+1]) != "./deploy/nats/nats-server.conf" {
			bad("nats: does not run deploy/nats/nats-server.conf: anyone could connect")
		}
		for _, env := range []string{"SSEKAFKA_NATS_CACHE_PASSWORD", "SSEKAFKA_NATS_EDGE_PASSWORD"} {
			if nats.Environment[env] == "" {
				bad("nats: $%s not set", env)
			}
		}
	}

	gossipPort := map[string]int{}
	builds := 0
	for _, name := range []string{"cache-1", "cache-2", "cache-3"} {
		s, ok := svc(name)
		if !ok {
			continue
		}
		if s.Build != nil {
			builds++
		}
		if s.Image != "ssekafka:dev" {
			bad("%s: image %q is not ssekafka:dev", name, s.Image)
		}
		if len(s.Command) == 0 || s.Command[0] != "cache" {
			bad("%s: command %q is not cache", name, s.Command)
			continue
		}
		fs, fl := newCacheFlags()
		fs.SetOutput(discard{})
		if err := fs.Parse(s.Command[1:]); err != nil {
			bad("%s: command %q: %v", name, s.Command, err)
			continue
		}
		if fs.NArg() > 0 {
			bad("%s: command %q: arguments after the flags: %q", name, s.Command, fs.Args())
		}
		config(name, s, fl.config, false)
		if host, port := service(name, "--kafka", fl.kafka); host != "kafka" || port != kafkaPort {
			bad("%s: --kafka %q is not kafka:%d", name, fl.kafka, kafkaPort)
		}
		if host, port := service(name, "--nats", fl.nats); host != "nats" || port != natsPort {
			bad("%s: --nats %q is not nats:%d", name, fl.nats, natsPort)
		}
		if fl.name != name {
			bad("%s: --name %q", name, fl.name)
		}
		if fl.replicas != 2 {
			bad("%s: --replicas %d, want 2 (each partition on two of three nodes)", name, fl.replicas)
		}
		if err := checkHostPort(fl.gossip); err != nil {
			bad("%s: --gossip: %v", name, err)
		} else {
			_, p, _ := net.SplitHostPort(fl.gossip)
			gossipPort[name], _ = strconv.Atoi(p)
		}
		if fl.join == "" {
			if s.DependsOn["kafka-init"] != "service_completed_successfully" {
				bad("%s: starts the cluster but does not wait for kafka-init", name)
			}
			continue
		}
		host, port := service(name, "--join", fl.join)
		if _, ok := s.DependsOn[host]; !ok {
			bad("%s: joins %s without depending on it", name, host)
		}
		if p, ok := gossipPort[host]; host != "" && (!ok || p != port) {
			bad("%s: --join %q is not the gossip address of an earlier cache node", name, fl.join)
		}
	}
	if builds != 1 {
		bad("%d cache services build the image, want 1", builds)
	}
	if edge, ok := svc("edge"); ok {
		if edge.Image != "ssekafka:dev" {
			bad("edge: image %q is not ssekafka:dev", edge.Image)
		}
		fs, fl := newEdgeFlags()
		fs.SetOutput(discard{})
		switch {
		case len(edge.Command) == 0 || edge.Command[0] != "edge":
			bad("edge: command %q is not edge", edge.Command)
		case fs.Parse(edge.Command[1:]) != nil:
			bad("edge: command %q: flags refused", edge.Command)
		default:
			if host, port := service("edge", "--nats", fl.nats); host != "nats" || port != natsPort {
				bad("edge: --nats %q is not nats:%d", fl.nats, natsPort)
			}
			config("edge", edge, fl.config, true)
			_, httpPort, err := net.SplitHostPort(fl.http)
			if err != nil {
				bad("edge: --http %q: %v", fl.http, err)
			}
			if len(edge.Ports) != 1 || !strings.HasSuffix(edge.Ports[0], ":"+httpPort) {
				bad("edge: ports %q do not publish --http's port %s", edge.Ports, httpPort)
			}
		}
		if len(edge.DependsOn) == 0 {
			bad("edge: depends on nothing; it needs a cache node")
		}
	}
	return errs
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// TestComposeFile checks docker-compose.yml (no Docker engine runs here).
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkCompose(data); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
}

// TestComposeCheckCatchesBrokenFiles: each variant breaks one thing of the
// real file, and the check must say what.
func TestComposeCheckCatchesBrokenFiles(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	for _, tc := range []struct{ old, new, want string }{
		{"image: apache/kafka:3.9.1\n    environment", "image: bitnami/kafka:3.9\n    environment", "kafka: image"},
		{"KAFKA_PROCESS_ROLES: broker,controller", "KAFKA_PROCESS_ROLES: broker", "KRaft"},
		{"image: nats:2.11-alpine", "image: natz:2.11", "nats: image"},
		{`"--port", "4222"`, `"--port", "4333"`, `--nats "nats://nats:4222" is not nats:4333`},
		{`["-c", "/etc/nats/nats-server.conf"`, `["-c", "/etc/nats/other.conf"`, "nats: does not run deploy/nats/nats-server.conf"},
		{"      SSEKAFKA_NATS_EDGE_PASSWORD: ${SSEKAFKA_NATS_EDGE_PASSWORD:-change-me-edge}\n\n  cache-1", "\n  cache-1", "nats: $SSEKAFKA_NATS_EDGE_PASSWORD not set"},
		{`"--name", "cache-2", "--replicas"`, `"--name", "cache-2", "--config", "/etc/x.yaml", "--replicas"`, "cache-2: --config /etc/x.yaml is not mounted"},
		{`command: ["edge", "--config", "/etc/ssekafka/edge.yaml", `, `command: ["edge", `, "edge: no --config"},
		{`"--kafka", "kafka:9092", "--nats", "nats://nats:4222", "--http", "0.0.0.0:9464",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, `"--kafka", "kafka:9093", "--nats", "nats://nats:4222", "--http", "0.0.0.0:9464",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, "cache-2: --kafka"},
		{`"--name", "cache-3"`, `"--name", "cache-1"`, "cache-3: --name"},
		{`"--name", "cache-3", "--replicas", "2"`, `"--name", "cache-3", "--replica", "2"`, "cache-3: command"},
		{`"--name", "cache-2", "--replicas", "2", "--join", "cache-1:7946"]`, `"--name", "cache-2", "--replicas", "2", "--join", "cache-9:7946"]`, "no service cache-9"},
		{`"--name", "cache-3", "--replicas", "2", "--join", "cache-1:7946"]`, `"--name", "cache-3", "--replicas", "2", "--join", "cache-1:7000"]`, "cache-3: --join"},
		{"  cache-2:\n    image: ssekafka:dev", "  cache-2:\n    image: ssekafka:latest", "cache-2: image"},
		{"    build: .\n", "", "0 cache services build"},
		{`"--nats", "nats://nats:4222", "--http", "0.0.0.0:8080"`, `"--nats", "nats://nats:4222", "--http", "0.0.0.0:9090"`, "edge: ports"},
		{`"edge", "--config"`, `"edge", "--natz"`, "edge: command"},
		{"--bootstrap-server=kafka:9092", "--bootstrap-server=kafka:9094", "kafka-init: --bootstrap-server"},
		{"        condition: service_healthy", "        condition: service_started", "kafka-init: does not wait"},
		{"    healthcheck:\n", "    x-healthcheck:\n", "which has no healthcheck"},
		{`restart: "no"`, `restart: always`, "which restarts"},
		{"      kafka-init:\n        condition: service_completed_successfully", "      kafka-int:\n        condition: service_completed_successfully", "not a service"},
		{"\n  nats:\n", "\n  zookeeper:\n    image: zookeeper:3.9\n  nats:\n", "ZooKeeper"},
		{"\n  edge:\n", "\n  edgy:\n", "service edge: missing"},
		{"services:", "services: [", "compose: "},
	} {
		if !strings.Contains(good, tc.old) {
			t.Fatalf("variant %q: docker-compose.yml no longer contains %q; update the table", tc.want, tc.old)
		}
		broken := strings.Replace(good, tc.old, tc.new, 1)
		errs := checkCompose([]byte(broken))
		if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("variant %q: got %v", tc.want, err)
		}
	}
}
