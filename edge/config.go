package edge

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
	"github.com/ssekafka/ssekafka/edge/internal/resume"
	"github.com/ssekafka/ssekafka/edge/internal/tier"
	"github.com/ssekafka/ssekafka/internal/confcheck"
)

// Off, in a Config field that says so, turns off what zero would give the
// default of. It is the one spelling of "off": no field takes another
// negative value.
const Off = confcheck.Off

// ConfigError is the error of New and Config.Validate: the field and what
// it must be.
type ConfigError = confcheck.Error

// Config configures an edge node. Zero means the documented default (New
// fills it in, as WithDefaults does; DefaultConfig lists them all); Off
// turns off a field whose doc says so; any other value out of range is a
// *ConfigError naming the field (New and Validate return it).
type Config struct {
	// NATS is the connection to the cache tier. Required; the edge does not close it.
	NATS *nats.Conn
	// SubjectPrefix prefixes every NATS subject. Default "ssekafka".
	SubjectPrefix string
	// NATSName is this edge's own NATS user name, where each edge has one
	// (docs/security.md: a NATS identity per edge): its renewals come on
	// <prefix>.renew.<name>.<key>, the only renewal subject its user may
	// subscribe to, and NATS must give its inboxes the prefix
	// _INBOX.<name>. (nats.CustomInboxPrefix). One NATS subject token.
	// Default none: <prefix>.renew.<key>.
	NATSName string
	// Routes are matched in order; the first whose path matches serves the request.
	Routes []*Route
	// Retry is the reconnect delay sent in "retry:", in whole milliseconds.
	// Default 2s; Off writes "retry:0" (reconnect at once, no jitter).
	Retry time.Duration
	// RetryJitter adds up to this fraction of Retry at random, so that clients
	// of a failed edge do not come back at once. At most 1. Default 0.2; Off: none.
	RetryJitter float64
	// RetryMax bounds the "retry:" of a refusal (a stream answered 200 with
	// a retry because it cannot be served now: cache tier unavailable, setup
	// queue full, draining), which is drawn from [R, 2R], R being Retry
	// (1s when Off) plus the estimated setup-queue backlog, at most
	// RetryMax/2. At least 2s and at least twice Retry. Default 30s (or
	// twice Retry if more).
	RetryMax time.Duration
	// ReadyProbe is how often Ready asks the cache tier whether it answers
	// (a topics request), once Ready has been called. Default 2s.
	ReadyProbe time.Duration
	// KeepAlive is the idle time after which a comment line is sent, at
	// least 1ms. Default 15s; Off: no comments (as Zilla by default).
	KeepAlive time.Duration
	// NoReady leaves out "event:ready" after the state part, for clients
	// that must see nothing but data frames (scripts written for Zilla that
	// grep "data:" lines would catch its "data:{}"). Default false: sent.
	NoReady bool
	// PageBytes is the size asked for per state page. Default 256 KiB.
	PageBytes int
	// PageTimeout bounds one state-page request: a cache node that dies while
	// answering costs this much before the edge asks again. Default 2s.
	PageTimeout time.Duration
	// RequestTimeout bounds one request to the cache tier. Default 15s (a
	// topic taken up on demand is answered once caught up).
	RequestTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 30s.
	WriteTimeout time.Duration
	// MaxQueue is how many frames may wait for a client before it is
	// disconnected with a retry hint. Default 16384.
	MaxQueue int
	// MaxQueueBytes bounds the bytes of the frames waiting for one client,
	// like MaxQueue (whichever is passed first conflates, then cuts off).
	// Default 8 MiB: 16 s of a 4 Mbit/s stream, while 16384 frames of up to
	// 32 KiB would let one stalled client hold 512 MiB.
	MaxQueueBytes int
	// Writers is how many goroutines write a topic feed's live hijacked
	// connections after each batch of changes: each client is written by
	// one of them, fixed when it joins (writers.go); the feed's own
	// goroutine is one. At most 1024. Default GOMAXPROCS−1, at least 1:
	// one core is left to the NATS reader, the setup workers and the
	// runtime (on 2 cores, a second writer took the CPU they and a
	// co-located load client needed: benchmarks/RESULTS.md, issue 23);
	// 1: the feed's goroutine writes them all.
	Writers int
	// FeedBuffer is how many live changes may wait per topic feed; past it
	// NATS drops them and the feed fills the gap from the cache. Default 65536.
	FeedBuffer int
	// ProbeInterval is how often a feed checks the cache's head for changes
	// lost in transit. Default 5s.
	ProbeInterval time.Duration
	// FeedLinger is how long a topic feed outlives its last client. Default 30s.
	FeedLinger time.Duration
	// ResumeRingBytes bounds each topic feed's ring of recent changes: a
	// client whose Last-Event-ID lies inside it resumes from memory, without
	// a state request. Default 4 MiB; Off: no ring.
	ResumeRingBytes int
	// FeedMemoryBytes bounds, edge-wide, what topic feeds keep besides their
	// clients' queues: resume rings, frames encoded from them, and shared
	// state pages (a quarter of it at most). Past it, memory is given back:
	// idle feeds' (no clients, lingering) first, then encodings, then the
	// oldest records of the largest rings (a resume before a ring's start is
	// served from state). At least 1 MiB. Default 256 MiB; Off: no bound.
	FeedMemoryBytes int
	// ResumeRingAge is how long a change stays in the resume ring at most.
	// Default 1m.
	ResumeRingAge time.Duration
	// SetupConcurrency is how many streams may be in their state part at
	// once; more wait in a queue: a stream Serve reads costing no
	// goroutine, one on net/http's goroutine (HTTP/2, or the edge under
	// net/http) keeping it. Default 64.
	SetupConcurrency int
	// SetupQueue is how many streams may wait to start; past it a new one
	// is refused (200, a comment and a retry growing with the backlog).
	// Default 65536.
	SetupQueue int
	// SetupPerAddress is how many setup workers the streams of one client
	// address (an IPv6 /64 counts as one; behind a trusted proxy, the
	// forwarded address) may hold at once: the others of that address
	// wait while other addresses' streams are served, in turn. Default
	// SetupConcurrency/4, at least 1, or no share where MaxConnectionsPerIP
	// is Off (a load test from one host); Off: no share (SetupConcurrency).
	SetupPerAddress int
	// SetupQueuePerAddress is how many streams of one client address may
	// wait for a setup worker; past it a new one is refused like one past
	// SetupQueue. Default 1024 (at most SetupQueue), or no share where
	// MaxConnectionsPerIP is Off; Off: no share.
	SetupQueuePerAddress int
	// StateWriteTimeout and StateMinRate bound a write of a state part:
	// n bytes must be taken by the client within StateWriteTimeout +
	// n/StateMinRate, or the stream is cut off (counted in
	// ssekafka_edge_state_stalled_total): a client that does not read its
	// state part cannot keep a stream, nor memory, for WriteTimeout per
	// write. A state part whose socket is full gives its setup worker back
	// (ssekafka_edge_state_parked_total) and goes on on its own goroutine.
	// Defaults 10s and 16 KiB/s.
	StateWriteTimeout time.Duration
	StateMinRate      int
	// MaxConnections bounds the connections Serve holds at once (from
	// accept to close: streams, and requests handed to net/http); past it a
	// new one is answered at once and closed: a stream with a refusal (200,
	// a comment and a retry) its EventSource comes back from, anything else
	// 503. Keep it below the open-file limit, so that the edge still has
	// files for the admin listener, NATS and these answers. Default: the
	// process's RLIMIT_NOFILE less a tenth of it, at least 256 (10000 where
	// the limit is not known).
	MaxConnections int
	// MaxConnectionsPerIP bounds, like MaxConnections, the connections from
	// one client address (an IPv6 /64 counts as one). Default 1000: a NAT
	// in front of a large audience (an office, a carrier-grade NAT) may
	// carry hundreds of browsers, each with a stream or two, while one host
	// cannot take the whole edge. Off: no cap per address.
	MaxConnectionsPerIP int
	// TrustedProxies are the proxies and load balancers in front of the
	// edge (Caddy, nginx, a cloud load balancer) whose X-Forwarded-For is
	// believed. A connection from one counts against MaxConnections but not
	// MaxConnectionsPerIP: it carries many clients. Each stream through one
	// counts instead, for as long as it lives, against the cap of its
	// client's address: the rightmost X-Forwarded-For address that is not
	// itself a trusted proxy (the proxy's own address when the header is
	// missing or malformed); over it the stream gets the refusal a stream
	// over the cap gets at accept. An untrusted peer's X-Forwarded-For is
	// never read. Default: none.
	TrustedProxies []netip.Prefix
	// ReleaseAfterBurst: once this many streams have started since the last
	// time, and none is starting, the edge returns free memory to the OS
	// (debug.FreeOSMemory, a few milliseconds): the runtime would otherwise
	// keep a reconnect storm's transient buffers resident for minutes.
	// Default 1000; Off: never.
	ReleaseAfterBurst int
	// NoHijack keeps every connection on net/http's ResponseWriter and a
	// goroutine per client, as on HTTP/2. Default false: HTTP/1.x streams
	// are hijacked and cost no goroutine while idle.
	NoHijack bool
	// KeyReads bounds what per-key JSON reads cost (edge/internal/keyread).
	KeyReads KeyReadLimits
	// Compression is the content codings the edge offers streams and JSON
	// reads, in its order of preference, negotiated from each request's
	// Accept-Encoding ("identity", "gzip", "zstd"): each shared encoding
	// (a state page, a resume, a live frame, a value) is compressed once
	// per coding, not per client. A route's Compression overrides it for
	// its streams. Default ["zstd", "gzip"]; ["identity"]: off.
	Compression []string
	// Guards are the guards routes may name in Guarded, with where requests
	// carry their tokens. Default: none.
	Guards map[string]Authorization
	// CORS lets pages of other origins use the edge. Default nil: no CORS
	// headers, so a browser lets only same-origin pages read the streams.
	CORS *CORS
	// Now is the clock for position times. Default time.Now.
	Now func() time.Time
	// Logger receives the edge's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the edge's metrics. Default: none registered.
	Registerer prometheus.Registerer

	tier    func(nats tier.Tier) tier.Tier // tests: the cache tier asked, given NATS's (nil without NATS)
	clock   tier.Clock                     // tests: the clock of requests to the cache tier
	sharing resume.Sharing                 // tests: when streams share (nil: resume.ShareWhenCrowded)
}

