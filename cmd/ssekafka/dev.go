package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/devstack"
)

var devParts = []string{"kafka", "nats", "cache", "edge"}

// devMode is set by runDev: the edge then serves the demo page unless the
// config says sse.demo: false.
var devMode bool

func runDev(args []string) error {
	devMode = true
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config file (default: the built-in example)")
	httpAddr := fs.String("http", "", "edge HTTP listen address (default: the config's sse.listen, 127.0.0.1:8080, or a zilla.yaml's tcp server)")
	kafkaAddr := fs.String("kafka", "127.0.0.1:9092", "embedded Kafka (kfake) listen address")
	natsAddr := fs.String("nats", "127.0.0.1:4222", "embedded NATS listen address")
	only := fs.String("only", strings.Join(devParts, ","), "which of kafka,nats,cache,edge to run here")
	pprofAddr := fs.String("pprof", "", "serve Go profiles (/debug/pprof/) on this address (default: none)")
	demo := fs.Bool("demo", false, "produce sample task updates and deletes to the first bootstrap topic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	run := map[string]bool{}
	for _, part := range strings.Split(*only, ",") {
		part = strings.TrimSpace(part)
		if !slices.Contains(devParts, part) {
			return fmt.Errorf("--only: unknown part %q (want any of %s)", part, strings.Join(devParts, ","))
		}
		run[part] = true
	}
	cfg, err := loadConfig(*configPath, run["edge"])
	if err != nil {
		return err
	}
	if *httpAddr == "" {
		*httpAddr = cfg.SSE.Listen
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger()
	reg := newRegistry()
	cfg.logNotes(log)
	if err := servePprof(ctx, *pprofAddr, log); err != nil {
		return err
	}
	brokers := []string{*kafkaAddr}
	natsURL := "nats://" + *natsAddr

	if run["kafka"] {
		cluster, addr, err := devstack.StartKafka(*kafkaAddr, devstack.KafkaOptions{CompactEvery: 10 * time.Second})
		if err != nil {
			return err
		}
		defer cluster.Close()
		brokers = []string{addr}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = devstack.CreateCompactedTopics(cctx, brokers, 3, cfg.Kafka.Bootstrap...)
		cancel()
		if err != nil {
			return err
		}
		log.Info("embedded kafka listening", "addr", addr, "compacted topics", cfg.Kafka.Bootstrap)
	}
	if run["nats"] {
		ns, err := devstack.StartNATS(*natsAddr)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		natsURL = ns.ClientURL()
		log.Info("embedded nats listening", "url", natsURL)
	}
	errc := make(chan error, 2)
	if run["cache"] {
		c, err := startCache(ctx, cfg, brokers, natsURL, log, reg)
		if err != nil {
			return err
		}
		go func() { errc <- <-c.done }()
	}
	edgeUp := make(chan net.Addr, 1)
	if run["edge"] {
		go func() {
			errc <- serveEdge(ctx, cfg, *httpAddr, natsURL, log, reg, nil, func(a net.Addr) { edgeUp <- a })
		}()
		select {
		case a := <-edgeUp:
			printDevBanner(cfg, a.String(), brokers[0])
		case err := <-errc:
			return err
		}
	}
	if *demo && len(cfg.Kafka.Bootstrap) > 0 {
		go runDemoProducer(ctx, brokers, cfg.Kafka.Bootstrap[0], log)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if err == nil || errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
}

func printDevBanner(cfg *config, httpAddr, broker string) {
	topic := "tasks"
	if len(cfg.Kafka.Bootstrap) > 0 {
		topic = cfg.Kafka.Bootstrap[0]
	}
	fmt.Printf("ssekafka dev is up.\n\nWatch a stream:\n")
	for _, r := range cfg.Routes {
		for _, w := range r.When {
			fmt.Printf("  curl -N http://%s%s\n", httpAddr, w.Path)
		}
	}
	fmt.Printf("\nProduce (key:value per line; add -Z to send an empty value as a delete):\n")
	fmt.Printf("  kcat -b %s -t %s -P -K:\n", broker, topic)
	fmt.Printf("\nMetrics: http://%s/_ssekafka/metrics\n\n", httpAddr)
}

// runDemoProducer writes a sample task update every 500ms, and now and then a delete.
func runDemoProducer(ctx context.Context, brokers []string, topic string, log *slog.Logger) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		log.Error("demo producer", "err", err)
		return
	}
	defer cl.Close()
	statuses := []string{"todo", "doing", "review", "done"}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		key := fmt.Sprintf("task-%d", rand.IntN(8)+1)
		r := &kgo.Record{Key: []byte(key)}
		if n%10 != 0 {
			r.Value = fmt.Appendf(nil, `{"id":%q,"status":%q,"rev":%d}`, key, statuses[rand.IntN(len(statuses))], n)
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil && ctx.Err() == nil {
			log.Warn("demo produce", "err", err)
		}
	}
}
