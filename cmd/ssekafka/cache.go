package main

import (
	"context"
	"flag"
	"os/signal"
	"strings"
	"syscall"
)

type cacheFlags struct {
	config, kafka, nats, http, gossip, join, name, pprof string
	replicas                                             int
}

func newCacheFlags() (*flag.FlagSet, *cacheFlags) {
	f := &cacheFlags{}
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "YAML config file (default: the built-in example)")
	fs.StringVar(&f.kafka, "kafka", "", "Kafka brokers, comma-separated (default: kafka.brokers)")
	fs.StringVar(&f.nats, "nats", "", "NATS URL (default: nats.url)")
	fs.StringVar(&f.http, "http", "", "address for /status and /metrics (default: cache.listen; empty: none)")
	fs.StringVar(&f.gossip, "gossip", "", "gossip address host:port; set to run as a cluster member (default: cluster.gossip)")
	fs.StringVar(&f.join, "join", "", "gossip addresses of members to join, comma-separated (default: cluster.join)")
	fs.StringVar(&f.name, "name", "", "unique node name (default: cluster.name, else host name and a random suffix)")
	fs.IntVar(&f.replicas, "replicas", 0, "nodes consuming each partition, primary included (default: cluster.replicas, 2)")
	fs.StringVar(&f.pprof, "pprof", "", "serve Go profiles (/debug/pprof/) on this address (default: none)")
	return fs, f
}

func runCache(args []string) error {
	fs, f := newCacheFlags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(f.config, false)
	if err != nil {
		return err
	}
	if f.kafka != "" {
		cfg.Kafka.Brokers = strings.Split(f.kafka, ",")
	}
	if f.nats != "" {
		cfg.NATS.URL = f.nats
	}
	if f.http != "" {
		cfg.Cache.Listen = f.http
	}
	if f.gossip != "" {
		cfg.Cluster.Gossip = f.gossip
	}
	if f.join != "" {
		cfg.Cluster.Join = strings.Split(f.join, ",")
	}
	if f.name != "" {
		cfg.Cluster.Name = f.name
	}
	if f.replicas > 0 {
		cfg.Cluster.Replicas = f.replicas
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger()
	reg := newRegistry()
	cfg.logNotes(log)
	if err := servePprof(ctx, f.pprof, log); err != nil {
		return err
	}
	c, err := startCache(ctx, cfg, cfg.Kafka.Brokers, cfg.NATS.URL, log, reg)
	if err != nil {
		return err
	}
	serveCacheHTTP(ctx, cfg.Cache.Listen, c, reg, log)
	log.Info("cache node running", "kafka", cfg.Kafka.Brokers, "nats", redactURL(cfg.NATS.URL), "gossip", cfg.Cluster.Gossip, "http", cfg.Cache.Listen)
	return <-c.done
}
