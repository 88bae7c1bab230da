package main

import (
	"fmt"
	"net"
	"strconv"
)

// The Kafka side of a zilla.yaml: the cache client and server, the Kafka
// client and its tcp client. Each binding is read on its own.

// kafkaCacheClient takes options.topics' names (nothing to do here);
// their key and value models are refused by checkFields.
func (t *zillaTranslation) kafkaCacheClient(name string) error {
	b := t.z.Bindings[name]
	var o zillaCacheClientOptions
	if err := decodeStrict(&b.Options, &o, "options"); err != nil {
		return fmt.Errorf("binding %q %w", name, err)
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
	for i, topic := range o.Topics {
		field := fmt.Sprintf("options.topics[%d]", i)
		switch {
		case topic.DefaultOffset != "" && topic.DefaultOffset != "historical":
			// historical is what ssekafka does: a new client gets the
			// topic's compacted state, then what comes live.
			return fmt.Errorf("%s: %q is not supported (a new client gets the topic's current state, then live records, as historical; leave it out)", bindingField(name, field+".defaultOffset"), topic.DefaultOffset)
		case topic.DeltaType != "" && topic.DeltaType != "none":
			return fmt.Errorf("%s: %q is not supported (records are sent whole)", bindingField(name, field+".deltaType"), topic.DeltaType)
		}
	}
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
