package edge

import (
	"errors"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestConfigDefaultsAndOff(t *testing.T) {
	c := Config{NATS: &nats.Conn{}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Retry != 2*time.Second || c.KeepAlive != 15*time.Second || c.RetryJitter != 0.2 || c.PageBytes != 256<<10 ||
		c.MaxQueue != 16384 || c.PageTimeout != 2*time.Second || c.RequestTimeout != 15*time.Second || c.NoReady ||
		c.ResumeRingBytes != 4<<20 || c.ResumeRingAge != time.Minute {
		t.Fatalf("defaults: %+v", c)
	}
	c = Config{NATS: &nats.Conn{}, Retry: Off, KeepAlive: Off, RetryJitter: Off}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	e := testEdge(t, c)
	if c.Retry != Off || c.KeepAlive != Off || e.hub.RetryMs() != 0 {
		t.Fatalf("Off not kept: %+v, retry %d", c, e.hub.RetryMs())
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for field, tweak := range map[string]func(*Config){
		"NATS":                 func(c *Config) { c.NATS = nil },
		"Retry":                func(c *Config) { c.Retry = -2 * time.Second },
		"Retry:":               func(c *Config) { c.Retry = 1500 * time.Microsecond },
		"RetryJitter":          func(c *Config) { c.RetryJitter = 1.5 },
		"RetryJitter:":         func(c *Config) { c.RetryJitter = -0.5 },
		"KeepAlive":            func(c *Config) { c.KeepAlive = -time.Second },
		"KeepAlive:":           func(c *Config) { c.KeepAlive = time.Nanosecond },
		"PageBytes":            func(c *Config) { c.PageBytes = -1 },
		"PageTimeout":          func(c *Config) { c.PageTimeout = -time.Second },
		"RequestTimeout":       func(c *Config) { c.RequestTimeout = -1 },
		"WriteTimeout":         func(c *Config) { c.WriteTimeout = -1 },
		"MaxQueue":             func(c *Config) { c.MaxQueue = -1 },
		"Writers":              func(c *Config) { c.Writers = 1025 },
		"FeedBuffer":           func(c *Config) { c.FeedBuffer = -5 },
		"ProbeInterval":        func(c *Config) { c.ProbeInterval = -1 },
		"FeedLinger":           func(c *Config) { c.FeedLinger = -1 },
		"SetupConcurrency":     func(c *Config) { c.SetupConcurrency = -1 },
		"SetupQueue":           func(c *Config) { c.SetupQueue = -1 },
		"ResumeRingBytes":      func(c *Config) { c.ResumeRingBytes = -2 },
		"ResumeRingAge":        func(c *Config) { c.ResumeRingAge = -time.Second },
		"RetryMax":             func(c *Config) { c.RetryMax = time.Second },
		"RetryMax:":            func(c *Config) { c.Retry, c.RetryMax = 20*time.Second, 30*time.Second },
		"ReadyProbe":           func(c *Config) { c.ReadyProbe = -1 },
		"MaxConnections":       func(c *Config) { c.MaxConnections = -1 },
		"MaxConnectionsPerIP":  func(c *Config) { c.MaxConnectionsPerIP = -2 },
		"SetupPerAddress":      func(c *Config) { c.SetupPerAddress = -2 },
		"SetupQueuePerAddress": func(c *Config) { c.SetupQueuePerAddress = -2 },
		"StateWriteTimeout":    func(c *Config) { c.StateWriteTimeout = -time.Second },
		"StateMinRate":         func(c *Config) { c.StateMinRate = -1 },
		"TrustedProxies[1]":    func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}} },
		"Compression":          func(c *Config) { c.Compression = []string{"deflate"} },
	} {
		c := Config{NATS: &nats.Conn{}}
		tweak(&c)
		err := c.setDefaults()
		if name := strings.TrimSuffix(field, ":"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming it", field, err)
		}
	}
}

