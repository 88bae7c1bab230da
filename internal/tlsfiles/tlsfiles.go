// Package tlsfiles builds TLS configurations from PEM files, for the
// connections to Kafka and NATS (client side) and the edge's listener
// (server side, with the certificate read again when its files change, so
// a renewed certificate needs no restart).
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Client is a client's TLS: the CA to trust (empty: the system's), a
// client certificate and key (both or neither) and the server name to
// expect (empty: the host dialled).
type Client struct {
	CA, Cert, Key, ServerName string
}

// Config reads the files and returns the TLS configuration.
func (c Client) Config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca: %s holds no PEM certificate", c.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.Cert != "" && c.Key != "":
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	case c.Cert != "" || c.Key != "":
		return nil, errors.New("cert and key: give both or neither")
	}
	return cfg, nil
}

// Reloader serves a certificate read from cert and key, and reads them
// again when either file's modification time changes (checked at most
// once a second, on a handshake). A new pair that does not load is logged
// and the old one kept.
type Reloader struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

// NewReloader loads the pair once; it fails if it cannot.
func NewReloader(cert, key string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{cert: cert, key: key, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reloader) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, p := range []string{r.cert, r.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return s, err
		}
		s[i] = fi.ModTime()
	}
	return s, nil
}

// load reads the pair; the caller holds mu (or is NewReloader).
func (r *Reloader) load() error {
	stamp, err := r.stamps()
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(r.cert, r.key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	r.current, r.stamp = &cert, stamp
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		if stamp, err := r.stamps(); err == nil && stamp != r.stamp {
			if err := r.load(); err != nil {
				r.log.Warn("tls certificate changed but does not load; keeping the old one", "cert", r.cert, "err", err)
				r.stamp = stamp // do not try again until the files change again
			} else {
				r.log.Info("tls certificate reloaded", "cert", r.cert)
			}
		}
	}
	return r.current, nil
}

// ServerConfig is a listener's TLS serving r's certificate, with ALPN h2
// then http/1.1 (net/http serves HTTP/2 only when NextProtos lists h2).
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}
