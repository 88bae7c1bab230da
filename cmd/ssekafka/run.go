package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"github.com/ssekafka/ssekafka/demo"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/ratelog"
	"github.com/ssekafka/ssekafka/membership"
)

// newLogger logs to stderr as --log-format says; warnings of one message are rate-limited
// (ratelog), as bad input from the network may repeat without end.
func newLogger() *slog.Logger { return newLoggerTo(os.Stderr, slog.LevelInfo) }

// newLoggerTo is newLogger writing to w from level on.
func newLoggerTo(w io.Writer, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if logFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return ratelog.Wrap(slog.New(h))
}

// registry is what serveEdge registers the edge's metrics with and serves
// them from (a *prometheus.Registry).
type registry interface {
	prometheus.Registerer
	prometheus.Gatherer
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// connectNATS connects with unlimited reconnects (the edge fills what it
// missed from the cache tier after a reconnect), with the TLS and
// credentials of nc.
func connectNATS(nc *natsConfig, url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	secure, err := nc.options()
	if err != nil {
		return nil, err
	}
	conn, err := nats.Connect(url, append(append(secure, extra...),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", redactURL(url), err)
	}
	return conn, nil
}

// runningCache is a started cache node.
type runningCache struct {
	node    *cache.Node
	members *membership.Cluster // nil for a single node
	done    <-chan error
}

// startCache runs a cache node until ctx ends (as a cluster member when
// cluster.gossip is set); it returns once the node serves requests and its
// bootstrap topics are caught up, or after 30s.
func startCache(ctx context.Context, cfg *config, brokers []string, natsURL string, log *slog.Logger, reg prometheus.Registerer) (*runningCache, error) {
	kafkaOpts, err := cfg.Kafka.options()
	if err != nil {
		return nil, err
	}
	nc, err := connectNATS(&cfg.NATS, natsURL, "ssekafka-cache", log)
	if err != nil {
		return nil, err
	}
	rc := &runningCache{}
	var ownership membership.Ownership
	if cfg.Cluster.Gossip != "" {
		rc.members, err = membership.NewCluster(membership.Config{
			Name:          cfg.Cluster.Name,
			Bind:          cfg.Cluster.Gossip,
			Join:          cfg.Cluster.Join,
			Replicas:      cfg.Cluster.Replicas,
			StatusAddr:    cfg.Cache.Listen,
			ProbeInterval: cfg.Cluster.ProbeInterval,
			ProbeTimeout:  cfg.Cluster.ProbeTimeout,
			SuspicionMult: cfg.Cluster.SuspicionMult,
			Logger:        log.With("component", "membership"),
		})
		if err != nil {
			nc.Close()
			return nil, err
		}
		ownership = rc.members
	}
	cc := cfg.cacheConfig()
	cc.Brokers, cc.KafkaOptions, cc.NATS, cc.Ownership = brokers, kafkaOpts, nc, ownership
	cc.Logger, cc.Registerer = log.With("component", "cache"), reg
	rc.node, err = cache.New(cc)
	if err != nil {
		nc.Close()
		if rc.members != nil {
			_ = rc.members.Shutdown()
		}
		return nil, err
	}
	done := make(chan error, 1)
	rc.done = done
	go func() {
		defer nc.Close()
		err := rc.node.Run(ctx)
		if rc.members != nil {
			_ = rc.members.Leave(2 * time.Second)
		}
		done <- err
	}()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !rc.node.Ready() {
		select {
		case <-ctx.Done():
			return rc, ctx.Err()
		case <-deadline.C:
			log.Warn("cache node not caught up after 30s; serving anyway")
			return rc, nil
		case <-tick.C:
		}
	}
	return rc, nil
}

// cacheStatus is the cache's /status document.
type cacheStatus struct {
	Node    string              `json:"node,omitempty"`
	Members []membership.Member `json:"members,omitempty"`
	cache.Status
}

// serveCacheHTTP serves /status (JSON) and /metrics on addr until ctx ends;
// empty addr: nothing.
func serveCacheHTTP(ctx context.Context, addr string, c *runningCache, reg *prometheus.Registry, log *slog.Logger) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		st := cacheStatus{Status: c.node.Status()}
		if c.members != nil {
			st.Node, st.Members = c.members.Name(), c.members.Members()
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("cache http server", "addr", addr, "err", err)
		}
	}()
}

// drainGrace is how long a drain may take past its window before the
// streams left are closed at once.
const drainGrace = 5 * time.Second

