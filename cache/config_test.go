package cache

import (
	"errors"
	"reflect"
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

// DefaultConfig is what New gives a zero Config, and it is valid.
func TestDefaultConfigIsWhatNewFills(t *testing.T) {
	d := DefaultConfig()
	d.Brokers = []string{"127.0.0.1:1"}
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	filled := Config{Brokers: d.Brokers}.WithDefaults()
	d.Logger, filled.Logger = nil, nil
	if !reflect.DeepEqual(d, filled) {
		t.Fatalf("DefaultConfig %+v\nWithDefaults(Config{}) %+v", d, filled)
	}
	if c := (Config{Bootstrap: make([]string, 1200)}).WithDefaults(); c.MaxTopics != 1200 {
		t.Errorf("MaxTopics %d with 1200 bootstrap topics", c.MaxTopics)
	}
}

// Each row of the validation table: a bad value is a *ConfigError naming
// the field and saying what it must be; Validate needs no NATS.
func TestConfigValidationTable(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Brokers = nil }, "Brokers: at least one broker is required"},
		{func(c *Config) { c.Brokers = []string{"a:1", "b 2"} }, `Brokers[1]: must be a broker address (host:port), not "b 2"`},
		{func(c *Config) { c.Bootstrap = []string{"ok", "a b"} }, "Bootstrap[1]: "},
		{func(c *Config) { c.SubjectPrefix = "a b" }, `SubjectPrefix: must be a NATS subject prefix (no spaces, '*' or '>'), not "a b"`},
		{func(c *Config) { c.TombstoneHorizon = -time.Second }, "TombstoneHorizon: must not be negative (0: the default, 24h0m0s), not -1s"},
		{func(c *Config) { c.MaxPageBytes = -1 }, "MaxPageBytes: must not be negative (0: the default, 1 MiB), not -1"},
		{func(c *Config) { c.CatchUpWait = -1 }, "CatchUpWait: must not be negative"},
		{func(c *Config) { c.MaxBytes = 1<<20 - 1 }, "MaxBytes: at least 1048576 (1 MiB), or 0 for the default (256 MiB), not 1048575"},
		{func(c *Config) { c.MaxBytes = -1 }, "MaxBytes: at least 1048576"},
		{func(c *Config) { c.ApartBytes = -1 }, "ApartBytes: must not be negative (0: the default, 64 MiB), not -1"},
		{func(c *Config) { c.HeadInterval = -1 }, "HeadInterval: must not be negative"},
		{func(c *Config) { c.TopicCheckInterval = -time.Minute }, "TopicCheckInterval: must not be negative"},
		{func(c *Config) { c.MaxTopics = -1 }, "MaxTopics: must not be negative (0: the default, 1000, or more for Bootstrap), not -1"},
		{func(c *Config) { c.Bootstrap, c.MaxTopics = []string{"a", "b", "c"}, 2 }, "MaxTopics: must be 0 (the default, 1000, or more for Bootstrap) or at least one per topic of Bootstrap (3), not 2"},
		{func(c *Config) { c.TopicIdle = -1 }, "TopicIdle: must not be negative"},
		{func(c *Config) { c.MaxConcurrentRequests = -5 }, "MaxConcurrentRequests: must not be negative (0: the default, 256), not -5"},
	} {
		c := Config{Brokers: []string{"127.0.0.1:1"}}
		tc.set(&c)
		err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "cache config: "+tc.want) {
			t.Errorf("error %v, want %q", err, "cache config: "+tc.want)
			continue
		}
		if field, _, _ := strings.Cut(tc.want, ":"); ce.Field != field {
			t.Errorf("%s: ConfigError.Field %q", tc.want, ce.Field)
		}
	}
}
