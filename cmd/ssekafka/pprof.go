package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"
)

// servePprof serves Go's profiles (/debug/pprof/) on addr until ctx ends. It
// is a listener of its own, never the public SSE port.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(ln) }()
	log.Info("pprof serving", "addr", ln.Addr().String())
	return nil
}

// setContentionProfiles turns on the mutex and block profiles, which the
// runtime leaves empty by default: 1 in mutexFraction contention events and
// one blocking event per blockRate ns blocked are sampled. Both cost time on
// every contended lock or blocking channel operation, so they are off unless
// asked for, and only with a pprof listener to read them from.
func setContentionProfiles(pprofAddr string, mutexFraction, blockRate int) error {
	if mutexFraction < 0 || blockRate < 0 {
		return errors.New("--pprof-mutex and --pprof-block: must be 0 (off) or more")
	}
	if mutexFraction == 0 && blockRate == 0 {
		return nil
	}
	if pprofAddr == "" {
		return errors.New("--pprof-mutex and --pprof-block need --pprof ADDR to serve the profiles")
	}
	runtime.SetMutexProfileFraction(mutexFraction)
	runtime.SetBlockProfileRate(blockRate)
	return nil
}