// The default connection cap leaves files below the open-file limit.
func TestDefaultMaxConnectionsBelowFileLimit(t *testing.T) {
	c := Config{NATS: &nats.Conn{}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.MaxConnectionsPerIP != 1000 {
		t.Errorf("MaxConnectionsPerIP = %d, want 1000", c.MaxConnectionsPerIP)
	}
	limit, ok := openFileLimit()
	if !ok {
		t.Skip("no open-file limit here")
	}
	if limit = min(limit, 1<<24); c.MaxConnections < 1 || uint64(c.MaxConnections)+min(256, limit/2) > limit {
		t.Fatalf("MaxConnections = %d with RLIMIT_NOFILE %d, want room for 256 other files", c.MaxConnections, limit)
	}
	c = Config{NATS: &nats.Conn{}, MaxConnections: 7, MaxConnectionsPerIP: Off}
	if err := c.setDefaults(); err != nil || c.MaxConnections != 7 || c.MaxConnectionsPerIP != Off {
		t.Fatalf("set values not kept: %+v, %v", c, err)
	}
}

// The setup shares default to a quarter of the workers and 1024 waiting
// places per address, never more than the whole; Off is the whole.
func TestSetupSharesDefaults(t *testing.T) {
	for _, tc := range []struct {
		workers, queue, perAddr, perLine, perIP int
		wantAddr, wantLine                      int
	}{
		{0, 0, 0, 0, 0, 16, 1024},
		{2, 100, 0, 0, 0, 1, 100},
		{8, 0, Off, Off, 0, 8, 65536},
		{8, 0, 20, 10, 0, 8, 10},
		{0, 0, 0, 0, Off, 64, 65536}, // no cap per address: no share by default
		{0, 0, 4, 8, Off, 4, 8},
	} {
		c := Config{NATS: &nats.Conn{}, SetupConcurrency: tc.workers, SetupQueue: tc.queue, SetupPerAddress: tc.perAddr, SetupQueuePerAddress: tc.perLine, MaxConnectionsPerIP: tc.perIP}
		if err := c.setDefaults(); err != nil {
			t.Fatal(err)
		}
		if c.SetupPerAddress != tc.wantAddr || c.SetupQueuePerAddress != tc.wantLine {
			t.Errorf("%+v: SetupPerAddress %d, SetupQueuePerAddress %d, want %d, %d", tc, c.SetupPerAddress, c.SetupQueuePerAddress, tc.wantAddr, tc.wantLine)
		}
	}
}

// DefaultConfig is what New gives a zero Config: every number filled in,
// valid, and the same as WithDefaults of the zero Config.
func TestDefaultConfigIsWhatNewFills(t *testing.T) {
	d := DefaultConfig()
	if err := d.Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	filled := Config{}.WithDefaults()
	for _, c := range []*Config{&d, &filled} {
		if c.Now == nil || c.Logger == nil {
			t.Fatalf("Now or Logger not filled: %+v", c)
		}
		c.Now, c.Logger = nil, nil
	}
	if !reflect.DeepEqual(d, filled) {
		t.Fatalf("DefaultConfig %+v\nWithDefaults(Config{}) %+v", d, filled)
	}
	for _, v := range []reflect.Value{reflect.ValueOf(d), reflect.ValueOf(d.KeyReads)} {
		for i := range v.NumField() {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Int, reflect.Int64, reflect.Float64:
				if f.IsZero() {
					t.Errorf("DefaultConfig().%s is zero", v.Type().Field(i).Name)
				}
			}
		}
	}
	if c := (Config{SetupConcurrency: 256}).WithDefaults(); c.SetupPerAddress != 64 || c.RetryMax != 30*time.Second {
		t.Errorf("derived defaults do not follow: SetupPerAddress %d, RetryMax %v", c.SetupPerAddress, c.RetryMax)
	}
}

