// Package benchmarks holds cluster scenarios: a whole ssekafka path in one
// process (kfake, nats-server, a cache node, an edge) under load from
// in-process SSE clients. Results go to RESULTS.md.
package benchmarks

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/cache"
	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/internal/devstack"
)

// Cluster is one of everything, on loopback.
type Cluster struct {
	Topic    string
	Brokers  []string
	NATSURL  string
	EdgeURL  string
	Producer *kgo.Client
	closers  []func()
}

// Option changes what StartCluster starts.
type Option func(*options)

type options struct {
	noCache    bool
	maxPayload int32
}

// WithoutCache starts no cache node: the caller starts its own.
func WithoutCache() Option { return func(o *options) { o.noCache = true } }

// WithNATSMaxPayload sets the NATS server's max payload (default 8 MiB; a
// stock server's is 1 MiB).
func WithNATSMaxPayload(n int32) Option { return func(o *options) { o.maxPayload = n } }

// StartCluster starts kfake with topic (compacted, partitions), nats-server,
// a cache node and an edge serving /t on the topic.
func StartCluster(ctx context.Context, topic string, partitions int32, opts ...Option) (*Cluster, error) {
	o := options{maxPayload: 8 << 20}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{Topic: topic}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	kc, addr, err := devstack.StartKafka("127.0.0.1:0", devstack.KafkaOptions{})
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, kc.Close)
	c.Brokers = []string{addr}
	if err := devstack.CreateCompactedTopics(ctx, c.Brokers, partitions, topic); err != nil {
		return nil, err
	}
	ns, err := devstack.StartNATSMaxPayload("127.0.0.1:0", o.maxPayload)
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, ns.Shutdown)
	c.NATSURL = ns.ClientURL()
	connect := func() (*nats.Conn, error) {
		nc, err := nats.Connect(ns.ClientURL())
		if err == nil {
			c.closers = append(c.closers, nc.Close)
		}
		return nc, err
	}
	if !o.noCache {
		cacheNC, err := connect()
		if err != nil {
			return nil, err
		}
		node, err := cache.New(cache.Config{Brokers: c.Brokers, NATS: cacheNC, Bootstrap: []string{topic}})
		if err != nil {
			return nil, err
		}
		runCtx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = node.Run(runCtx) }()
		c.closers = append(c.closers, func() { cancel(); <-done })
		for !node.Ready() {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	edgeNC, err := connect()
	if err != nil {
		return nil, err
	}
	route, err := edge.CompileRoute(edge.RouteConfig{Paths: []string{"/t"}, Topic: topic})
	if err != nil {
		return nil, err
	}
	e, err := edge.New(edge.Config{NATS: edgeNC, Routes: []*edge.Route{route}, MaxQueue: 1 << 20})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: e}
	go func() { _ = srv.Serve(ln) }()
	c.closers = append(c.closers, func() { e.Close(); _ = srv.Close() })
	c.EdgeURL = "http://" + ln.Addr().String()
	c.Producer, err = kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, c.Producer.Close)
	ok = true
	return c, nil
}

// Close stops everything, in reverse order.
func (c *Cluster) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
}

// Produce writes n records with keys key-0..key-(keys-1) and values of
// valueSize bytes, and waits for all acks.
func (c *Cluster) Produce(ctx context.Context, n, keys, valueSize int) error {
	value := make([]byte, valueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var firstErr atomic.Value
	done := make(chan struct{}, 1)
	var pending atomic.Int64
	pending.Store(int64(n))
	for i := range n {
		r := &kgo.Record{Key: fmt.Appendf(nil, "key-%d", i%keys), Value: value}
		c.Producer.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
			if pending.Add(-1) == 0 {
				done <- struct{}{}
			}
		})
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// Client is a minimal SSE reader that counts events, the way a load client
// should: no parsing beyond finding the blank line that ends an event.
type Client struct {
	Events atomic.Int64 // events with data, ready included
	Ready  atomic.Bool
	body   io.ReadCloser
	done   chan struct{}
}

// Connect opens a stream at path.
func Connect(ctx context.Context, url string) (*Client, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	c := &Client{body: resp.Body, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *Client) read() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.body, 64<<10)
	var prev byte
	var hasData bool
	var line []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return
		}
		if b == '\n' {
			if prev == '\n' {
				if hasData {
					c.Events.Add(1)
				}
				hasData = false
			} else if len(line) >= 5 && string(line[:5]) == "data:" {
				hasData = true
			} else if string(line) == "event:ready" {
				c.Ready.Store(true)
			}
			line = line[:0]
		} else if len(line) < 16 {
			line = append(line, b)
		}
		prev = b
	}
}

// Close ends the stream.
func (c *Client) Close() {
	c.body.Close()
	<-c.done
}
