package main

import (
	"fmt"
	"net"
	"strconv"
)

// The Kafka side of a zilla.yaml: the cache client and server, the Kafka
// client and its tcp client. Each binding is read on its own.

func (t *zillaTranslation) kafkaCacheClient(name string) error {
	if t.z.Bindings[name].Options.Kind != 0 {
		return fmt.Errorf("%s: not supported", bindingField(name, "options"))
	}
	return nil
}

func (t *zillaTranslation) kafkaCacheServer(name string) error {
	b := t.z.Bindings[name]
	var o zillaCacheServerOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	t.cfg.Kafka.Bootstrap = append(t.cfg.Kafka.Bootstrap, o.Bootstrap...)
	t.origin["kafka.bootstrap"] = "bindings." + name + ".options.bootstrap"
	return nil
}

func (t *zillaTranslation) kafkaClient(name string) error {
	b := t.z.Bindings[name]
	var o zillaKafkaClientOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if len(o.Servers) > 0 {
		t.cfg.Kafka.Brokers = o.Servers
		t.origin["kafka.brokers"] = "bindings." + name + ".options.servers"
	}
	return nil
}

// tcpClient gives Kafka's bootstrap servers when the kafka client names none.
func (t *zillaTranslation) tcpClient(name string) error {
	b := t.z.Bindings[name]
	var o zillaTCPOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
	}
	if o.Host == "" {
		return nil
	}
	ports, err := zillaPorts(&o.Port)
	if err != nil || len(ports) != 1 {
		return fmt.Errorf("%s: want one port", bindingField(name, "options.port"))
	}
	if _, set := t.origin["kafka.brokers"]; !set {
		t.cfg.Kafka.Brokers = []string{net.JoinHostPort(o.Host, strconv.Itoa(ports[0]))}
		t.origin["kafka.brokers"] = "bindings." + name + ".options"
	}
	return nil
}
