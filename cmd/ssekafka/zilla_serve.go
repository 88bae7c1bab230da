package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// zillaServe is what a zilla.yaml serves besides its routes: which paths
// the http binding sends to the streams and which to files, in its route
// order, and the tls binding's key.
type zillaServe struct {
	paths []zillaPath
	tls   *zillaTLS
}

// zillaPath is one route of the http binding.
type zillaPath struct {
	re    *regexp.Regexp // nil: any path
	files *zillaFiles    // nil: the streams
}

// zillaFiles serves a filesystem binding's location read-only: files only
// (a directory's index.html, never a listing), nothing outside it (os.Root
// refuses .. and links that lead out).
type zillaFiles struct {
	field    string // the binding's options.location, for errors
	location string
	root     *os.Root
}

// zillaTLS is the edge's TLS that a tls binding and its vault say.
type zillaTLS struct {
	field string // the vault's options.keys, for errors
	keys  zillaStore
	sni   []string // empty: any server name
	alpn  []string
}

// resolve makes the store and location paths relative to dir (the config
// file's directory) absolute, as Zilla reads them.
func (s *zillaServe) resolve(dir string) {
	if s == nil {
		return
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for _, p := range s.paths {
		if p.files != nil {
			p.files.location = abs(p.files.location)
		}
	}
	if s.tls != nil {
		s.tls.keys.Store = abs(s.tls.keys.Store)
	}
}

// handler is what serves the edge's listener at /: the http binding's
// routes in order, each to the streams or to its files; other paths 404.
// Without a zilla.yaml, the streams.
func (s *zillaServe) handler(streams http.Handler, log *slog.Logger) http.Handler {
	if s == nil || len(s.paths) == 0 {
		return streams
	}
	for _, p := range s.paths {
		if f := p.files; f != nil && f.root == nil {
			root, err := os.OpenRoot(f.location)
			if err != nil {
				log.Warn("zilla: files not served: their paths get 404", "field", f.field, "err", err)
				continue
			}
			f.root = root
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range s.paths {
			if p.re != nil && !p.re.MatchString(r.URL.Path) {
				continue
			}
			if p.files == nil {
				streams.ServeHTTP(w, r)
			} else {
				p.files.ServeHTTP(w, r)
			}
			return
		}
		http.NotFound(w, r)
	})
}

func (f *zillaFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if f.root == nil {
		http.NotFound(w, r)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	file, st, ok := f.open(name)
	if !ok {
		http.NotFound(w, r)
		return
	}
	defer file.Close()
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, st.Name(), st.ModTime(), file)
}

// open opens a regular file, or a directory's index.html.
func (f *zillaFiles) open(name string) (*os.File, os.FileInfo, bool) {
	if name == "" {
		name = "."
	}
	for _, n := range []string{name, path.Join(name, "index.html")} {
		file, err := f.root.Open(n)
		if err != nil {
			return nil, nil, false
		}
		st, err := file.Stat()
		if err == nil && st.Mode().IsRegular() {
			return file, st, true
		}
		_ = file.Close()
		if err != nil || !st.IsDir() {
			return nil, nil, false
		}
	}
	return nil, nil, false
}

// edgeTLS is the tls binding's TLS when sse.tls gave none (have).
func (s *zillaServe) edgeTLS(have *tls.Config) (*tls.Config, error) {
	if have != nil || s == nil || s.tls == nil {
		return have, nil
	}
	cert, err := s.tls.keys.certificate()
	if err != nil {
		return nil, fmt.Errorf("zilla: %s: %w", s.tls.field, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: s.tls.alpn}
	if sni := s.tls.sni; len(sni) > 0 {
		c.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			if h.ServerName != "" && !slices.Contains(sni, h.ServerName) {
				return nil, fmt.Errorf("server name %q is not served (sni)", h.ServerName)
			}
			return nil, nil
		}
	}
	return c, nil
}

// certificate reads the store's one key and its certificate chain.
func (s *zillaStore) certificate() (tls.Certificate, error) {
	f, err := os.Open(s.Store)
	if err != nil {
		return tls.Certificate{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 16<<20))
	if err != nil {
		return tls.Certificate{}, err
	}
	if s.Type == "pem" {
		return tls.X509KeyPair(data, data)
	}
	key, cert, chain, err := pkcs12.DecodeChain(data, s.Password)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", s.Store, err)
	}
	if key == nil || cert == nil {
		return tls.Certificate{}, errors.New(s.Store + ": no key with its certificate")
	}
	out := tls.Certificate{PrivateKey: key, Leaf: cert, Certificate: [][]byte{cert.Raw}}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}
