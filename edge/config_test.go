package edge

import (
	"net/netip"
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
	e := &Edge{cfg: c}
	if c.Retry != Off || c.KeepAlive != Off || e.retryMs() != 0 {
		t.Fatalf("Off not kept: %+v, retry %d", c, e.retryMs())
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
