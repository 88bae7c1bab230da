package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/internal/devstack"
)

// recordingRegistry is a real registry that also records the name and
// variable labels of every metric registered with it, whether or not it has
// a sample yet (a vector has none until a label value is used).
type recordingRegistry struct {
	*prometheus.Registry
	mu     sync.Mutex
	labels map[string][]string // metric name -> variable labels
}

var descRE = regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)

func (r *recordingRegistry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range ch {
		m := descRE.FindStringSubmatch(d.String())
		if m == nil {
			panic("unparsed desc " + d.String())
		}
		var ls []string
		if m[2] != "" {
			ls = strings.Split(m[2], ",")
		}
		sort.Strings(ls)
		r.labels[m[1]] = ls
	}
	return nil
}

func (r *recordingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// metricsDoc holds the Metrics table, with what to alert on (issue 21 moved
// it out of README.md).
const metricsDoc = "../../docs/operations.md"

// docRow is a row of the Metrics table of docs/operations.md.
type docRow struct {
	line   int
	name   string
	labels []string
}

// docMetrics parses the table under "## Metrics" in docs/operations.md: the first
// cell names the metric in backticks, the third its labels (backticked,
// comma-separated) or "—".
func docMetrics(t *testing.T) []docRow {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var rows []docRow
	in, seen := false, 0
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = line == "## Metrics"
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		if seen++; seen <= 2 { // header and separator
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("%s:%d: a Metrics row needs name, type, labels, meaning, alert: %s", metricsDoc, i+1, line)
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		var ls []string
		if l := strings.TrimSpace(cells[3]); l != "—" && l != "" {
			for _, x := range strings.Split(l, ",") {
				ls = append(ls, strings.Trim(strings.TrimSpace(x), "`"))
			}
		}
		sort.Strings(ls)
		rows = append(rows, docRow{line: i + 1, name: name, labels: ls})
	}
	if seen == 0 {
		t.Fatal(metricsDoc + " has no table under ## Metrics")
	}
	return rows
}

// The Metrics table of docs/operations.md names every metric the cache and the edge register,
// with its labels, and nothing else: the cache and an edge (with a guard, so
// that the auth metrics exist) are started as `ssekafka dev` starts them,
// sharing one registry.
func TestOperationsDocListsEveryMetric(t *testing.T) {
	ns, err := devstack.StartNATS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	kafka := startKafkaTopic(t, "t")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	yaml := zillaJWTConfig(fmt.Sprintf("kafka: {brokers: [%s], bootstrap: [t]}\nnats: {url: %q}\n", kafka, ns.ClientURL()))
	cacheCfg, err := parseConfig([]byte(yaml), false)
	if err != nil {
		t.Fatal(err)
	}
	edgeCfg, err := parseConfig([]byte(yaml), true)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg := &recordingRegistry{Registry: prometheus.NewRegistry(), labels: map[string][]string{}}
	rc, err := startCache(ctx, cacheCfg, cacheCfg.Kafka.Brokers, ns.ClientURL(), log, reg)
	if err != nil {
		t.Fatal(err)
	}
	addr := make(chan net.Addr, 1)
	edgeDone := make(chan error, 1)
	go func() {
		edgeDone <- serveEdge(ctx, edgeCfg, "127.0.0.1:0", ns.ClientURL(), log, reg, nil, func(a net.Addr) { addr <- a })
	}()
	select {
	case <-addr:
	case err := <-edgeDone:
		t.Fatal(err)
	}
	defer func() {
		cancel()
		<-edgeDone
		<-rc.done
	}()

	reg.mu.Lock()
	registered := maps.Clone(reg.labels)
	reg.mu.Unlock()
	for _, want := range []string{"ssekafka_cache_", "ssekafka_edge_auth_"} {
		if !slices.ContainsFunc(slices.Sorted(maps.Keys(registered)), func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Fatalf("no %s* metric registered: %v", want, slices.Sorted(maps.Keys(registered)))
		}
	}
	documented := map[string]bool{}
	for _, row := range docMetrics(t) {
		ls, ok := registered[row.name]
		switch {
		case !ok:
			t.Errorf("%s:%d: %q is in the Metrics table but no such metric is registered", metricsDoc, row.line, row.name)
		case documented[row.name]:
			t.Errorf("%s:%d: %s is in the Metrics table twice", metricsDoc, row.line, row.name)
		case !slices.Equal(ls, row.labels):
			t.Errorf("%s:%d: %s has labels %v, the table says %v", metricsDoc, row.line, row.name, ls, row.labels)
		}
		documented[row.name] = true
	}
	for _, n := range slices.Sorted(maps.Keys(registered)) {
		if !documented[n] {
			t.Errorf("metric %s (labels %v) is missing from the Metrics table of %s", n, registered[n], metricsDoc)
		}
	}
}
