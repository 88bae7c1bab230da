package main

import (
	"encoding/json"
	"io"
	"time"

	"github.com/hashicorp/memberlist"
	"go.yaml.in/yaml/v3"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
)

// printEffective writes cfg as the edge and the cache will use it (validate
// --print): every default of theirs filled in, -1 and "off" where a field
// is off, and nothing that may be a secret. The file never holds one
// (adminToken, passwords and tokens are {file: PATH} or {env: NAME}, shown
// as such and never read here); a password or token in nats.url and the
// private members of inline JWKs (an HMAC key's k, an RSA or EC key's d, p,
// q, ...) are printed as REDACTED.
func printEffective(w io.Writer, cfg *config) error {
	var doc yaml.Node
	if err := doc.Encode(cfg.effective()); err != nil {
		return err
	}
	prune(&doc)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	return enc.Close()
}

// prune drops the mapping entries that say nothing (null, {}, []): a
// field left out of the YAML has the same value. An empty string stays: a
// filter's key "" is not no key.
func prune(n *yaml.Node) {
	for _, c := range n.Content {
		prune(c)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		if v := n.Content[i+1]; !empty(v) {
			kept = append(kept, n.Content[i], v)
		}
	}
	n.Content = kept
}

func empty(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		return len(n.Content) == 0
	case yaml.ScalarNode:
		return n.Tag == "!!null"
	}
	return false
}

// effective is cfg with the libraries' defaults filled in and secrets
// redacted (printEffective).
func (cfg *config) effective() *config {
	e := *cfg
	ec, cc := cfg.edgeConfig().WithDefaults(), cfg.cacheConfig().WithDefaults()
	e.SSE.setFrom(ec)
	e.Cache.setFrom(cc)
	e.NATS.Prefix = ec.SubjectPrefix
	e.NATS.URL = redactURL(cfg.NATS.URL)
	e.Guards = redactedGuards(cfg.Guards)
	lan := memberlist.DefaultLANConfig() // membership's where zero
	if e.Cluster.ProbeInterval == 0 {
		e.Cluster.ProbeInterval = lan.ProbeInterval
	}
	if e.Cluster.ProbeTimeout == 0 {
		e.Cluster.ProbeTimeout = lan.ProbeTimeout
	}
	if e.Cluster.SuspicionMult == 0 {
		e.Cluster.SuspicionMult = lan.SuspicionMult
	}
	return &e
}

// setFrom sets the sse fields the edge reads to c's values (edgeConfig
// reversed).
func (s *sseConfig) setFrom(c edge.Config) {
	s.Retry, s.KeepAlive = 0, 0 // edge.Off: retry:0, no keep-alives
	if c.Retry != edge.Off {
		s.Retry = int(c.Retry / time.Millisecond)
	}
	if c.KeepAlive != edge.Off {
		s.KeepAlive = offDuration(c.KeepAlive)
	}
	s.RetryMax = int(c.RetryMax / time.Millisecond)
	s.Ready = !c.NoReady
	s.MaxQueue, s.MaxQueueBytes, s.Writers = c.MaxQueue, c.MaxQueueBytes, c.Writers
	s.Compression = codingList(c.Compression)
	s.SetupConcurrency, s.SetupQueue = c.SetupConcurrency, c.SetupQueue
	s.SetupPerAddress, s.SetupQueuePerAddress = c.SetupPerAddress, c.SetupQueuePerAddress
	s.StateWriteTimeout, s.StateMinRate = c.StateWriteTimeout, c.StateMinRate
	s.MaxConnections, s.MaxConnectionsPerIP = c.MaxConnections, c.MaxConnectionsPerIP
	s.ReleaseAfterBurst = c.ReleaseAfterBurst
	s.ResumeRingBytes, s.ResumeRingAge, s.FeedMemoryBytes = c.ResumeRingBytes, c.ResumeRingAge, c.FeedMemoryBytes
	k := c.KeyReads
	s.KeyReads = keyReadsConfig{MinRate: k.MinRate, MaxBytes: k.MaxBytes, MaxBytesPerIP: k.MaxBytesPerIP,
		RatePerIP: k.RatePerIP, CacheRequestsPerIP: k.CacheRequestsPerIP}
}

// setFrom sets the cache section to c's values (cacheConfig reversed).
func (cc *cacheConfig) setFrom(c cache.Config) {
	cc.TombstoneHorizon, cc.MaxPageBytes, cc.MaxBytes, cc.ApartBytes = c.TombstoneHorizon, c.MaxPageBytes, c.MaxBytes, c.ApartBytes
	cc.MaxTopics, cc.TopicIdle = c.MaxTopics, c.TopicIdle
}

// privateJWKMembers are the members of a JWK that are secret (RFC 7518
// section 6): an HMAC key's k; an RSA or EC private key's d, p, q, dp,
// dq, qi, oth.
var privateJWKMembers = []string{"k", "d", "p", "q", "dp", "dq", "qi", "oth"}

// redactedGuards is gs with the private members of inline JWKs REDACTED.
func redactedGuards(gs map[string]guardConfig) map[string]guardConfig {
	if gs == nil {
		return nil
	}
	out := make(map[string]guardConfig, len(gs))
	for name, g := range gs {
		keys := make([]json.RawMessage, 0, len(g.Options.Keys.inline))
		for _, raw := range g.Options.Keys.inline {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				m = map[string]any{"unreadable": "REDACTED"}
			}
			for _, k := range privateJWKMembers {
				if _, ok := m[k]; ok {
					m[k] = "REDACTED"
				}
			}
			b, _ := json.Marshal(m) // a map of JSON values
			keys = append(keys, b)
		}
		g.Options.Keys.inline = keys
		out[name] = g
	}
	return out
}
