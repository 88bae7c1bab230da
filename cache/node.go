// Package cache is a cache node: it consumes the Kafka partitions it owns
// (direct partition consumption, no consumer group), keeps each partition's
// compacted state, publishes every change on NATS, and answers edges' state
// and metadata requests.
//
// Concurrency: one goroutine polls Kafka, applies records to a partition's
// state under that partition's lock, then publishes them in offset order, so
// a state page (read under the same lock) and the live feed agree on the
// publish sequence. NATS request handlers run on their own goroutines, bounded
// by Config.MaxConcurrentRequests. Lock order: Node.mu, then partitionState.mu.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// Config configures a cache node. The zero value of every optional field
// means its documented default.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// NATS is the connection to publish and serve on. Required; the node does not close it.
	NATS *nats.Conn
	// SubjectPrefix prefixes every NATS subject. Default "ssekafka".
	SubjectPrefix string
	// Bootstrap topics are consumed at start, ahead of any client.
	Bootstrap []string
	// Ownership decides which partitions this node consumes. Default: all (membership.NewStatic).
	Ownership membership.Ownership
	// TombstoneHorizon is how long a tombstone is kept in the state. Positions
	// older than the smaller of this and the topic's delete.retention.ms are
	// reset. Default 24h.
	TombstoneHorizon time.Duration
	// MaxPageBytes caps a state page, whatever the request asks. Default 1 MiB.
	MaxPageBytes int
	// CatchUpWait bounds how long a metadata request for a topic taken up on
	// demand waits for the first catch-up. Default 10s.
	CatchUpWait time.Duration
	// MaxConcurrentRequests bounds request handlers running at once. Default 256.
	MaxConcurrentRequests int
	// KafkaOptions are added to the franz-go client options (TLS, SASL, ...).
	KafkaOptions []kgo.Opt
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the node's metrics. Default: none registered.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if len(c.Brokers) == 0 {
		return errors.New("cache config: Brokers is required")
	}
	if c.NATS == nil {
		return errors.New("cache config: NATS is required")
	}
	for _, t := range c.Bootstrap {
		if err := proto.ValidTopic(t); err != nil {
			return fmt.Errorf("cache config: Bootstrap: %w", err)
		}
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = "ssekafka"
	}
	if c.Ownership == nil {
		c.Ownership = membership.NewStatic()
	}
	if c.TombstoneHorizon <= 0 {
		c.TombstoneHorizon = 24 * time.Hour
	}
	if c.MaxPageBytes <= 0 {
		c.MaxPageBytes = 1 << 20
	}
	if c.CatchUpWait <= 0 {
		c.CatchUpWait = 10 * time.Second
	}
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Log keys.
const (
	LogKeyTopic     = "topic"
	LogKeyPartition = "partition"
)

// topicState is one topic taken up by this node.
type topicState struct {
	name            string
	epoch           uint32
	deleteRetention time.Duration
	parts           []*partitionState
	endAtStart      []int64       // end offsets when taken up
	caughtUp        chan struct{} // closed once every partition reached endAtStart
	caughtUpOnce    sync.Once
}

// takeUp is a topic being taken up; done is closed when t or err is set.
type takeUp struct {
	done chan struct{}
	t    *topicState
	err  error
}

// Node is a cache node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	subjects proto.Subjects
	kcl      *kgo.Client
	adm      *kadm.Client
	metrics  *metrics
	sem      chan struct{}

	mu     sync.Mutex
	topics map[string]*takeUp

	subs    []*nats.Subscription
	serving atomic.Bool // subscribed to requests
}

// New builds a cache node; Run starts it.
func New(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, cfg.KafkaOptions...)
	kcl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger,
		subjects: proto.Subjects{Prefix: cfg.SubjectPrefix},
		kcl:      kcl,
		adm:      kadm.NewClient(kcl),
		metrics:  newMetrics(cfg.Registerer),
		sem:      make(chan struct{}, cfg.MaxConcurrentRequests),
		topics:   make(map[string]*takeUp),
	}
	return n, nil
}

