package main

import (
	"context"
	"flag"
	"os/signal"
	"strings"
	"syscall"
)

type cacheFlags struct {
	config, kafka, nats, metrics string
}

func newCacheFlags() (*flag.FlagSet, *cacheFlags) {
	f := &cacheFlags{}
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "YAML config file (default: the built-in example)")
	fs.StringVar(&f.kafka, "kafka", "", "Kafka brokers, comma-separated (default: kafka.brokers)")
	fs.StringVar(&f.nats, "nats", "", "NATS URL (default: nats.url)")
	fs.StringVar(&f.metrics, "metrics", "", "address to serve /metrics on (default: cache.listen; empty: none)")
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
	if f.metrics != "" {
		cfg.Cache.Listen = f.metrics
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger()
	reg := newRegistry()
	serveMetrics(ctx, cfg.Cache.Listen, reg, log)
	done, err := startCache(ctx, cfg, cfg.Kafka.Brokers, cfg.NATS.URL, log, reg)
	if err != nil {
		return err
	}
	log.Info("cache node running", "kafka", cfg.Kafka.Brokers, "nats", cfg.NATS.URL)
	return <-done
}
