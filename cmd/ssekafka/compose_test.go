package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/nats-io/nats-server/v2/server"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of a compose file that checkCompose reads. The
// long forms compose allows for environment and depends_on are read by
// their own types below; command and entrypoint must be lists.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
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
	Networks    composeNetworks   `yaml:"networks"`
}

// composeNetworks is a service's networks, a list of names or a map of
// names to their settings; only a fixed IPv4 address is read.
type composeNetworks map[string]string

func (n *composeNetworks) UnmarshalYAML(node *yaml.Node) error {
	*n = composeNetworks{}
	if node.Kind == yaml.SequenceNode {
		var names []string
		if err := node.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			(*n)[name] = ""
		}
		return nil
	}
	var m map[string]*struct {
		IPv4Address string `yaml:"ipv4_address"`
	}
	if err := node.Decode(&m); err != nil {
		return err
	}
	for name, v := range m {
		if v != nil {
			(*n)[name] = v.IPv4Address
		} else {
			(*n)[name] = ""
		}
	}
	return nil
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

// checkCompose checks that a compose file describes what docs/operations.md
// says: Kafka in KRaft mode from its official image, a three-server NATS
// cluster, three cache nodes and two edges, from the image the Dockerfile
// builds, whose commands our flag parsers accept and whose addresses, ports and
// start order agree with one another; a Caddy load balancer set up for SSE,
// Prometheus scraping every node, and Grafana whose dashboard names only
// metrics the product has. It returns every problem found.
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
	// First as docker compose loads it: the compose specification's schema,
	// interpolation with nothing set, merge keys, references between services.
	abs, err := filepath.Abs(root)
	if err != nil {
		return []error{err}
	}
	if _, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  abs,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(abs, "docker-compose.yml"), Content: data}},
		Environment: types.Mapping{},
	}); err != nil {
		bad("compose-go: %v", err)
	}
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
	config := func(who string, s composeService, path string, needRoutes bool) (*config, string) {
		if path == "" {
			bad("%s: no --config: it would run without NATS credentials", who)
			return nil, ""
		}
		file := s.mounted(path)
		if file == "" {
			bad("%s: --config %s is not mounted from the repository", who, path)
			return nil, ""
		}
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			bad("%s: %v", who, err)
			return nil, ""
		}
		cfg, err := parseConfig(data, needRoutes)
		if err != nil {
			bad("%s: %s: %v", who, file, err)
			return nil, ""
		}
		if cfg.NATS.Credentials.Password == nil {
			bad("%s: %s gives no NATS password", who, file)
			return cfg, file
		}
		if env := cfg.NATS.Credentials.Password.Env; env != "" && s.Environment[env] == "" {
			bad("%s: %s reads $%s, which the service does not set", who, file, env)
		}
		return cfg, file
	}
	// The load balancer's fixed address, which the edges trust as a proxy.
	lbAddr := checkLBAddress(f, bad)
	for name, s := range f.Services {
		if strings.Contains(name, "zookeeper") {
			bad("service %s: KRaft needs no ZooKeeper", name)
		}
		if s.Image == "" && s.Build == nil {
			bad("service %s: no image and no build", name)
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					bad("service %s: volume %s: %v", name, v, err)
				}
			}
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
	for _, name := range natsServers {
		if nats, ok := svc(name); ok {
			if p := checkNATSServer(name, nats, root, bad); p != 0 {
				natsPort = p
			}
		}
	}
	// natsURL checks a --nats list: every server of the cluster, at its
	// client port.
	natsURL := func(who, urls string) {
		var hosts []string
		for _, u := range strings.Split(urls, ",") {
			host, port := service(who, "--nats", u)
			if port != natsPort || !slices.Contains(natsServers, host) {
				bad("%s: --nats %q is not a NATS server at port %d", who, u, natsPort)
			}
			hosts = append(hosts, host)
		}
		for _, n := range natsServers {
			if !slices.Contains(hosts, n) {
				bad("%s: --nats %q leaves out %s", who, urls, n)
			}
		}
	}

	gossipPort := map[string]int{}
	cacheHTTP := map[string]string{}
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
		natsURL(name, fl.nats)
		cacheHTTP[name] = fl.http
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
	edgeHTTP, edgeAdmin := map[string]string{}, map[string]string{}
	for _, name := range edgeServices {
		edge, ok := svc(name)
		if !ok {
			continue
		}
		if edge.Image != "ssekafka:dev" {
			bad("%s: image %q is not ssekafka:dev", name, edge.Image)
		}
		fs, fl := newEdgeFlags()
		fs.SetOutput(discard{})
		switch {
		case len(edge.Command) == 0 || edge.Command[0] != "edge":
			bad("%s: command %q is not edge", name, edge.Command)
		case fs.Parse(edge.Command[1:]) != nil:
			bad("%s: command %q: flags refused", name, edge.Command)
		default:
			natsURL(name, fl.nats)
			if cfg, file := config(name, edge, fl.config, true); cfg != nil && lbAddr.IsValid() {
				trusted := cfg.SSE.trustedProxies
				if !slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(lbAddr) }) {
					bad("%s: %s: sse.trustedProxies %q leaves out the load balancer's %v: every stream through it would count against one address", name, file, cfg.SSE.TrustedProxies, lbAddr)
				}
				for _, p := range trusted {
					if p.Bits() < lbAddr.BitLen() {
						bad("%s: %s: sse.trustedProxies %v trusts more than the load balancer: any container there could forge X-Forwarded-For", name, file, p)
					}
				}
			}
			if err := checkHostPort(fl.http); err != nil {
				bad("%s: --http %q: %v", name, fl.http, err)
			}
			if err := checkHostPort(fl.admin); err != nil {
				bad("%s: --admin %q: %v (Prometheus and the load balancer's health check read it)", name, fl.admin, err)
			}
			edgeHTTP[name], edgeAdmin[name] = fl.http, fl.admin
		}
		if len(edge.DependsOn) == 0 {
			bad("%s: depends on nothing; it needs a cache node", name)
		}
	}
	if lb, ok := svc("lb"); ok {
		checkLB(lb, root, edgeHTTP, edgeAdmin, bad)
	}
	promPort := 0
	if prom, ok := svc("prometheus"); ok {
		promPort = checkPrometheus(prom, root, cacheHTTP, edgeAdmin, bad)
	}
	if g, ok := svc("grafana"); ok {
		checkGrafana(g, root, promPort, bad)
	}
	return errs
}

