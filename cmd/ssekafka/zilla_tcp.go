package main

import (
	"fmt"
	"net"
	"slices"
	"strconv"
)

// The listener side of a zilla.yaml: the tcp server gives sse.listen, a tls
// server behind it the edge's TLS (its keys from a vault, its sni and alpn).

type zillaTLSOptions struct {
	Keys []string `yaml:"keys"`
	SNI  []string `yaml:"sni"`
	ALPN []string `yaml:"alpn"`
}

func (t *zillaTranslation) tcpServer(name string) error {
	b := t.z.Bindings[name]
	var o zillaTCPOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	ports, err := zillaPorts(&o.Port)
	if err != nil || len(ports) != 1 {
		return fmt.Errorf("%s: want one port (ssekafka listens on one address)", bindingField(name, "options.port"))
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1" // our default; Zilla's examples write host: 0.0.0.0
	}
	t.cfg.SSE.Listen = net.JoinHostPort(host, strconv.Itoa(ports[0]))
	t.origin["sse.listen"] = "bindings." + name + ".options.port"
	for i, r := range b.Routes {
		if err := t.tcpRoute(name, i, r, ports[0]); err != nil {
			return err
		}
	}
	return nil
}

func (t *zillaTranslation) tcpRoute(name string, i int, r zillaRoute, port int) error {
	for j := range r.When {
		var w zillaTCPWhen
		if err := decodeStrict(&r.When[j], &w, fmt.Sprintf("routes[%d].when[%d]", i, j)); err != nil {
			return fmt.Errorf("binding %q %w", name, err)
		}
		if w.Cidr != "" {
			return fmt.Errorf("%s: not supported", bindingField(name, fmt.Sprintf("routes[%d].when[%d].cidr", i, j)))
		}
		if w.Port.Kind != 0 {
			if p, err := zillaPorts(&w.Port); err != nil || len(p) != 1 || p[0] != port {
				return fmt.Errorf("%s: want the listen port %d", bindingField(name, fmt.Sprintf("routes[%d].when[%d].port", i, j)), port)
			}
		}
	}
	if len(r.Guarded) > 0 || r.With.Kind != 0 {
		return fmt.Errorf("%s: guarded and with are not supported on a tcp route", bindingField(name, fmt.Sprintf("routes[%d]", i)))
	}
	if _, err := t.binding(r.Exit, "tls", "server"); err == nil {
		t.scheme = "https"
		return nil
	}
	if _, err := t.binding(r.Exit, "http", "server"); err != nil {
		return fmt.Errorf("%s: %w (or a tls server)", bindingField(name, fmt.Sprintf("routes[%d].exit", i)), err)
	}
	return nil
}

// tlsServer maps a tls server binding onto the edge's TLS: the key of its
// vault's keys store, the server names it answers (sni) and the protocols
// it offers (alpn; h2 and http/1.1 by default).
func (t *zillaTranslation) tlsServer(name string) error {
	b := t.z.Bindings[name]
	var o zillaTLSOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if t.scheme != "https" {
		return fmt.Errorf("%s: no tcp server route leads here", bindingField(name, "type"))
	}
	v, ok := t.vault[b.Vault]
	if !ok || v.Keys == nil {
		return fmt.Errorf("%s: %q is no vault with keys (name a filesystem vault in vaults)", bindingField(name, "vault"), b.Vault)
	}
	if len(o.Keys) > 1 {
		return fmt.Errorf("%s: one key is supported, not %d", bindingField(name, "options.keys"), len(o.Keys))
	}
	alpn := o.ALPN
	if len(alpn) == 0 {
		alpn = []string{"h2", "http/1.1"}
	}
	for i, p := range alpn {
		if p != "h2" && p != "http/1.1" {
			return fmt.Errorf("%s: %q is not served (h2 or http/1.1)", bindingField(name, fmt.Sprintf("options.alpn[%d]", i)), p)
		}
	}
	exits := slices.DeleteFunc([]string{b.Exit}, func(s string) bool { return s == "" })
	for i, r := range b.Routes {
		if len(r.When) > 0 || len(r.Guarded) > 0 || r.With.Kind != 0 {
			return fmt.Errorf("%s: when, guarded and with are not supported on a tls route", bindingField(name, fmt.Sprintf("routes[%d]", i)))
		}
		exits = append(exits, r.Exit)
	}
	for _, exit := range exits {
		if _, err := t.binding(exit, "http", "server"); err != nil {
			return fmt.Errorf("%s: %w", bindingField(name, "exit"), err)
		}
	}
	t.serve.tls = &zillaTLS{field: "vaults." + b.Vault + ".options.keys", keys: *v.Keys, sni: o.SNI, alpn: alpn}
	return nil
}