// DefaultConfig returns every default of Config filled in: what New gives
// a zero field. RetryMax, SetupPerAddress and SetupQueuePerAddress follow
// other fields (derive); here they follow the other defaults: leave them
// zero where those change, and New derives them again. MaxConnections
// follows this process's open-file limit.
func DefaultConfig() Config {
	c := Config{
		SubjectPrefix:       "ssekafka",
		Retry:               2 * time.Second,
		RetryJitter:         0.2,
		ReadyProbe:          2 * time.Second,
		KeepAlive:           15 * time.Second,
		PageBytes:           256 << 10,
		PageTimeout:         2 * time.Second,
		RequestTimeout:      15 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxQueue:            16384,
		MaxQueueBytes:       8 << 20,
		Writers:             max(1, runtime.GOMAXPROCS(0)-1),
		FeedBuffer:          65536,
		ProbeInterval:       5 * time.Second,
		FeedLinger:          30 * time.Second,
		ResumeRingBytes:     4 << 20,
		FeedMemoryBytes:     256 << 20,
		ResumeRingAge:       time.Minute,
		SetupConcurrency:    64,
		SetupQueue:          65536,
		StateWriteTimeout:   10 * time.Second,
		StateMinRate:        16 << 10,
		MaxConnections:      accept.DefaultMaxConnections(),
		MaxConnectionsPerIP: 1000,
		ReleaseAfterBurst:   1000,
		KeyReads: KeyReadLimits{MinRate: 64 << 10, MaxBytes: 256 << 20, MaxBytesPerIP: 64 << 20,
			RatePerIP: 100, CacheRequestsPerIP: 2000},
		Compression: slices.Clone(defaultCompression),
		Now:         time.Now,
		Logger:      slog.New(slog.DiscardHandler),
	}
	c.derive()
	return c
}

