// Readiness: whether a load balancer should send this edge traffic.

package edge

import (
	"context"
	"net/http"
	"time"
)

// Ready reports whether the edge should get traffic, and if not why: it is
// not while it drains, while its NATS connection is down, or while the
// cache tier does not answer a probe (a topics request, which every cache
// node answers). The first call probes at once and starts a probe every
// ReadyProbe until Close.
func (e *Edge) Ready() (bool, string) {
	if e.draining.Load() {
		return false, "draining"
	}
	if !e.cfg.NATS.IsConnected() {
		return false, "nats disconnected"
	}
	e.probe.Do(func() {
		e.probeCache()
		go e.probeLoop()
	})
	if !e.cacheOK.Load() {
		return false, "cache tier does not answer"
	}
	return true, ""
}

func (e *Edge) probeLoop() {
	tick := time.NewTicker(e.cfg.ReadyProbe)
	defer tick.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-tick.C:
			e.probeCache()
		}
	}
}

// probeCache asks the cache tier for its topics, bounded by PageTimeout.
func (e *Edge) probeCache() {
	ctx, cancel := context.WithTimeout(context.Background(), min(e.cfg.PageTimeout, e.cfg.ReadyProbe))
	defer cancel()
	_, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.Topics(), nil)
	if err != nil {
		e.metrics.probeFailures.Inc()
		if e.cacheOK.Load() {
			e.log.Warn("cache tier does not answer the readiness probe", "err", err)
		}
	}
	e.cacheOK.Store(err == nil)
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
