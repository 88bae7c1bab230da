package main

import (
	"context"
	"flag"
	"net"
	"os/signal"
	"syscall"
)

type edgeFlags struct {
	config, nats, http, pprof string
}

func newEdgeFlags() (*flag.FlagSet, *edgeFlags) {
	f := &edgeFlags{}
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "YAML config file (default: the built-in example)")
	fs.StringVar(&f.nats, "nats", "", "NATS URL (default: nats.url)")
	fs.StringVar(&f.http, "http", "", "HTTP listen address (default: sse.listen)")
	fs.StringVar(&f.pprof, "pprof", "", "serve Go profiles (/debug/pprof/) on this address (default: none)")
	return fs, f
}

func runEdge(args []string) error {
	fs, f := newEdgeFlags()
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(f.config, true)
	if err != nil {
		return err
	}
	if f.nats != "" {
		cfg.NATS.URL = f.nats
	}
	if f.http != "" {
		cfg.SSE.Listen = f.http
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := newLogger()
	if err := servePprof(ctx, f.pprof, log); err != nil {
		return err
	}
	return serveEdge(ctx, cfg, cfg.SSE.Listen, cfg.NATS.URL, log, newRegistry(), func(a net.Addr) {
		log.Info("edge serving", "http", a.String(), "nats", redactURL(cfg.NATS.URL))
	})
}
