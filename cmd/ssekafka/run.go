package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
)

func newLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// connectNATS connects with unlimited reconnects: the edge fills what it
// missed from the cache tier after a reconnect.
func connectNATS(url, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", url, err)
	}
	return nc, nil
}

// startCache runs a cache node until ctx ends; it returns once the node
// serves requests and its bootstrap topics are caught up (or after a while).
func startCache(ctx context.Context, cfg *config, brokers []string, natsURL string, log *slog.Logger, reg prometheus.Registerer) (<-chan error, error) {
	nc, err := connectNATS(natsURL, "ssekafka-cache", log)
	if err != nil {
		return nil, err
	}
	node, err := cache.New(cache.Config{
		Brokers:          brokers,
		NATS:             nc,
		SubjectPrefix:    cfg.NATS.Prefix,
		Bootstrap:        cfg.Kafka.Bootstrap,
		TombstoneHorizon: cfg.Cache.TombstoneHorizon,
		MaxPageBytes:     cfg.Cache.MaxPageBytes,
		Logger:           log.With("component", "cache"),
		Registerer:       reg,
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		defer nc.Close()
		done <- node.Run(ctx)
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !node.Ready() {
		select {
		case <-ctx.Done():
			return done, ctx.Err()
		case err := <-done:
			return done, fmt.Errorf("cache node: %w", err)
		case <-deadline.C:
			log.Warn("cache node not caught up after 30s; serving anyway")
			return done, nil
		case <-tick.C:
		}
	}
	return done, nil
}

// serveEdge runs an edge node's HTTP server on addr until ctx ends. Besides
// the routes it serves /_ssekafka/metrics and /_ssekafka/health.
func serveEdge(ctx context.Context, cfg *config, addr, natsURL string, log *slog.Logger, reg *prometheus.Registry, ready func(net.Addr)) error {
	nc, err := connectNATS(natsURL, "ssekafka-edge", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	e, err := edge.New(edge.Config{
		NATS:          nc,
		SubjectPrefix: cfg.NATS.Prefix,
		Routes:        cfg.routes,
		Retry:         time.Duration(cfg.SSE.Retry) * time.Millisecond,
		KeepAlive:     cfg.SSE.KeepAlive,
		MaxQueue:      cfg.SSE.MaxQueue,
		Logger:        log.With("component", "edge"),
		Registerer:    reg,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/_ssekafka/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/_ssekafka/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.Handle("/", e)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("edge listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("edge http: %w", err)
	case <-ctx.Done():
	}
	e.Close() // ends the streams, so that Shutdown does not wait on them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// serveMetrics serves /metrics on addr until ctx ends; empty addr: nothing.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "addr", addr, "err", err)
		}
	}()
}
