// Readiness: whether a load balancer should send this edge traffic.

package edge

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/proto"
)

// Ready reports whether the edge should get traffic, and if not why: it is
// not while it drains, while its NATS connection is down, or while the
// cache tier does not answer a probe (a topics request, which every cache
// node answers). The first call probes at once and starts a probe every
// ReadyProbe until Close.
func (e *Edge) Ready() (bool, string) {
	if e.hub.Draining() {
		return false, "draining"
	}
	if !e.cfg.NATS.IsConnected() {
		return false, "nats disconnected"
	}
	if !e.probes.answered() {
		return false, "cache tier does not answer"
	}
	return true, ""
}

// prober probes the cache tier for Ready: once at the first call, then
// every interval until done is closed.
type prober struct {
	nc       *nats.Conn
	subject  string        // the topics request
	timeout  time.Duration // per probe
	interval time.Duration
	done     <-chan struct{}
	failures prometheus.Counter
	log      *slog.Logger

	once sync.Once
	ok   atomic.Bool // the last probe was answered
}

func newProber(e *Edge) *prober {
	return &prober{nc: e.cfg.NATS, subject: proto.Subjects{Prefix: e.cfg.SubjectPrefix}.Topics(), timeout: min(e.cfg.PageTimeout, e.cfg.ReadyProbe),
		interval: e.cfg.ReadyProbe, done: e.done, failures: e.metrics.ProbeFailures, log: e.log}
}

// answered reports whether the last probe was answered, starting the
// probes on the first call.
func (p *prober) answered() bool {
	p.once.Do(func() {
		p.probe()
		go p.loop()
	})
	return p.ok.Load()
}

func (p *prober) loop() {
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
			p.probe()
		}
	}
}

// probe asks the cache tier for its topics, bounded by timeout.
func (p *prober) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	_, err := p.nc.RequestWithContext(ctx, p.subject, nil)
	if err != nil {
		p.failures.Inc()
		if p.ok.Load() {
			p.log.Warn("cache tier does not answer the readiness probe", "err", err)
		}
	}
	p.ok.Store(err == nil)
}

// ReadyHandler serves Ready: 200 "ready", or 503 with the reason.
func (e *Edge) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		if ok, why := e.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + why + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}