// Run serves requests and consumes until ctx ends or a fatal error occurs.
func (n *Node) Run(ctx context.Context) error {
	defer n.kcl.Close()
	for _, sub := range []struct {
		subject string
		handle  func(*nats.Msg)
	}{
		{n.subjects.MetaAll(), n.handleMeta},
		{n.subjects.StateAll(), n.handleState},
	} {
		s, err := n.cfg.NATS.Subscribe(sub.subject, func(m *nats.Msg) {
			select {
			case n.sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				defer func() { <-n.sem }()
				sub.handle(m)
			}()
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", sub.subject, err)
		}
		s.SetPendingLimits(-1, -1)
		n.subs = append(n.subs, s)
	}
	defer func() {
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
	}()
	if err := n.cfg.NATS.Flush(); err != nil {
		return fmt.Errorf("nats flush: %w", err)
	}
	n.serving.Store(true)
	for _, t := range n.cfg.Bootstrap {
		go func() {
			if _, err := n.topic(ctx, t); err != nil {
				n.log.Error("bootstrap topic", LogKeyTopic, t, "err", err)
			}
		}()
	}
	go n.janitor(ctx)
	n.consume(ctx)
	return nil
}

// Ready reports whether the node serves requests and every bootstrap topic
// is taken up and caught up.
func (n *Node) Ready() bool {
	if !n.serving.Load() {
		return false
	}
	for _, name := range n.cfg.Bootstrap {
		n.mu.Lock()
		tu := n.topics[name]
		n.mu.Unlock()
		if tu == nil {
			return false
		}
		select {
		case <-tu.done:
		default:
			return false
		}
		if tu.err != nil {
			return false
		}
		select {
		case <-tu.t.caughtUp:
		default:
			return false
		}
	}
	return true
}

// topic returns the topic's state, taking the topic up on first demand.
func (n *Node) topic(ctx context.Context, name string) (*topicState, error) {
	n.mu.Lock()
	tu, ok := n.topics[name]
	if !ok {
		tu = &takeUp{done: make(chan struct{})}
		n.topics[name] = tu
		go n.takeUp(ctx, name, tu)
	}
	n.mu.Unlock()
	select {
	case <-tu.done:
		return tu.t, tu.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errUnknownTopic = errors.New("unknown topic")

func (n *Node) takeUp(ctx context.Context, name string, tu *takeUp) {
	t, err := n.loadTopic(ctx, name)
	if err != nil {
		// Forget the failure so that a later request tries again (the topic may be created).
		n.mu.Lock()
		delete(n.topics, name)
		n.mu.Unlock()
		tu.err = err
		close(tu.done)
		return
	}
	tu.t = t
	close(tu.done)
	consume := make(map[int32]kgo.Offset)
	for p := range t.parts {
		if n.cfg.Ownership.Role(name, int32(p)) != membership.RoleNone {
			consume[int32(p)] = kgo.NewOffset().AtStart()
		}
	}
	n.kcl.AddConsumePartitions(map[string]map[int32]kgo.Offset{name: consume})
	n.checkCaughtUp(t)
	n.log.Info("topic taken up", LogKeyTopic, name, "partitions", len(t.parts), "epoch", t.epoch)
}

func (n *Node) loadTopic(ctx context.Context, name string) (*topicState, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	details, err := n.adm.ListTopics(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("list topic %s: %w", name, err)
	}
	d, ok := details[name]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("topic %s: %w", name, errUnknownTopic)
	}
	if d.Err != nil {
		return nil, fmt.Errorf("topic %s: %w", name, d.Err)
	}
	retention := 24 * time.Hour
	if rc, err := n.adm.DescribeTopicConfigs(ctx, name); err == nil {
		if r, err := rc.On(name, nil); err == nil {
			for _, c := range r.Configs {
				if c.Key == "delete.retention.ms" && c.Value != nil {
					if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && ms >= 0 {
						retention = time.Duration(ms) * time.Millisecond
					}
				}
			}
		}
	}
	ends, err := n.adm.ListEndOffsets(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("end offsets %s: %w", name, err)
	}
	np := len(d.Partitions)
	t := &topicState{
		name:            name,
		epoch:           topicEpoch(name, d.ID),
		deleteRetention: retention,
		parts:           make([]*partitionState, np),
		endAtStart:      make([]int64, np),
		caughtUp:        make(chan struct{}),
	}
	for p := range t.parts {
		t.parts[p] = newPartitionState(n.cfg.Ownership.Term(name, int32(p)))
		if o, ok := ends.Lookup(name, int32(p)); ok && o.Err == nil {
			t.endAtStart[p] = o.Offset
		}
	}
	return t, nil
}

// topicEpoch derives the epoch from Kafka's topic id, so a recreated topic
// gets a new epoch; never 0 (0 means unknown in a progress).
func topicEpoch(name string, id kadm.TopicID) uint32 {
	h := xxhash.New()
	_, _ = h.Write(id[:])
	if id == (kadm.TopicID{}) {
		_, _ = h.WriteString(name)
	}
	return uint32(h.Sum64()) | 1
}

func (n *Node) checkCaughtUp(t *topicState) {
	for p, ps := range t.parts {
		if n.cfg.Ownership.Role(t.name, int32(p)) == membership.RoleNone {
			continue
		}
		ps.mu.RLock()
		next := ps.next
		ps.mu.RUnlock()
		if next < t.endAtStart[p] {
			return
		}
	}
	t.caughtUpOnce.Do(func() { close(t.caughtUp) })
}

// loaded returns a taken-up topic, or nil.
func (n *Node) loaded(name string) *topicState {
	n.mu.Lock()
	defer n.mu.Unlock()
	tu := n.topics[name]
	if tu == nil {
		return nil
	}
	select {
	case <-tu.done:
		return tu.t
	default:
		return nil
	}
}

func (n *Node) consume(ctx context.Context) {
	var buf []byte
	for {
		fetches := n.kcl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			n.metrics.fetchErrors.Inc()
			n.log.Warn("fetch", LogKeyTopic, topic, LogKeyPartition, p, "err", err)
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) == 0 {
				return
			}
			t := n.loaded(fp.Topic)
			if t == nil || int(fp.Partition) >= len(t.parts) {
				return
			}
			buf = n.applyAndPublish(t, fp.Partition, fp.Records, buf)
			n.checkCaughtUp(t)
		})
	}
}