// Each row of the validation table: a bad value is a *ConfigError naming
// the field and saying what it must be; Validate needs no NATS.
func TestConfigValidationTable(t *testing.T) {
	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.Retry = -2 * time.Second }, "Retry: must be -1 (Off: retry:0), 0 (the default, 2s) or at least 1ms, not -2s"},
		{func(c *Config) { c.Retry = 1500 * time.Microsecond }, "Retry: must be whole milliseconds, not 1.5ms"},
		{func(c *Config) { c.RetryJitter = 1.5 }, "RetryJitter: must be at most 1, not 1.5"},
		{func(c *Config) { c.RetryJitter = math.NaN() }, "RetryJitter: must be -1 (Off: none), 0 (the default, 0.2) or more, not NaN"},
		{func(c *Config) { c.RetryMax = time.Second }, "RetryMax: must be 0 (the default, 30s, or twice Retry if more) or at least 2s, not 1s"},
		{func(c *Config) { c.Retry, c.RetryMax = 5*time.Second, 8*time.Second }, "RetryMax: must be 0 (the default, 30s, or twice Retry if more) or at least twice Retry (10s), not 8s"},
		{func(c *Config) { c.ReadyProbe = -1 }, "ReadyProbe: must not be negative (0: the default, 2s), not -1ns"},
		{func(c *Config) { c.KeepAlive = time.Microsecond }, "KeepAlive: must be -1 (Off: no comments), 0 (the default, 15s) or at least 1ms, not 1µs"},
		{func(c *Config) { c.PageBytes = 1<<30 + 1 }, "PageBytes: must be at most 1073741824, not 1073741825"},
		{func(c *Config) { c.PageBytes = -1 }, "PageBytes: must not be negative (0: the default, 256 KiB), not -1"},
		{func(c *Config) { c.PageTimeout = -time.Second }, "PageTimeout: must not be negative"},
		{func(c *Config) { c.RequestTimeout = -1 }, "RequestTimeout: must not be negative"},
		{func(c *Config) { c.WriteTimeout = -1 }, "WriteTimeout: must not be negative"},
		{func(c *Config) { c.MaxQueue = -3 }, "MaxQueue: must not be negative (0: the default, 16384), not -3"},
		{func(c *Config) { c.MaxQueueBytes = -1 }, "MaxQueueBytes: must not be negative (0: the default, 8 MiB)"},
		{func(c *Config) { c.FeedBuffer = 1<<24 + 1 }, "FeedBuffer: must be at most 16777216"},
		{func(c *Config) { c.Writers = -1 }, "Writers: must not be negative (0: the default, GOMAXPROCS-1), not -1"},
		{func(c *Config) { c.Writers = 1025 }, "Writers: must be at most 1024, not 1025"},
		{func(c *Config) { c.ProbeInterval = -1 }, "ProbeInterval: must not be negative"},
		{func(c *Config) { c.FeedLinger = -1 }, "FeedLinger: must not be negative"},
		{func(c *Config) { c.ResumeRingBytes = -2 }, "ResumeRingBytes: must be -1 (Off: no ring), 0 (the default, 4 MiB) or more, not -2"},
		{func(c *Config) { c.FeedMemoryBytes = 1000 }, "FeedMemoryBytes: must be -1 (Off: no bound), 0 (the default, 256 MiB) or at least 1048576, not 1000"},
		{func(c *Config) { c.ResumeRingAge = -time.Second }, "ResumeRingAge: must not be negative"},
		{func(c *Config) { c.SetupConcurrency = -1 }, "SetupConcurrency: must not be negative"},
		{func(c *Config) { c.SetupQueue = -1 }, "SetupQueue: must not be negative"},
		{func(c *Config) { c.SetupPerAddress = -2 }, "SetupPerAddress: must be -1 (Off: no share), 0 (the default, a quarter of SetupConcurrency, or no share where MaxConnectionsPerIP is Off) or more, not -2"},
		{func(c *Config) { c.SetupQueuePerAddress = -2 }, "SetupQueuePerAddress: must be -1 (Off: no share)"},
		{func(c *Config) { c.StateWriteTimeout = -1 }, "StateWriteTimeout: must not be negative"},
		{func(c *Config) { c.StateMinRate = -1 }, "StateMinRate: must not be negative"},
		{func(c *Config) { c.MaxConnections = -1 }, "MaxConnections: must not be negative (0: the default, the open-file limit less a tenth, at least 256), not -1"},
		{func(c *Config) { c.MaxConnectionsPerIP = -2 }, "MaxConnectionsPerIP: must be -1 (Off: no cap per address)"},
		{func(c *Config) { c.ReleaseAfterBurst = -2 }, "ReleaseAfterBurst: must be -1 (Off: never), 0 (the default, 1000) or more, not -2"},
		{func(c *Config) { c.KeyReads.MinRate = -2 }, "KeyReads.MinRate: must be -1 (Off: each write within WriteTimeout)"},
		{func(c *Config) { c.KeyReads.MaxBytes = -2 }, "KeyReads.MaxBytes: must be -1 (Off: none)"},
		{func(c *Config) { c.KeyReads.MaxBytesPerIP = -2 }, "KeyReads.MaxBytesPerIP: must be -1 (Off: none)"},
		{func(c *Config) { c.KeyReads.RatePerIP = -0.5 }, "KeyReads.RatePerIP: must be -1 (Off: none), 0 (the default, 100 a second) or more, not -0.5"},
		{func(c *Config) { c.KeyReads.CacheRequestsPerIP = math.Inf(1) }, "KeyReads.CacheRequestsPerIP: must be -1 (Off: none)"},
		{func(c *Config) { c.SubjectPrefix = "a.>" }, `SubjectPrefix: must be a NATS subject prefix (no spaces, '*' or '>'), not "a.>"`},
		{func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}} }, "TrustedProxies[1]: must be a valid prefix"},
		{func(c *Config) { c.Compression = []string{"gzip", "br"} }, "Compression: must list identity, gzip or zstd, each once (identity alone: off), not [gzip, br]"},
		{func(c *Config) { c.Compression = []string{"gzip", "gzip"} }, "Compression: must list identity, gzip or zstd, each once"},
		{func(c *Config) { c.Compression = []string{} }, "Compression: must list identity, gzip or zstd, each once (identity alone: off), not []"},
	} {
		var c Config
		tc.set(&c)
		err := c.Validate()
		var ce *ConfigError
		if !errors.As(err, &ce) || err.Error() != "edge config: "+tc.want && !strings.HasPrefix(err.Error(), "edge config: "+tc.want) {
			t.Errorf("error %v, want %q", err, "edge config: "+tc.want)
			continue
		}
		if field, _, _ := strings.Cut(tc.want, ":"); ce.Field != field {
			t.Errorf("%s: ConfigError.Field %q", tc.want, ce.Field)
		}
	}
	if err := (Config{Retry: Off, KeepAlive: Off, RetryJitter: Off, ResumeRingBytes: Off, FeedMemoryBytes: Off,
		MaxConnectionsPerIP: Off, ReleaseAfterBurst: Off, SetupPerAddress: Off, SetupQueuePerAddress: Off}).Validate(); err != nil {
		t.Fatalf("Off refused: %v", err)
	}
}