// checkLBAddress returns the load balancer's fixed address on the default
// network, which must lie in the subnet the file gives that network.
func checkLBAddress(f composeFile, bad func(string, ...any)) netip.Addr {
	lb, ok := f.Services["lb"]
	if !ok {
		return netip.Addr{}
	}
	addr, err := netip.ParseAddr(lb.Networks["default"])
	if err != nil {
		bad("lb: no fixed ipv4_address on the default network (%v): the edges could not tell it as their trusted proxy", err)
		return netip.Addr{}
	}
	var subnets []string
	for _, c := range f.Networks["default"].IPAM.Config {
		subnets = append(subnets, c.Subnet)
		if p, err := netip.ParsePrefix(c.Subnet); err == nil && p.Contains(addr) {
			return addr
		}
	}
	bad("lb: ipv4_address %v is not in the default network's subnets %q", addr, subnets)
	return addr
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
		{"image: nats:2.11-alpine", "image: natz:2.11", "nats-1: image"},
		{`["-c", "/etc/nats/nats-server.conf"`, `["-c", "/etc/nats/other.conf"`, "nats-1: does not run deploy/nats/nats-server.conf"},
		{"\n  SSEKAFKA_NATS_EDGE_PASSWORD: ${SSEKAFKA_NATS_EDGE_PASSWORD:-change-me-edge}\n  SSEKAFKA_NATS_ROUTE_PASSWORD", "\n  SSEKAFKA_NATS_ROUTE_PASSWORD", "nats-1: $SSEKAFKA_NATS_EDGE_PASSWORD not set"},
		{"@nats-3:6222", "@nats-2:6222", "nats-2: no cluster route to nats-3"},
		{"nats://route:${SSEKAFKA_NATS_ROUTE_PASSWORD:-change-me-route}@nats-2", "nats://route@nats-2", "route nats://route@nats-2:6222 does not authenticate"},
		{`SSEKAFKA_NATS_NAME: nats-3`, `SSEKAFKA_NATS_NAME: nats-1`, `nats-3: server_name "nats-1"`},
		{`command: ["-c", "/etc/nats/nats-server.conf"]`, `command: ["-c", "/etc/nats/nats-server.conf", "--routes", "nats://x:6222"]`, "overrides the config's cluster"},
		{`"--nats", "NATSURL", "--http", "0.0.0.0:8080"`, `"--nats", "nats://nats-1:4222,nats://nats-2:4222", "--http", "0.0.0.0:8080"`, "edge-1: --nats \"nats://nats-1:4222,nats://nats-2:4222\" leaves out nats-3"},
		{"nats://nats-2:4222,nats://nats-3:4222\", \"--http\", \"0.0.0.0:9464\"", "nats://nats-2:4222,nats://nats-3:4333\", \"--http\", \"0.0.0.0:9464\"", `cache-1: --nats "nats://nats-3:4333" is not a NATS server at port 4222`},
		{`"--http", "0.0.0.0:9464",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, `"--http", "0.0.0.0:9470",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, "prometheus: does not scrape cache-2:9470/metrics"},
		{",\n              \"--admin\", \"0.0.0.0:9465\"]", "]", "edge-1: --admin"},
		{"./deploy/caddy/Caddyfile:", "./deploy/caddy/Caddyfile.gone:", "service lb: volume ./deploy/caddy/Caddyfile.gone"},
		{"image: caddy:2.10-alpine", "image: traefik:v3", "lb: image"},
		{"        ipv4_address: 172.30.80.10\n", "", "lb: no fixed ipv4_address"},
		{"ipv4_address: 172.30.80.10", "ipv4_address: 172.30.81.10", "lb: ipv4_address 172.30.81.10 is not in the default network's subnets"},
		{"ipv4_address: 172.30.80.10", "ipv4_address: 172.30.80.11", "leaves out the load balancer's 172.30.80.11"},
		{"GF_SECURITY_ADMIN_PASSWORD:", "GF_SECURITY_ADMIN_PASS:", "grafana: GF_SECURITY_ADMIN_PASSWORD not set"},
		{"  prometheus:\n    image: prom/prometheus:v3.5.0\n", "  prometheus:\n", "service prometheus: no image and no build"},
		{`"--name", "cache-2", "--replicas"`, `"--name", "cache-2", "--config", "/etc/x.yaml", "--replicas"`, "cache-2: --config /etc/x.yaml is not mounted"},
		{`command: ["edge", "--config", "/etc/ssekafka/edge.yaml", `, `command: ["edge", `, "edge-1: no --config"},
		{`"--kafka", "kafka:9092", "--nats", "NATSURL", "--http", "0.0.0.0:9464",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, `"--kafka", "kafka:9093", "--nats", "NATSURL", "--http", "0.0.0.0:9464",
              "--gossip", "0.0.0.0:7946", "--name", "cache-2"`, "cache-2: --kafka"},
		{`"--name", "cache-3"`, `"--name", "cache-1"`, "cache-3: --name"},
		{`"--name", "cache-3", "--replicas", "2"`, `"--name", "cache-3", "--replica", "2"`, "cache-3: command"},
		{`"--name", "cache-2", "--replicas", "2", "--join", "cache-1:7946"]`, `"--name", "cache-2", "--replicas", "2", "--join", "cache-9:7946"]`, "no service cache-9"},
		{`"--name", "cache-3", "--replicas", "2", "--join", "cache-1:7946"]`, `"--name", "cache-3", "--replicas", "2", "--join", "cache-1:7000"]`, "cache-3: --join"},
		{"  cache-2:\n    image: ssekafka:dev", "  cache-2:\n    image: ssekafka:latest", "cache-2: image"},
		{"    build: .\n", "", "0 cache services build"},
		{`"--nats", "NATSURL", "--http", "0.0.0.0:8080"`, `"--nats", "NATSURL", "--http", "0.0.0.0:9090"`, `lb: reverse_proxy ["edge-1:8080" "edge-2:8080"] does not name edge-1:9090`},
		{`"edge", "--config"`, `"edge", "--natz"`, "edge-1: command"},
		{"--bootstrap-server=kafka:9092", "--bootstrap-server=kafka:9094", "kafka-init: --bootstrap-server"},
		{"        condition: service_healthy", "        condition: service_started", "kafka-init: does not wait"},
		{"    healthcheck:\n", "    x-healthcheck:\n", "which has no healthcheck"},
		{`restart: "no"`, `restart: always`, "which restarts"},
		{"      kafka-init:\n        condition: service_completed_successfully", "      kafka-int:\n        condition: service_completed_successfully", "not a service"},
		{"\n  nats-1:\n", "\n  zookeeper:\n    image: zookeeper:3.9\n  nats-1:\n", "ZooKeeper"},
		{"\n  edge-2:\n", "\n  edgy:\n", "service edge-2: missing"},
		{"services:", "services: [", "compose: "},
		{"    stop_grace_period: 20s\n", "    stop_grace_priod: 20s\n", "compose-go: "},
		{"  caddy-data:\n", "  cady-data:\n", "compose-go: "},
	} {
		tc.old = strings.ReplaceAll(tc.old, "NATSURL", natsURLs)
		tc.new = strings.ReplaceAll(tc.new, "NATSURL", natsURLs)
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

var (
	natsURLs     = "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222"
	natsServers  = []string{"nats-1", "nats-2", "nats-3"}
	edgeServices = []string{"edge-1", "edge-2"}
)

// readMounted reads the repository file s mounts at path.
func readMounted(who string, s composeService, root, path string, bad func(string, ...any)) []byte {
	file := s.mounted(path)
	if file == "" {
		bad("%s: nothing of the repository mounted at %s", who, path)
		return nil
	}
	data, err := os.ReadFile(filepath.Join(root, file))
	if err != nil {
		bad("%s: %v", who, err)
		return nil
	}
	return data
}

// composeEnv expands ${VAR:-default} in v with the defaults, as compose
// does with nothing set.
var composeEnv = regexp.MustCompile(`\$\{[A-Z0-9_]+:-([^}]*)\}`)

// checkNATSServer loads the config a NATS service runs with the nats-server
// the tests embed, in the service's environment, and checks that it is one
// of the cluster: authenticated clients and routes, and routes to every
// server. It returns the client port.
func checkNATSServer(name string, s composeService, root string, bad func(string, ...any)) int {
	if !strings.HasPrefix(s.Image, "nats:") {
		bad("%s: image %q is not nats", name, s.Image)
	}
	i := slices.Index(s.Command, "-c")
	if i < 0 || i+1 >= len(s.Command) || s.mounted(s.Command[i+1]) != "./deploy/nats/nats-server.conf" {
		bad("%s: does not run deploy/nats/nats-server.conf: anyone could connect", name)
		return 0
	}
	if slices.ContainsFunc(s.Command, func(a string) bool { return strings.HasPrefix(a, "--routes") || strings.HasPrefix(a, "--cluster") }) {
		bad("%s: command %q overrides the config's cluster", name, s.Command)
	}
	for _, env := range []string{"SSEKAFKA_NATS_CACHE_PASSWORD", "SSEKAFKA_NATS_EDGE_PASSWORD", "SSEKAFKA_NATS_ROUTE_PASSWORD"} {
		if s.Environment[env] == "" {
			bad("%s: $%s not set", name, env)
		}
	}
	// The config reads its variables from the environment; set the
	// service's (a sequential test: nothing else reads it meanwhile).
	for k, v := range s.Environment {
		old, had := os.LookupEnv(k)
		os.Setenv(k, composeEnv.ReplaceAllString(v, "$1"))
		defer func() {
			if had {
				os.Setenv(k, old)
			} else {
				os.Unsetenv(k)
			}
		}()
	}
	opts, err := server.ProcessConfigFile(filepath.Join(root, "deploy", "nats", "nats-server.conf"))
	if err != nil {
		bad("%s: deploy/nats/nats-server.conf: %v", name, err)
		return 0
	}
	if opts.ServerName != name {
		bad("%s: server_name %q", name, opts.ServerName)
	}
	users := map[string]bool{}
	for _, u := range opts.Users {
		users[u.Username] = u.Permissions != nil && u.Password != ""
	}
	if len(users) != 2 || !users["cache"] || !users["edge"] {
		bad("%s: users %v, want cache and edge, each with a password and permissions", name, users)
	}
	if opts.Cluster.Port == 0 || opts.Cluster.Name == "" {
		bad("%s: no cluster (port %d, name %q)", name, opts.Cluster.Port, opts.Cluster.Name)
	}
	if opts.Cluster.Username == "" || opts.Cluster.Password == "" {
		bad("%s: cluster routes accept anyone: no cluster authorization", name)
	}
	var routed []string
	for _, u := range opts.Routes {
		pw, _ := u.User.Password()
		if u.User.Username() != opts.Cluster.Username || pw != opts.Cluster.Password {
			bad("%s: route %s does not authenticate as the cluster's user", name, u.Redacted())
		}
		if u.Port() != strconv.Itoa(opts.Cluster.Port) {
			bad("%s: route %s is not at the cluster port %d", name, u.Redacted(), opts.Cluster.Port)
		}
		routed = append(routed, u.Hostname())
	}
	for _, n := range natsServers {
		if !slices.Contains(routed, n) {
			bad("%s: no cluster route to %s (routes %q)", name, n, routed)
		}
	}
	return opts.Port
}

// checkLB checks the Caddy load balancer: both edges at their --http
// ports, health-checked on their admin ready endpoint, and the settings SSE
// needs: no buffering, a long read timeout, a retry on a refused connect,
// HTTP/2 over internal TLS.
func checkLB(lb composeService, root string, edgeHTTP, edgeAdmin map[string]string, bad func(string, ...any)) {
	if !strings.HasPrefix(lb.Image, "caddy:") {
		bad("lb: image %q is not caddy", lb.Image)
	}
	data := readMounted("lb", lb, root, "/etc/caddy/Caddyfile", bad)
	if data == nil {
		return
	}
	var lines [][]string
	for _, l := range strings.Split(string(data), "\n") {
		l, _, _ = strings.Cut(l, "#")
		if f := slices.DeleteFunc(strings.Fields(l), func(w string) bool { return w == "{" }); len(f) > 0 {
			lines = append(lines, f)
		}
	}
	// directive returns the arguments of the first line starting with word.
	directive := func(word string) ([]string, bool) {
		for _, l := range lines {
			if l[0] == word {
				return l[1:], true
			}
		}
		return nil, false
	}
	upstreams, ok := directive("reverse_proxy")
	if !ok {
		bad("lb: Caddyfile has no reverse_proxy")
	}
	for _, name := range edgeServices {
		_, port, _ := net.SplitHostPort(edgeHTTP[name])
		if !slices.Contains(upstreams, name+":"+port) {
			bad("lb: reverse_proxy %q does not name %s:%s", upstreams, name, port)
		}
		_, admin, _ := net.SplitHostPort(edgeAdmin[name])
		if args, _ := directive("health_port"); !slices.Equal(args, []string{admin}) {
			bad("lb: health_port %q is not the edges' --admin port %s", args, admin)
		}
	}
	for _, want := range []struct{ word, args, why string }{
		{"flush_interval", "-1", "responses would be buffered"},
		{"health_uri", "/_ssekafka/ready", "a draining edge would get new streams"},
		{"tls", "internal", "no TLS without external network, so no HTTP/2"},
		{"protocols", "h1 h2", "HTTP/2 to browsers"},
		{"compression", "off", "Caddy would ask the edges for gzip for clients that did not, and decode every such stream itself"},
	} {
		if args, _ := directive(want.word); strings.Join(args, " ") != want.args {
			bad("lb: %s %q, want %q: %s", want.word, args, want.args, want.why)
		}
	}
	if args, ok := directive("lb_try_duration"); !ok || len(args) != 1 || args[0] == "0" || args[0] == "0s" {
		bad("lb: lb_try_duration %q: a refused connect is not tried on the other edge", args)
	}
	if args, _ := directive("read_timeout"); len(args) != 1 || !strings.HasSuffix(args[0], "m") && !strings.HasSuffix(args[0], "h") {
		bad("lb: read_timeout %q: an idle stream would be cut in seconds", args)
	}
	for _, word := range []string{"lb_retry_match", "write", "read_body"} {
		if args, ok := directive(word); ok {
			bad("lb: %s %q: streams must not be retried or cut", word, args)
		}
	}
	checkLBCodings(lines, bad)
	if !slices.ContainsFunc(lb.Ports, func(p string) bool { return strings.HasSuffix(p, ":8443") }) {
		bad("lb: ports %q do not publish the HTTPS port 8443", lb.Ports)
	}
}

// checkLBCodings checks that Caddy leaves the edges' content codings
// alone (issue 24): no encode (the edges compress once for every client;
// a proxy that compresses again pays per connection), and no header rule
// that drops or rewrites Accept-Encoding, Content-Encoding, Vary or
// Cache-Control (its no-transform) on the way.
func checkLBCodings(lines [][]string, bad func(string, ...any)) {
	for _, l := range lines {
		if l[0] == "encode" {
			bad("lb: encode %q: the edges compress their streams once for every client; Caddy must not compress them again", l[1:])
		}
		if !slices.Contains([]string{"header_up", "header_down", "header", "request_header"}, l[0]) || len(l) < 2 {
			continue
		}
		name := strings.TrimLeft(l[1], "-+>?")
		for _, h := range []string{"Accept-Encoding", "Content-Encoding", "Vary", "Cache-Control"} {
			if strings.EqualFold(name, h) {
				bad("lb: %s %q: %s must pass between the clients and the edges as it is", l[0], l[1:], h)
			}
		}
	}
}

// checkPrometheus checks that Prometheus scrapes every cache node's --http
// and every edge's --admin address at /metrics, and returns its port.
func checkPrometheus(p composeService, root string, cacheHTTP, edgeAdmin map[string]string, bad func(string, ...any)) int {
	if !strings.HasPrefix(p.Image, "prom/prometheus:") {
		bad("prometheus: image %q is not prom/prometheus", p.Image)
	}
	data := readMounted("prometheus", p, root, "/etc/prometheus/prometheus.yml", bad)
	if data == nil {
		return 0
	}
	var cfg struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		bad("prometheus: deploy/prometheus/prometheus.yml: %v", err)
		return 0
	}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			for _, t := range st.Targets {
				scraped[t] = true
			}
		}
	}
	want := func(name, addr, flag string) {
		_, port, _ := net.SplitHostPort(addr)
		if !scraped[name+":"+port] {
			bad("prometheus: does not scrape %s:%s/metrics (its %s)", name, port, flag)
		}
	}
	for name, addr := range cacheHTTP {
		want(name, addr, "--http")
	}
	for name, addr := range edgeAdmin {
		want(name, addr, "--admin")
	}
	return 9090
}

// productMetrics returns the names of the metrics edges and cache nodes
// register: those of the Go and process collectors, gathered, and the
// ssekafka ones, read from the sources of edge and cache as they declare
// them (Subsystem is the package).
func productMetrics(root string) (map[string]bool, error) {
	names := map[string]bool{}
	mfs, err := newRegistry().Gather()
	if err != nil {
		return nil, err
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	decl := regexp.MustCompile(`(?:Name: |\bc\()"([a-z_]+)"`)
	for _, pkg := range []string{"edge", "cache"} {
		var files []string // the package's and its internal packages'
		err := filepath.WalkDir(filepath.Join(root, pkg), func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if !strings.Contains(string(src), `Subsystem: "`+pkg+`"`) {
				continue
			}
			for _, m := range decl.FindAllStringSubmatch(string(src), -1) {
				n := "ssekafka_" + pkg + "_" + m[1]
				names[n] = true
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					names[n+suffix] = true
				}
			}
		}
	}
	return names, nil
}

// checkGrafana checks Grafana's provisioned Prometheus datasource and that
// every metric the dashboard's expressions name is one the product has.
func checkGrafana(g composeService, root string, promPort int, bad func(string, ...any)) {
	if !strings.HasPrefix(g.Image, "grafana/grafana:") {
		bad("grafana: image %q is not grafana/grafana", g.Image)
	}
	if g.Environment["GF_SECURITY_ADMIN_PASSWORD"] == "" {
		bad("grafana: GF_SECURITY_ADMIN_PASSWORD not set: the login would be admin/admin")
	}
	if data := readMounted("grafana", g, root, "/etc/grafana/provisioning/datasources/prometheus.yaml", bad); data != nil {
		var ds struct {
			Datasources []struct {
				Type, URL, UID string
			} `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(data, &ds); err != nil || len(ds.Datasources) != 1 ||
			ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != fmt.Sprintf("http://prometheus:%d", promPort) {
			bad("grafana: datasource %+v (%v) is not prometheus at http://prometheus:%d", ds.Datasources, err, promPort)
		}
	}
	readMounted("grafana", g, root, "/etc/grafana/provisioning/dashboards/ssekafka.yaml", bad)
	data := readMounted("grafana", g, root, "/var/lib/grafana/dashboards/ssekafka.json", bad)
	if data == nil {
		return
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		bad("grafana: dashboard: %v", err)
		return
	}
	known, err := productMetrics(root)
	if err != nil {
		bad("grafana: product metrics: %v", err)
		return
	}
	metric := regexp.MustCompile(`\b(?:ssekafka|go|process)_[a-z0-9_]+`)
	exprs := 0
	for _, p := range dash.Panels {
		for _, t := range p.Targets {
			exprs++
			names := metric.FindAllString(t.Expr, -1)
			if len(names) == 0 {
				bad("grafana: panel %q: %q names no metric", p.Title, t.Expr)
			}
			for _, n := range names {
				if !known[n] {
					bad("grafana: panel %q: %s is not a metric of ssekafka", p.Title, n)
				}
			}
		}
	}
	if exprs == 0 {
		bad("grafana: the dashboard has no queries")
	}
}

