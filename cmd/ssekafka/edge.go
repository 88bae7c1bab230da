package main

import (
	"context"
	"flag"
	"net"
	"os/signal"
	"syscall"
)

func runEdge(args []string) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config file (default: the built-in example)")
	natsURL := fs.String("nats", "", "NATS URL (default: nats.url)")
	httpAddr := fs.String("http", "", "HTTP listen address (default: sse.listen)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, true)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	if *httpAddr != "" {
		cfg.SSE.Listen = *httpAddr
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger()
	return serveEdge(ctx, cfg, cfg.SSE.Listen, cfg.NATS.URL, log, newRegistry(), func(a net.Addr) {
		log.Info("edge serving", "http", a.String(), "nats", cfg.NATS.URL)
	})
}