// KeyReads' fields have defaults, keep Off, and a bad value is an error
// naming the field.
func TestKeyReadLimitsDefaultsAndErrors(t *testing.T) {
	c := Config{NATS: &nats.Conn{}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if k := c.KeyReads; k.MinRate != 64<<10 || k.MaxBytes != 256<<20 || k.MaxBytesPerIP != 64<<20 || k.RatePerIP != 100 || k.CacheRequestsPerIP != 2000 {
		t.Fatalf("defaults: %+v", k)
	}
	c = Config{NATS: &nats.Conn{}, KeyReads: KeyReadLimits{MinRate: Off, MaxBytes: Off, MaxBytesPerIP: Off, RatePerIP: Off, CacheRequestsPerIP: Off}}
	if err := c.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if k := c.KeyReads; k.MinRate != Off || k.MaxBytes != Off || k.MaxBytesPerIP != Off || k.RatePerIP != Off || k.CacheRequestsPerIP != Off {
		t.Fatalf("Off not kept: %+v", k)
	}
	for field, tweak := range map[string]func(*KeyReadLimits){
		"KeyReads.MinRate":            func(k *KeyReadLimits) { k.MinRate = -2 },
		"KeyReads.MaxBytes":           func(k *KeyReadLimits) { k.MaxBytes = -2 },
		"KeyReads.MaxBytesPerIP":      func(k *KeyReadLimits) { k.MaxBytesPerIP = -5 },
		"KeyReads.RatePerIP":          func(k *KeyReadLimits) { k.RatePerIP = -0.5 },
		"KeyReads.CacheRequestsPerIP": func(k *KeyReadLimits) { k.CacheRequestsPerIP = math.Inf(1) },
	} {
		c := Config{NATS: &nats.Conn{}}
		tweak(&c.KeyReads)
		if err := c.setDefaults(); err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: %v", field, err)
		}
	}
}
