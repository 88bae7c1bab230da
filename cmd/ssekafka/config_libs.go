package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/confcheck"
)

// The YAML mapped onto the libraries' configs. cmd does not check again
// what edge.Config.Validate and cache.Config.Validate check: it runs them
// at validate time and names their fields as the YAML does (edgeFields,
// cacheFields), with the line.

// edgeConfig is the config as edge.Config, without what serveEdge adds
// when it starts (the NATS connection and identity, guards, logger,
// registerer). A zero field is the edge's default; -1 is edge.Off.
func (cfg *config) edgeConfig() edge.Config {
	s := &cfg.SSE
	return edge.Config{
		SubjectPrefix:        cfg.NATS.Prefix,
		Routes:               cfg.routes,
		Retry:                s.retry(),
		RetryMax:             time.Duration(s.RetryMax) * time.Millisecond,
		KeepAlive:            s.keepAlive(),
		NoReady:              !s.Ready,
		MaxQueue:             s.MaxQueue,
		MaxQueueBytes:        s.MaxQueueBytes,
		Writers:              s.Writers,
		Compression:          []string(s.Compression),
		SetupConcurrency:     s.SetupConcurrency,
		SetupQueue:           s.SetupQueue,
		SetupPerAddress:      s.SetupPerAddress,
		SetupQueuePerAddress: s.SetupQueuePerAddress,
		StateWriteTimeout:    s.StateWriteTimeout,
		StateMinRate:         s.StateMinRate,
		MaxConnections:       s.MaxConnections,
		MaxConnectionsPerIP:  s.MaxConnectionsPerIP,
		TrustedProxies:       s.trustedProxies,
		ReleaseAfterBurst:    s.ReleaseAfterBurst,
		CORS:                 s.CORS.edge(),
		ResumeRingBytes:      s.ResumeRingBytes,
		ResumeRingAge:        s.ResumeRingAge,
		KeyReads:             s.KeyReads.edge(),
		FeedMemoryBytes:      s.FeedMemoryBytes,
	}
}

// edgeFields names edge.Config's fields as the YAML does.
var edgeFields = map[string]string{
	"SubjectPrefix":               "nats.prefix",
	"Retry":                       "sse.retry",
	"RetryMax":                    "sse.retryMax",
	"KeepAlive":                   "sse.keepalive",
	"MaxQueue":                    "sse.maxQueue",
	"MaxQueueBytes":               "sse.maxQueueBytes",
	"Writers":                     "sse.writers",
	"Compression":                 "sse.compression",
	"SetupConcurrency":            "sse.setupConcurrency",
	"SetupQueue":                  "sse.setupQueue",
	"SetupPerAddress":             "sse.setupPerAddress",
	"SetupQueuePerAddress":        "sse.setupQueuePerAddress",
	"StateWriteTimeout":           "sse.stateWriteTimeout",
	"StateMinRate":                "sse.stateMinRate",
	"MaxConnections":              "sse.maxConnections",
	"MaxConnectionsPerIP":         "sse.maxConnectionsPerIP",
	"TrustedProxies":              "sse.trustedProxies",
	"ReleaseAfterBurst":           "sse.releaseAfterBurst",
	"ResumeRingBytes":             "sse.resumeRingBytes",
	"ResumeRingAge":               "sse.resumeRingAge",
	"FeedMemoryBytes":             "sse.feedMemoryBytes",
	"KeyReads.MinRate":            "sse.keyReads.minRate",
	"KeyReads.MaxBytes":           "sse.keyReads.maxBytes",
	"KeyReads.MaxBytesPerIP":      "sse.keyReads.maxBytesPerIP",
	"KeyReads.RatePerIP":          "sse.keyReads.ratePerIP",
	"KeyReads.CacheRequestsPerIP": "sse.keyReads.cacheRequestsPerIP",
}

// cacheConfig is the config as cache.Config, without what startCache adds
// (the NATS connection, ownership, Kafka options, logger, registerer). A
// zero field is the cache's default.
func (cfg *config) cacheConfig() cache.Config {
	return cache.Config{
		Brokers:          cfg.Kafka.Brokers,
		SubjectPrefix:    cfg.NATS.Prefix,
		Bootstrap:        cfg.Kafka.Bootstrap,
		TombstoneHorizon: cfg.Cache.TombstoneHorizon,
		MaxPageBytes:     cfg.Cache.MaxPageBytes,
		MaxBytes:         cfg.Cache.MaxBytes,
		ApartBytes:       cfg.Cache.ApartBytes,
		MaxTopics:        cfg.Cache.MaxTopics,
		TopicIdle:        cfg.Cache.TopicIdle,
	}
}

// cacheFields names cache.Config's fields as the YAML does.
var cacheFields = map[string]string{
	"Brokers":          "kafka.brokers",
	"Bootstrap":        "kafka.bootstrap",
	"SubjectPrefix":    "nats.prefix",
	"TombstoneHorizon": "cache.tombstoneHorizon",
	"MaxPageBytes":     "cache.maxPageBytes",
	"MaxBytes":         "cache.maxBytes",
	"ApartBytes":       "cache.apartBytes",
	"MaxTopics":        "cache.maxTopics",
	"TopicIdle":        "cache.topicIdle",
}

// validateLibraries runs the edge's and the cache's validation on what the
// YAML gives them.
func (cfg *config) validateLibraries(at func(string) string) error {
	if err := cfg.edgeConfig().Validate(); err != nil {
		return yamlError(err, edgeFields, at)
	}
	if err := cfg.cacheConfig().Validate(); err != nil {
		return yamlError(err, cacheFields, at)
	}
	return nil
}

// yamlError is a library's *confcheck.Error with its fields named as the
// YAML names them (names), at their line.
func yamlError(err error, names map[string]string, at func(string) string) error {
	var ce *confcheck.Error
	if !errors.As(err, &ce) {
		return err
	}
	name := func(field string) string {
		base, index, indexed := strings.Cut(field, "[")
		if n, ok := names[base]; ok {
			if indexed {
				return n + "[" + index
			}
			return n
		}
		return field
	}
	return fmt.Errorf("%s: %s", at(name(ce.Field)), ce.Explain(name))
}
