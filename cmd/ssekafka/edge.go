package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

type edgeFlags struct {
	config, nats, http, admin, pprof string
	pprofMutex, pprofBlock           int
}

func newEdgeFlags() (*flag.FlagSet, *edgeFlags) {
	f := &edgeFlags{}
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.StringVar(&f.config, "config", "", "YAML config file (default: the built-in example)")
	fs.StringVar(&f.nats, "nats", "", "NATS URL (default: nats.url)")
	fs.StringVar(&f.http, "http", "", "HTTP listen address (default: sse.listen)")
	fs.StringVar(&f.admin, "admin", "", "admin listen address: /health, /metrics, /_ssekafka/ready, POST /_ssekafka/drain (default: sse.admin, none)")
	fs.StringVar(&f.pprof, "pprof", "", "serve Go profiles (/debug/pprof/) on this address (default: none)")
	fs.IntVar(&f.pprofMutex, "pprof-mutex", 0, "with --pprof: sample 1 in N mutex contention events for /debug/pprof/mutex (default 0: none)")
	fs.IntVar(&f.pprofBlock, "pprof-block", 0, "with --pprof: sample a blocking event per N ns blocked for /debug/pprof/block (default 0: none)")
	return fs, f
}

// runEdge serves until SIGINT (stop at once) or SIGTERM (drain over
// sse.drainWindow, then exit; a second signal stops at once).
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
	if f.admin != "" {
		if err := checkHostPort(f.admin); err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
		cfg.SSE.Admin = f.admin
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	drain := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if sig := <-sigs; sig == syscall.SIGTERM {
			close(drain)
			<-sigs
		}
		stop()
	}()
	log := newLogger()
	cfg.logNotes(log)
	if err := setContentionProfiles(f.pprof, f.pprofMutex, f.pprofBlock); err != nil {
		return err
	}
	if err := servePprof(ctx, f.pprof, log); err != nil {
		return err
	}
	return serveEdge(ctx, cfg, cfg.SSE.Listen, cfg.NATS.URL, log, newRegistry(), drain, func(a net.Addr) {
		log.Info("edge serving", "http", a.String(), "nats", redactURL(cfg.NATS.URL))
	})
}
