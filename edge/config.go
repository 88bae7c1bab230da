package edge

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssekafka/ssekafka/edge/internal/tier"
)

// Off, in a Config field that says so, turns off what zero would give the
// default of.
const Off = -1

// Config configures an edge node. Zero means the documented default; a value
// out of range is an error naming the field (New returns it).
type Config struct {
	// NATS is the connection to the cache tier. Required; the edge does not close it.
	NATS *nats.Conn
	// SubjectPrefix prefixes every NATS subject. Default "ssekafka".
	SubjectPrefix string
	// NATSName is this edge's own NATS user name, where each edge has one
	// (README: a NATS identity per edge): its renewals come on
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
	// Default 1000; negative: never.
	ReleaseAfterBurst int
	// NoHijack keeps every connection on net/http's ResponseWriter and a
	// goroutine per client, as on HTTP/2. Default false: HTTP/1.x streams
	// are hijacked and cost no goroutine while idle.
	NoHijack bool
	// KeyReads bounds what per-key JSON reads cost (keyreadlimit.go).
	KeyReads KeyReadLimits
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

	tier  func(nats tier.Tier) tier.Tier // tests: the cache tier asked, given NATS's (nil without NATS)
	clock tier.Clock                     // tests: the clock of requests to the cache tier
}

// setDefaults validates c and fills in the defaults of its zero fields.
func (c *Config) setDefaults() error {
	if c.NATS == nil && c.tier == nil {
		return errors.New("edge config: NATS is required")
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "ssekafka"
	}
	durations := []struct {
		name   string
		v      *time.Duration
		def    time.Duration
		canOff bool
	}{
		{"Retry", &c.Retry, 2 * time.Second, true},
		{"KeepAlive", &c.KeepAlive, 15 * time.Second, true},
		{"PageTimeout", &c.PageTimeout, 2 * time.Second, false},
		{"RequestTimeout", &c.RequestTimeout, 15 * time.Second, false},
		{"WriteTimeout", &c.WriteTimeout, 30 * time.Second, false},
		{"ProbeInterval", &c.ProbeInterval, 5 * time.Second, false},
		{"FeedLinger", &c.FeedLinger, 30 * time.Second, false},
		{"ResumeRingAge", &c.ResumeRingAge, time.Minute, false},
		{"ReadyProbe", &c.ReadyProbe, 2 * time.Second, false},
		{"StateWriteTimeout", &c.StateWriteTimeout, 10 * time.Second, false},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v == Off && d.canOff:
		case *d.v < 0 && d.canOff:
			return fmt.Errorf("edge config: %s: %v is negative (Off turns it off)", d.name, *d.v)
		case *d.v < 0:
			return fmt.Errorf("edge config: %s: %v is negative", d.name, *d.v)
		}
	}
	if c.KeepAlive != Off && c.KeepAlive < time.Millisecond {
		return fmt.Errorf("edge config: KeepAlive: %v is below 1ms", c.KeepAlive)
	}
	if c.Retry != Off && c.Retry%time.Millisecond != 0 {
		return fmt.Errorf("edge config: Retry: %v is not whole milliseconds", c.Retry)
	}
	if c.RetryMax == 0 {
		c.RetryMax = max(30*time.Second, 2*c.Retry)
	}
	if c.RetryMax < 2*time.Second || c.Retry != Off && c.RetryMax < 2*c.Retry {
		return fmt.Errorf("edge config: RetryMax: %v is below 2s or twice Retry (%v)", c.RetryMax, c.Retry)
	}
	switch {
	case c.RetryJitter == 0:
		c.RetryJitter = 0.2
	case c.RetryJitter == Off:
	case c.RetryJitter < 0 || c.RetryJitter > 1 || c.RetryJitter != c.RetryJitter:
		return fmt.Errorf("edge config: RetryJitter: %v is not in (0, 1] (Off: none)", c.RetryJitter)
	}
	sizes := []struct {
		name string
		v    *int
		def  int
	}{
		{"PageBytes", &c.PageBytes, 256 << 10},
		{"MaxQueue", &c.MaxQueue, 16384},
		{"MaxQueueBytes", &c.MaxQueueBytes, 8 << 20},
		{"FeedBuffer", &c.FeedBuffer, 65536},
		{"SetupConcurrency", &c.SetupConcurrency, 64},
		{"SetupQueue", &c.SetupQueue, 65536},
		{"StateMinRate", &c.StateMinRate, 16 << 10},
	}
	for _, n := range sizes {
		switch {
		case *n.v == 0:
			*n.v = n.def
		case *n.v < 0:
			return fmt.Errorf("edge config: %s: %d is negative", n.name, *n.v)
		}
	}
	switch {
	case c.SetupPerAddress == 0 && c.MaxConnectionsPerIP == Off:
		c.SetupPerAddress = c.SetupConcurrency // no cap per address, no share either
	case c.SetupPerAddress == 0:
		c.SetupPerAddress = max(c.SetupConcurrency/4, 1)
	case c.SetupPerAddress == Off:
		c.SetupPerAddress = c.SetupConcurrency
	case c.SetupPerAddress < 0:
		return fmt.Errorf("edge config: SetupPerAddress: %d is negative (Off: no share)", c.SetupPerAddress)
	}
	c.SetupPerAddress = min(c.SetupPerAddress, c.SetupConcurrency)
	switch {
	case c.SetupQueuePerAddress == 0 && c.MaxConnectionsPerIP == Off:
		c.SetupQueuePerAddress = c.SetupQueue
	case c.SetupQueuePerAddress == 0:
		c.SetupQueuePerAddress = 1024
	case c.SetupQueuePerAddress == Off:
		c.SetupQueuePerAddress = c.SetupQueue
	case c.SetupQueuePerAddress < 0:
		return fmt.Errorf("edge config: SetupQueuePerAddress: %d is negative (Off: no share)", c.SetupQueuePerAddress)
	}
	c.SetupQueuePerAddress = min(c.SetupQueuePerAddress, c.SetupQueue)
	switch {
	case c.ResumeRingBytes == 0:
		c.ResumeRingBytes = 4 << 20
	case c.ResumeRingBytes == Off:
	case c.ResumeRingBytes < 0:
		return fmt.Errorf("edge config: ResumeRingBytes: %d is negative (Off turns it off)", c.ResumeRingBytes)
	}
	switch {
	case c.FeedMemoryBytes == 0:
		c.FeedMemoryBytes = 256 << 20
	case c.FeedMemoryBytes == Off:
	case c.FeedMemoryBytes < 1<<20:
		return fmt.Errorf("edge config: FeedMemoryBytes: %d is below 1 MiB (Off: no bound)", c.FeedMemoryBytes)
	}
	switch {
	case c.MaxConnections == 0:
		c.MaxConnections = defaultMaxConnections()
	case c.MaxConnections < 0:
		return fmt.Errorf("edge config: MaxConnections: %d is negative (0: the default, below the open-file limit)", c.MaxConnections)
	}
	switch {
	case c.MaxConnectionsPerIP == 0:
		c.MaxConnectionsPerIP = 1000
	case c.MaxConnectionsPerIP == Off:
	case c.MaxConnectionsPerIP < 0:
		return fmt.Errorf("edge config: MaxConnectionsPerIP: %d is negative (Off: no cap per address)", c.MaxConnectionsPerIP)
	}
	trusted := make([]netip.Prefix, 0, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("edge config: TrustedProxies[%d]: %v is not a valid prefix", i, p)
		}
		if p.Addr().Zone() != "" {
			return fmt.Errorf("edge config: TrustedProxies[%d]: %v has a zone", i, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:10.0.0.0/104: addresses are compared unmapped
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		trusted = append(trusted, p.Masked())
	}
	c.TrustedProxies = trusted // a copy: the caller's slice may change
	if err := c.KeyReads.setDefaults(); err != nil {
		return err
	}
	if c.ReleaseAfterBurst == 0 {
		c.ReleaseAfterBurst = 1000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