// RetryMax's least value and default (or twice Retry), and
// SetupQueuePerAddress's default (or SetupQueue).
const (
	minRetryMax                 = 2 * time.Second
	defaultRetryMax             = 30 * time.Second
	defaultSetupQueuePerAddress = 1024
)

// derive fills the zero fields whose defaults follow other fields, and
// gives SetupPerAddress and SetupQueuePerAddress their Off (no share: the
// whole) and their bound (the whole).
func (c *Config) derive() {
	if c.RetryMax == 0 {
		c.RetryMax = max(defaultRetryMax, 2*c.Retry)
	}
	noCap := c.MaxConnectionsPerIP == Off // a load test from one host: no share either
	switch {
	case c.SetupPerAddress == Off, c.SetupPerAddress == 0 && noCap:
		c.SetupPerAddress = c.SetupConcurrency
	case c.SetupPerAddress == 0:
		c.SetupPerAddress = max(c.SetupConcurrency/4, 1)
	}
	c.SetupPerAddress = min(c.SetupPerAddress, c.SetupConcurrency)
	switch {
	case c.SetupQueuePerAddress == Off, c.SetupQueuePerAddress == 0 && noCap:
		c.SetupQueuePerAddress = c.SetupQueue
	case c.SetupQueuePerAddress == 0:
		c.SetupQueuePerAddress = defaultSetupQueuePerAddress
	}
	c.SetupQueuePerAddress = min(c.SetupQueuePerAddress, c.SetupQueue)
}