// serveEdge runs an edge node's HTTP server on addr until ctx ends (then it
// stops at once) or drain is closed or a POST /_ssekafka/drain reaches the
// admin listener (then it drains: no new streams, not ready, the live
// streams closed over sse.drainWindow; it returns once they are gone).
// Besides the routes, addr serves /_ssekafka/metrics, /_ssekafka/health and
// /_ssekafka/ready; sse.admin, if set, serves those (also as /metrics and
// /health) and /_ssekafka/drain, which the public listener never does.
func serveEdge(ctx context.Context, cfg *config, addr, natsURL string, log *slog.Logger, reg registry, drain <-chan struct{}, ready func(net.Addr)) error {
	natsName, identity, err := cfg.NATS.natsIdentity()
	if err != nil {
		return err
	}
	nc, err := connectNATS(&cfg.NATS, natsURL, "ssekafka-edge", log, identity...)
	if err != nil {
		return err
	}
	defer nc.Close()
	guards, closeGuards, err := cfg.startGuards(ctx, log)
	if err != nil {
		return err
	}
	defer closeGuards()
	ec := cfg.edgeConfig()
	ec.NATS, ec.NATSName, ec.Guards = nc, natsName, guards
	ec.Logger, ec.Registerer = log.With("component", "edge"), reg
	e, err := edge.New(ec)
	if err != nil {
		return err
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	health := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux := http.NewServeMux()
	mux.Handle("/_ssekafka/metrics", metrics)
	mux.Handle("/_ssekafka/health", health)
	mux.Handle("/_ssekafka/ready", e.ReadyHandler())
	if cfg.demo(devMode) {
		page := demo.Handler(cfg.demoPath)
		mux.Handle("GET /{$}", page)
		mux.Handle("GET "+demo.ClientPath, page)
		mux.Handle("GET "+demo.ScriptPath, page)
	}
	mux.Handle("/", cfg.zilla.handler(e, log))
	tlsCfg, err := cfg.SSE.edgeTLS(log.With("component", "edge"))
	if err != nil {
		return err
	}
	if tlsCfg, err = cfg.zilla.edgeTLS(tlsCfg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("edge listen %s: %w", addr, err)
	}
	drainReq := make(chan time.Duration, 1)
	adminRefusals := newAdminRefusals(reg)
	var admin *http.Server
	if cfg.SSE.Admin != "" {
		aln, err := net.Listen("tcp", cfg.SSE.Admin)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("edge admin listen %s: %w", cfg.SSE.Admin, err)
		}
		amux := http.NewServeMux()
		for _, p := range []string{"/metrics", "/_ssekafka/metrics"} {
			amux.Handle(p, metrics)
		}
		for _, p := range []string{"/health", "/_ssekafka/health"} {
			amux.Handle(p, health)
		}
		amux.Handle("/_ssekafka/ready", e.ReadyHandler())
		amux.Handle("/_ssekafka/drain", drainHandler(time.Duration(cfg.SSE.DrainWindow), drainReq))
		var token string
		if cfg.SSE.AdminToken.set() {
			if token, err = cfg.SSE.AdminToken.value(); err != nil {
				_ = ln.Close()
				_ = aln.Close()
				return fmt.Errorf("sse.adminToken (%v): %w", cfg.SSE.AdminToken, err)
			}
		}
		admin = &http.Server{Handler: adminGuard(amux, token, adminRefusals, log), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { _ = admin.Serve(aln) }()
		defer admin.Close()
		log.Info("edge admin serving", "admin", aln.Addr().String())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn), TLSConfig: tlsCfg}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- e.Serve(ln, srv) }()
	select {
	case err := <-errc:
		return fmt.Errorf("edge http: %w", err)
	case <-ctx.Done():
	case <-drain:
		drainEdge(ctx, e, time.Duration(cfg.SSE.DrainWindow), log)
	case window := <-drainReq:
		drainEdge(ctx, e, window, log)
	}
	e.Close() // ends the streams, so that Shutdown does not wait on them
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// drainEdge drains e over window, for at most window+drainGrace or until
// ctx ends.
func drainEdge(ctx context.Context, e *edge.Edge, window time.Duration, log *slog.Logger) {
	dctx, cancel := context.WithTimeout(ctx, window+drainGrace)
	defer cancel()
	t0 := time.Now()
	if err := e.Drain(dctx, window); err != nil {
		log.Warn("drain ended with streams left; closing them", "err", err, "took", time.Since(t0))
		return
	}
	log.Info("edge drained", "took", time.Since(t0))
}