// TestComposeCheckCatchesBrokenConfigs: each variant breaks one thing of a
// config file the compose file mounts (in a copy of deploy/), and the check
// must say what.
func TestComposeCheckCatchesBrokenConfigs(t *testing.T) {
	repo := filepath.Join("..", "..")
	compose, err := os.ReadFile(filepath.Join(repo, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, old, new, want string }{
		{"deploy/caddy/Caddyfile", "flush_interval -1", "flush_interval 1s", "lb: flush_interval"},
		{"deploy/caddy/Caddyfile", "lb_try_duration 5s\n", "", "lb: lb_try_duration"},
		{"deploy/caddy/Caddyfile", "read_timeout 10m", "read_timeout 30s", "lb: read_timeout"},
		{"deploy/caddy/Caddyfile", "tls internal", "tls off", "lb: tls"},
		{"deploy/caddy/Caddyfile", "protocols h1 h2", "protocols h1", "lb: protocols"},
		{"deploy/caddy/Caddyfile", "edge-1:8080 edge-2:8080", "edge-1:8080", "does not name edge-2:8080"},
		{"deploy/caddy/Caddyfile", "health_port 9465", "health_port 8080", "lb: health_port"},
		{"deploy/caddy/Caddyfile", "\t\t\tcompression off\n", "", "lb: compression"},
		{"deploy/caddy/Caddyfile", "\ttls internal\n", "\ttls internal\n\tencode zstd gzip\n", "lb: encode"},
		{"deploy/caddy/Caddyfile", "header_down X-Accel-Buffering no\n", "header_down X-Accel-Buffering no\n\t\theader_down -Vary\n", "lb: header_down [\"-Vary\"]"},
		{"deploy/caddy/Caddyfile", "header_down X-Accel-Buffering no\n", "header_down X-Accel-Buffering no\n\t\theader_up Accept-Encoding identity\n", "Accept-Encoding must pass"},
		{"deploy/prometheus/prometheus.yml", `"edge-1:9465", `, "", "does not scrape edge-1:9465/metrics"},
		{"deploy/prometheus/prometheus.yml", `"cache-3:9464"`, `"cache-3:9646"`, "does not scrape cache-3:9464/metrics"},
		{"deploy/grafana/dashboards/ssekafka.json", "ssekafka_edge_frames_conflated_total", "ssekafka_edge_frames_conflated", "ssekafka_edge_frames_conflated is not a metric"},
		{"deploy/grafana/dashboards/ssekafka.json", "ssekafka_cache_partition_lag", "ssekafka_cache_lag", "ssekafka_cache_lag is not a metric"},
		{"deploy/grafana/provisioning/datasources/prometheus.yaml", "http://prometheus:9090", "http://prometheus:9091", "grafana: datasource"},
		{"deploy/nats/nats-server.conf", "  authorization {\n    user: route\n    password: $SSEKAFKA_NATS_ROUTE_PASSWORD\n  }\n", "", "nats-1: cluster routes accept anyone"},
		{"deploy/nats/nats-server.conf", "    $SSEKAFKA_NATS_ROUTE_3\n", "", "nats-1: no cluster route to nats-3"},
		{"deploy/nats/nats-server.conf", "port: 6222", "port: 6333", "is not at the cluster port 6333"},
		{"deploy/nats/nats-server.conf", "user: edge\n", "user: edgy\n", "want cache and edge"},
		{"deploy/edge.yaml", "trustedProxies: [172.30.80.10]", "trustedProxies: []", "leaves out the load balancer's 172.30.80.10"},
		{"deploy/edge.yaml", "trustedProxies: [172.30.80.10]", "trustedProxies: [172.30.80.0/24]", "trusts more than the load balancer"},
	} {
		root := t.TempDir()
		if err := os.CopyFS(filepath.Join(root, "deploy"), os.DirFS(filepath.Join(repo, "deploy"))); err != nil {
			t.Fatal(err)
		}
		for _, pkg := range []string{"edge", "cache"} {
			abs, _ := filepath.Abs(filepath.Join(repo, pkg))
			if err := os.Symlink(abs, filepath.Join(root, pkg)); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(root, tc.file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), tc.old) {
			t.Fatalf("variant %q: %s no longer contains %q; update the table", tc.want, tc.file, tc.old)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(checkComposeIn(compose, root)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("variant %q: got %v", tc.want, err)
		}
	}
}