// WithDefaults returns c with each zero field set to its default, as New
// uses it. It does not validate: a value out of range stays as it is.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	confcheck.OrDefault(&c.SubjectPrefix, d.SubjectPrefix)
	confcheck.OrDefault(&c.Retry, d.Retry)
	confcheck.OrDefault(&c.RetryJitter, d.RetryJitter)
	confcheck.OrDefault(&c.ReadyProbe, d.ReadyProbe)
	confcheck.OrDefault(&c.KeepAlive, d.KeepAlive)
	confcheck.OrDefault(&c.PageBytes, d.PageBytes)
	confcheck.OrDefault(&c.PageTimeout, d.PageTimeout)
	confcheck.OrDefault(&c.RequestTimeout, d.RequestTimeout)
	confcheck.OrDefault(&c.WriteTimeout, d.WriteTimeout)
	confcheck.OrDefault(&c.MaxQueue, d.MaxQueue)
	confcheck.OrDefault(&c.MaxQueueBytes, d.MaxQueueBytes)
	confcheck.OrDefault(&c.Writers, d.Writers)
	confcheck.OrDefault(&c.FeedBuffer, d.FeedBuffer)
	confcheck.OrDefault(&c.ProbeInterval, d.ProbeInterval)
	confcheck.OrDefault(&c.FeedLinger, d.FeedLinger)
	confcheck.OrDefault(&c.ResumeRingBytes, d.ResumeRingBytes)
	confcheck.OrDefault(&c.FeedMemoryBytes, d.FeedMemoryBytes)
	confcheck.OrDefault(&c.ResumeRingAge, d.ResumeRingAge)
	confcheck.OrDefault(&c.SetupConcurrency, d.SetupConcurrency)
	confcheck.OrDefault(&c.SetupQueue, d.SetupQueue)
	confcheck.OrDefault(&c.StateWriteTimeout, d.StateWriteTimeout)
	confcheck.OrDefault(&c.StateMinRate, d.StateMinRate)
	confcheck.OrDefault(&c.MaxConnections, d.MaxConnections)
	confcheck.OrDefault(&c.MaxConnectionsPerIP, d.MaxConnectionsPerIP)
	confcheck.OrDefault(&c.ReleaseAfterBurst, d.ReleaseAfterBurst)
	confcheck.OrDefault(&c.KeyReads.MinRate, d.KeyReads.MinRate)
	confcheck.OrDefault(&c.KeyReads.MaxBytes, d.KeyReads.MaxBytes)
	confcheck.OrDefault(&c.KeyReads.MaxBytesPerIP, d.KeyReads.MaxBytesPerIP)
	confcheck.OrDefault(&c.KeyReads.RatePerIP, d.KeyReads.RatePerIP)
	confcheck.OrDefault(&c.KeyReads.CacheRequestsPerIP, d.KeyReads.CacheRequestsPerIP)
	confcheck.OrDefault(&c.Logger, d.Logger)
	if c.Compression == nil {
		c.Compression = d.Compression
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	c.derive()
	return c
}

