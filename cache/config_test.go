package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Zero means the documented default; an invalid value is an error naming
// the field, never replaced by the default.
func TestConfigValidation(t *testing.T) {
	base := func() Config { return Config{Brokers: []string{"127.0.0.1:1"}, NATS: &nats.Conn{}} }
	cfg := base()
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.TombstoneHorizon != 24*time.Hour || cfg.MaxPageBytes != 1<<20 || cfg.CatchUpWait != 10*time.Second ||
		cfg.MaxBytes != 256<<20 || cfg.HeadInterval != time.Second || cfg.TopicCheckInterval != 30*time.Second ||
		cfg.MaxConcurrentRequests != 256 || cfg.SubjectPrefix != "ssekafka" || cfg.Ownership == nil || cfg.Logger == nil {
		t.Fatalf("defaults: %+v", cfg)
	}
	cfg = base()
	cfg.MaxBytes = 1 << 20
	if err := cfg.setDefaults(); err != nil || cfg.MaxBytes != 1<<20 {
		t.Fatalf("MaxBytes 1 MiB: %v, %d", err, cfg.MaxBytes)
	}
	for _, tc := range []struct {
		field string
		set   func(*Config)
	}{
		{"Brokers", func(c *Config) { c.Brokers = nil }},
		{"NATS", func(c *Config) { c.NATS = nil }},
		{"Bootstrap", func(c *Config) { c.Bootstrap = []string{"a b"} }},
		{"SubjectPrefix", func(c *Config) { c.SubjectPrefix = "a.>" }},
		{"TombstoneHorizon", func(c *Config) { c.TombstoneHorizon = -time.Second }},
		{"CatchUpWait", func(c *Config) { c.CatchUpWait = -1 }},
		{"HeadInterval", func(c *Config) { c.HeadInterval = -1 }},
		{"TopicCheckInterval", func(c *Config) { c.TopicCheckInterval = -time.Minute }},
		{"MaxPageBytes", func(c *Config) { c.MaxPageBytes = -1 }},
		{"MaxConcurrentRequests", func(c *Config) { c.MaxConcurrentRequests = -5 }},
		{"MaxBytes", func(c *Config) { c.MaxBytes = -1 }},
		{"MaxBytes", func(c *Config) { c.MaxBytes = 1<<20 - 1 }},
	} {
		cfg := base()
		tc.set(&cfg)
		err := cfg.setDefaults()
		if err == nil || !strings.Contains(err.Error(), "cache config: "+tc.field) {
			t.Errorf("%s: error %v, want one naming the field", tc.field, err)
		}
	}
}
