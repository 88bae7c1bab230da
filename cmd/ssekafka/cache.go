package main

import (
	"context"
	"flag"
	"os/signal"
	"strings"
	"syscall"
)

func runCache(args []string) error {
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config file (default: the built-in example)")
	brokers := fs.String("kafka", "", "Kafka brokers, comma-separated (default: kafka.brokers)")
	natsURL := fs.String("nats", "", "NATS URL (default: nats.url)")
	metrics := fs.String("metrics", "", "address to serve /metrics on (default: cache.listen; empty: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, false)
	if err != nil {
		return err
	}
	if *brokers != "" {
		cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if *metrics != "" {
		cfg.Cache.Listen = *metrics
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