// Validate returns the first field of c that New would refuse, as a
// *ConfigError, the NATS connection aside: a config can be checked before
// anything connects. New checks Routes, Guards and CORS besides.
func (c Config) Validate() error {
	c = c.WithDefaults()
	return c.validate()
}

// setDefaults fills in the defaults of c's zero fields and validates it.
func (c *Config) setDefaults() error {
	if c.NATS == nil && c.tier == nil {
		return &ConfigError{Component: "edge", Field: "NATS", Rule: "required: the connection to the cache tier"}
	}
	*c = c.WithDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	c.TrustedProxies = trustedPrefixes(c.TrustedProxies)
	return nil
}

// validate checks a config with its defaults filled in.
func (c *Config) validate() error {
	if err := confcheck.Check("edge", c.rows()); err != nil {
		return err
	}
	if c.Retry != Off && c.Retry%time.Millisecond != 0 {
		return &ConfigError{Component: "edge", Field: "Retry", Rule: "must be whole milliseconds", Value: c.Retry.String()}
	}
	if err := confcheck.SubjectPrefix("edge", c.SubjectPrefix); err != nil {
		return err
	}
	if err := c.checkCompression(); err != nil {
		return err
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return &ConfigError{Component: "edge", Field: fmt.Sprintf("TrustedProxies[%d]", i),
				Rule: "must be a valid prefix, with no zone", Value: p.String()}
		}
	}
	return nil
}

// rows is the validation table: each field's bounds, and whether it may be Off.
func (c *Config) rows() []confcheck.Row {
	d := DefaultConfig()
	var twiceRetry time.Duration // the least RetryMax (none where Retry is Off)
	if c.Retry != Off {
		twiceRetry = 2 * c.Retry
	}
	return []confcheck.Row{
		durRow("Retry", c.Retry, d.Retry, time.Millisecond, "retry:0"),
		{Field: "RetryJitter", V: c.RetryJitter, Unit: confcheck.Rate, Min: math.SmallestNonzeroFloat64, Max: 1,
			Off: "none", Default: "0.2"},
		{Field: "RetryMax", V: float64(c.RetryMax), Unit: confcheck.Duration, Min: float64(minRetryMax),
			Default: retryMaxDefault},
		{Field: "RetryMax", V: float64(c.RetryMax), Unit: confcheck.Duration, Min: float64(twiceRetry),
			MinRule: "at least twice {Retry}", Default: retryMaxDefault},
		durRow("ReadyProbe", c.ReadyProbe, d.ReadyProbe, 1, ""),
		durRow("KeepAlive", c.KeepAlive, d.KeepAlive, time.Millisecond, "no comments"),
		{Field: "PageBytes", V: float64(c.PageBytes), Min: 1, Max: maxPageBytes, Default: confcheck.Bytes(int64(d.PageBytes))},
		durRow("PageTimeout", c.PageTimeout, d.PageTimeout, 1, ""),
		durRow("RequestTimeout", c.RequestTimeout, d.RequestTimeout, 1, ""),
		durRow("WriteTimeout", c.WriteTimeout, d.WriteTimeout, 1, ""),
		countRow("MaxQueue", c.MaxQueue, d.MaxQueue, 1, ""),
		bytesRow("MaxQueueBytes", c.MaxQueueBytes, d.MaxQueueBytes, 1, ""),
		{Field: "Writers", V: float64(c.Writers), Min: 1, Max: maxWriters, Default: "GOMAXPROCS-1"},
		{Field: "FeedBuffer", V: float64(c.FeedBuffer), Min: 1, Max: maxFeedBuffer, Default: strconv.Itoa(d.FeedBuffer)},
		durRow("ProbeInterval", c.ProbeInterval, d.ProbeInterval, 1, ""),
		durRow("FeedLinger", c.FeedLinger, d.FeedLinger, 1, ""),
		bytesRow("ResumeRingBytes", c.ResumeRingBytes, d.ResumeRingBytes, 1, "no ring"),
		bytesRow("FeedMemoryBytes", c.FeedMemoryBytes, d.FeedMemoryBytes, 1<<20, "no bound"),
		durRow("ResumeRingAge", c.ResumeRingAge, d.ResumeRingAge, 1, ""),
		countRow("SetupConcurrency", c.SetupConcurrency, d.SetupConcurrency, 1, ""),
		countRow("SetupQueue", c.SetupQueue, d.SetupQueue, 1, ""),
		{Field: "SetupPerAddress", V: float64(c.SetupPerAddress), Min: 1, Off: "no share",
			Default: "a quarter of {SetupConcurrency}, or no share where {MaxConnectionsPerIP} is Off"},
		{Field: "SetupQueuePerAddress", V: float64(c.SetupQueuePerAddress), Min: 1, Off: "no share",
			Default: strconv.Itoa(defaultSetupQueuePerAddress) + ", or no share where {MaxConnectionsPerIP} is Off"},
		durRow("StateWriteTimeout", c.StateWriteTimeout, d.StateWriteTimeout, 1, ""),
		bytesRow("StateMinRate", c.StateMinRate, d.StateMinRate, 1, ""),
		{Field: "MaxConnections", V: float64(c.MaxConnections), Min: 1, Default: "the open-file limit less a tenth, at least 256"},
		countRow("MaxConnectionsPerIP", c.MaxConnectionsPerIP, d.MaxConnectionsPerIP, 1, "no cap per address"),
		countRow("ReleaseAfterBurst", c.ReleaseAfterBurst, d.ReleaseAfterBurst, 1, "never"),
		bytesRow("KeyReads.MinRate", c.KeyReads.MinRate, d.KeyReads.MinRate, 1, "each write within {WriteTimeout}"),
		bytesRow("KeyReads.MaxBytes", c.KeyReads.MaxBytes, d.KeyReads.MaxBytes, 1, "none"),
		bytesRow("KeyReads.MaxBytesPerIP", c.KeyReads.MaxBytesPerIP, d.KeyReads.MaxBytesPerIP, 1, "none"),
		rateRow("KeyReads.RatePerIP", c.KeyReads.RatePerIP, d.KeyReads.RatePerIP),
		rateRow("KeyReads.CacheRequestsPerIP", c.KeyReads.CacheRequestsPerIP, d.KeyReads.CacheRequestsPerIP),
	}
}