// applyAndPublish applies a batch to the partition's state, then publishes
// each record as a change (when this node is the primary), in offset order.
func (n *Node) applyAndPublish(t *topicState, partition int32, recs []*kgo.Record, buf []byte) []byte {
	ps := t.parts[partition]
	primary := n.cfg.Ownership.Role(t.name, partition) == membership.RolePrimary
	changes := make([]proto.Change, 0, len(recs))
	ps.mu.Lock()
	for _, kr := range recs {
		if kr.Offset < ps.next {
			continue
		}
		r := toRecord(kr)
		ps.apply(r)
		if primary {
			ps.seq++
			changes = append(changes, proto.Change{Epoch: t.epoch, Partition: partition, Owner: ps.term, Seq: ps.seq, Record: *r})
		}
	}
	ps.mu.Unlock()
	n.metrics.records.Add(float64(len(recs)))
	subject := n.subjects.Event(t.name, partition)
	for i := range changes {
		buf = proto.AppendChange(buf[:0], &changes[i])
		if err := n.cfg.NATS.Publish(subject, buf); err != nil {
			// The edges see the sequence gap and fill it from state pages.
			n.metrics.publishErrors.Inc()
			n.log.Warn("publish", LogKeyTopic, t.name, LogKeyPartition, partition, "err", err)
			continue
		}
		n.metrics.published.Inc()
	}
	return buf
}

func toRecord(kr *kgo.Record) *proto.Record {
	r := &proto.Record{
		Offset:    kr.Offset,
		TimeMs:    kr.Timestamp.UnixMilli(),
		Key:       kr.Key,
		KeyNull:   kr.Key == nil,
		Value:     kr.Value,
		Tombstone: kr.Value == nil,
	}
	for _, h := range kr.Headers {
		if h.Key == "etag" && !r.EtagHeader {
			r.Etag, r.EtagHeader = string(h.Value), true
		}
		r.Headers = append(r.Headers, proto.Header{Key: h.Key, Value: h.Value})
	}
	if !r.EtagHeader && !r.Tombstone {
		r.Etag = strconv.FormatUint(xxhash.Sum64(kr.Value), 36)
	}
	return r
}

// horizon is how long the topic's tombstones are surely kept, here and in Kafka.
func (n *Node) horizon(t *topicState) time.Duration {
	return min(n.cfg.TombstoneHorizon, t.deleteRetention)
}