const retryMaxDefault = "30s, or twice {Retry} if more"

// Maxima: what a state request carries (proto), a feed's channel of
// pending changes allocated up front (8 bytes each), and writer goroutines
// (more than cores only adds hand-offs).
const (
	maxPageBytes  = 1 << 30
	maxFeedBuffer = 1 << 24
	maxWriters    = 1024
)

func durRow(field string, v, def, least time.Duration, off string) confcheck.Row {
	return confcheck.Row{Field: field, V: float64(v), Unit: confcheck.Duration, Min: float64(least), Off: off, Default: def.String()}
}

func countRow(field string, v, def, least int, off string) confcheck.Row {
	return confcheck.Row{Field: field, V: float64(v), Min: float64(least), Off: off, Default: strconv.Itoa(def)}
}

func bytesRow(field string, v, def, least int, off string) confcheck.Row {
	return confcheck.Row{Field: field, V: float64(v), Min: float64(least), Off: off, Default: confcheck.Bytes(int64(def))}
}

func rateRow(field string, v, def float64) confcheck.Row {
	return confcheck.Row{Field: field, V: v, Unit: confcheck.Rate, Min: math.SmallestNonzeroFloat64, Off: "none",
		Default: strconv.FormatFloat(def, 'g', -1, 64) + " a second"}
}

// trustedPrefixes copies ps (the caller's slice may change), masked, with
// IPv4-mapped prefixes unmapped: addresses are compared unmapped.
func trustedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// checkGuards checks that every guarded route's guard is configured.
func (c *Config) checkGuards() error {
	for name, a := range c.Guards {
		if a.Guard == nil {
			return fmt.Errorf("edge config: Guards[%s]: no guard", name)
		}
		if err := a.Credentials.Validate(); err != nil {
			return fmt.Errorf("edge config: Guards[%s]: %w", name, err)
		}
	}
	for i, r := range c.Routes {
		if r.r.Guard() == "" {
			continue
		}
		if _, ok := c.Guards[r.r.Guard()]; !ok {
			return fmt.Errorf("edge config: Routes[%d]: guarded by %q, which is not among the guards", i, r.r.Guard())
		}
	}
	return nil
}