func (n *Node) janitor(ctx context.Context) {
	tick := time.NewTicker(min(n.cfg.TombstoneHorizon/10, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n.mu.Lock()
		var ts []*topicState
		for _, tu := range n.topics {
			select {
			case <-tu.done:
				if tu.t != nil {
					ts = append(ts, tu.t)
				}
			default:
			}
		}
		n.mu.Unlock()
		for _, t := range ts {
			cutoff := time.Now().Add(-n.horizon(t)).UnixMilli()
			for _, ps := range t.parts {
				ps.mu.Lock()
				dropped := ps.dropTombstonesBefore(cutoff)
				ps.mu.Unlock()
				n.metrics.tombstonesDropped.Add(float64(dropped))
			}
		}
	}
}

func (n *Node) handleMeta(m *nats.Msg) {
	reply := func(meta *proto.Meta) {
		if m.Reply != "" {
			_ = m.Respond(proto.AppendMeta(nil, meta))
		}
	}
	n.metrics.metaRequests.Inc()
	name, err := n.subjects.ParseMetaSubject(m.Subject)
	if err == nil {
		err = proto.DecodeMetaRequest(m.Data)
	}
	if err != nil {
		n.metrics.badRequests.Inc()
		reply(&proto.Meta{Status: proto.StatusError, Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CatchUpWait+10*time.Second)
	defer cancel()
	t, err := n.topic(ctx, name)
	if errors.Is(err, errUnknownTopic) {
		reply(&proto.Meta{Status: proto.StatusUnknownTopic, Error: err.Error()})
		return
	}
	if err != nil {
		reply(&proto.Meta{Status: proto.StatusError, Error: err.Error()})
		return
	}
	caughtUp := false
	select {
	case <-t.caughtUp:
		caughtUp = true
	case <-time.After(n.cfg.CatchUpWait):
	}
	reply(&proto.Meta{
		Status:     proto.StatusOK,
		Epoch:      t.epoch,
		Partitions: int32(len(t.parts)),
		HorizonMs:  n.horizon(t).Milliseconds(),
		CaughtUp:   caughtUp,
	})
}

func (n *Node) handleState(m *nats.Msg) {
	reply := func(p *proto.StatePage) {
		if m.Reply != "" {
			_ = m.Respond(proto.AppendStatePage(nil, p))
		}
	}
	n.metrics.stateRequests.Inc()
	name, partition, err := n.subjects.ParseStateSubject(m.Subject)
	var q proto.StateRequest
	if err == nil {
		q, err = proto.DecodeStateRequest(m.Data)
	}
	if err != nil {
		n.metrics.badRequests.Inc()
		reply(&proto.StatePage{Status: proto.StatusError, Error: err.Error()})
		return
	}
	if n.cfg.Ownership.Role(name, partition) == membership.RoleNone {
		return // another node answers
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := n.topic(ctx, name)
	switch {
	case errors.Is(err, errUnknownTopic):
		reply(&proto.StatePage{Status: proto.StatusUnknownTopic, Partition: partition, Error: err.Error()})
		return
	case err != nil:
		reply(&proto.StatePage{Status: proto.StatusError, Partition: partition, Error: err.Error()})
		return
	case int(partition) >= len(t.parts):
		reply(&proto.StatePage{Status: proto.StatusError, Epoch: t.epoch, Partition: partition,
			Error: fmt.Sprintf("partition %d of %d", partition, len(t.parts))})
		return
	}
	maxBytes := q.MaxBytes
	if maxBytes <= 0 || maxBytes > n.cfg.MaxPageBytes {
		maxBytes = n.cfg.MaxPageBytes
	}
	ps := t.parts[partition]
	page := proto.StatePage{Status: proto.StatusOK, Epoch: t.epoch, Partition: partition}
	ps.mu.RLock()
	page.Records, page.More = ps.page(q.Since, maxBytes)
	page.Owner, page.Seq, page.Next = ps.term, ps.seq, ps.next
	ps.mu.RUnlock()
	page.Cursor = q.Since
	if len(page.Records) > 0 {
		page.Cursor = page.Records[len(page.Records)-1].Offset + 1
	}
	reply(&page)
}
