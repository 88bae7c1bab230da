// Package cache is a cache node: it consumes the Kafka partitions it owns
// (direct partition consumption, no consumer group), keeps each partition's
// compacted state, publishes every change on NATS when it is a partition's
// primary, and answers edges' state and metadata requests.
//
// Concurrency: one goroutine (consume) polls Kafka, applies records to a
// partition's state under that partition's lock and then publishes them in
// offset order; it also carries out ownership changes between polls
// (reconcile), so no fetch of a released partition is ever applied to a new
// state. NATS request handlers run on goroutines of their own, bounded by
// Config.MaxConcurrentRequests. Lock order: Node.mu, topicState.mu,
// partitionState.mu.
//
// Config (config.go): a zero field is its default (DefaultConfig lists
// them); a value out of range is a *ConfigError naming the field.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/membership"
	"github.com/ssekafka/ssekafka/proto"
)

// Log keys.
const (
	LogKeyTopic     = "topic"
	LogKeyPartition = "partition"
)

// Node is a cache node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	subjects proto.Subjects
	kcl      *kgo.Client // consumes
	reader   *kgo.Client // reads values back; its own connections, so no wait behind the consumer's long polls
	adm      *kadm.Client
	metrics  *metrics
	sem      chan struct{}
	wake     chan struct{} // capacity 1: reconcile before the next poll
	values   *values
	apart    recentValues // values sent apart lately

	publisher string // this node's name in its heads (see publisherName)

	mu     sync.Mutex
	topics map[string]*takeUp

	subs         []*nats.Subscription
	serving      atomic.Bool // subscribed to requests
	topicsRead   atomic.Bool // asked the other nodes which topics they hold
	caughtUpSaid atomic.Bool // told the ownership this node is caught up
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
	vals, err := newValues(cfg.MaxBytes)
	if err != nil {
		return nil, err
	}
	kcl, err := kgo.NewClient(opts...)
	if err != nil {
		vals.close()
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	reader, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Brokers...)}, cfg.KafkaOptions...)...)
	if err != nil {
		vals.close()
		kcl.Close()
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	n := &Node{
		values:   vals,
		apart:    recentValues{max: int(min(cfg.ApartBytes, math.MaxInt32))},
		reader:   reader,
		cfg:      cfg,
		log:      cfg.Logger,
		subjects: proto.Subjects{Prefix: cfg.SubjectPrefix},
		kcl:      kcl,
		adm:      kadm.NewClient(kcl),
		metrics:  newMetrics(cfg.Registerer),
		sem:      make(chan struct{}, cfg.MaxConcurrentRequests),
		wake:     make(chan struct{}, 1),
		topics:   make(map[string]*takeUp),
	}
	n.publisher = publisherName(cfg.Ownership)
	return n, nil
}

// publisherName is the node's name in its heads: its name in the cluster
// when the ownership has one (membership.Cluster), else the host's.
func publisherName(o membership.Ownership) string {
	if named, ok := o.(interface{ Name() string }); ok {
		return named.Name()
	}
	host, _ := os.Hostname()
	return host
}

// Run serves requests and consumes until ctx ends or a fatal error occurs.
func (n *Node) Run(ctx context.Context) error {
	defer n.kcl.Close()
	defer n.reader.Close()
	defer n.values.close()
	defer func() {
		for _, s := range n.subs {
			_ = s.Unsubscribe()
		}
		n.leaveStateGroups()
	}()
	if err := n.subscribe(ctx, n.subjects.MetaAll(), n.handleMeta); err != nil {
		return err
	}
	if err := n.cfg.NATS.Flush(); err != nil {
		return fmt.Errorf("nats flush: %w", err)
	}
	n.serving.Store(true)
	n.learnTopics(ctx)
	// Answer others' topic questions only now, so as not to answer our own.
	if err := n.subscribe(ctx, n.subjects.Topics(), n.handleTopics); err != nil {
		return err
	}
	for _, t := range n.cfg.Bootstrap {
		go func() {
			if _, err := n.topic(ctx, t); err != nil && ctx.Err() == nil {
				n.log.Error("bootstrap topic", LogKeyTopic, t, "err", err)
			}
		}()
	}
	go n.watchOwnership(ctx)
	go every(ctx, min(n.cfg.TombstoneHorizon/10, time.Minute), n.dropOldTombstones)
	go every(ctx, n.cfg.HeadInterval, n.publishHeads)
	go every(ctx, n.cfg.TopicCheckInterval, func() {
		for _, t := range n.loadedTopics() {
			n.checkTopic(ctx, t)
		}
	})
	go every(ctx, min(n.cfg.TopicIdle/4, time.Minute), func() { n.dropIdleTopics(time.Now()) })
	n.consume(ctx)
	return nil
}

// subscribe handles subject's requests on goroutines of their own.
func (n *Node) subscribe(ctx context.Context, subject string, handle func(*nats.Msg)) error {
	s, err := n.cfg.NATS.Subscribe(subject, func(m *nats.Msg) {
		select {
		case n.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		go func() {
			defer func() { <-n.sem }()
			handle(m)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	_ = s.SetPendingLimits(-1, -1)
	n.subs = append(n.subs, s)
	return nil
}

// learnTopics asks the running nodes which topics they hold, so that a
// joining node takes up its share of on-demand topics too.
func (n *Node) learnTopics(ctx context.Context) {
	defer n.topicsRead.Store(true)
	defer n.signal()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := n.cfg.NATS.RequestWithContext(rctx, n.subjects.Topics(), nil)
	if err != nil {
		return // no other node, or none answered: nothing to learn
	}
	for _, t := range strings.Fields(string(msg.Data)) {
		if proto.ValidTopic(t) == nil {
			go func() {
				if _, err := n.topic(ctx, t); err != nil && ctx.Err() == nil {
					n.log.Warn("take up known topic", LogKeyTopic, t, "err", err)
				}
			}()
		}
	}
}

// inboxPrefix begins every reply subject a cache answers: nats.go's
// inboxes (edges and caches use its default, or an inbox under it).
const inboxPrefix = "_INBOX."

// answers reports whether the cache may answer m: its reply subject is an
// inbox, or it has none. The cache's NATS user may publish on
// <prefix>.ev.> by design, so a request whose reply names a change subject
// would make it publish there: such a request is not answered, counted
// and logged.
func (n *Node) answers(m *nats.Msg) bool {
	if m.Reply == "" || strings.HasPrefix(m.Reply, inboxPrefix) {
		return true
	}
	n.metrics.badReplies.Inc()
	n.log.Warn("request not answered: its reply subject is not an inbox", "subject", m.Subject, "reply", m.Reply)
	return false
}

func (n *Node) handleTopics(m *nats.Msg) {
	if m.Reply == "" || !n.answers(m) {
		return
	}
	var b strings.Builder
	for _, t := range n.loadedTopics() {
		b.WriteString(t.name)
		b.WriteByte('\n')
	}
	_ = m.Respond([]byte(b.String()))
}

// Ready reports whether the node serves requests, every bootstrap topic is
// taken up, and every partition it holds is caught up.
func (n *Node) Ready() bool {
	if !n.serving.Load() || !n.topicsRead.Load() {
		return false
	}
	for _, name := range n.cfg.Bootstrap {
		if n.loaded(name) == nil {
			return false
		}
	}
	for _, t := range n.loadedTopics() {
		if !t.caughtUp() {
			return false
		}
	}
	return true
}

func (n *Node) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// watchOwnership wakes the consume loop when roles may have changed. It
// takes the next change's channel before it signals, so a change made while
// the loop reconciles is never missed.
func (n *Node) watchOwnership(ctx context.Context) {
	ch := n.cfg.Ownership.Changed()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ch = n.cfg.Ownership.Changed()
			n.signal()
		}
	}
}

// every calls fn each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// dropOldTombstones forgets deletes past the horizon (docs/architecture.md rule 3).
func (n *Node) dropOldTombstones() {
	for _, t := range n.loadedTopics() {
		cutoff := time.Now().Add(-n.horizon(t)).UnixMilli()
		for _, ps := range t.held() {
			ps.mu.Lock()
			dropped := ps.dropTombstonesBefore(cutoff)
			ps.mu.Unlock()
			n.metrics.tombstonesDropped.Add(float64(dropped))
		}
	}
}

// horizon is how long the topic's tombstones are surely kept, here and in Kafka.
func (n *Node) horizon(t *topicState) time.Duration {
	return min(n.cfg.TombstoneHorizon, time.Duration(t.deleteRetention.Load()))
}

func (n *Node) handleMeta(m *nats.Msg) {
	if !n.answers(m) {
		return
	}
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
	// Every node that knows the topic answers (the edge takes the first
	// reply): while ownership moves, or after its holders crashed, a node
	// that holds nothing yet may be the only one left to say what the topic
	// is; silence would hold the edge until its request timed out.
	caughtUp := t.waitCaughtUp(ctx, n.cfg.CatchUpWait)
	reply(&proto.Meta{
		Status:     proto.StatusOK,
		Epoch:      t.epoch,
		Partitions: int32(t.partitions()),
		HorizonMs:  n.horizon(t).Milliseconds(),
		CaughtUp:   caughtUp,
	})
}

// leaveStateGroups unsubscribes every held partition's state requests, so
// that a stopped node leaves them to live holders (its values and Kafka
// client are closed: it could answer only errors).
func (n *Node) leaveStateGroups() {
	n.mu.Lock() // nothing is taken under Node.mu (docs/LOCKS.md)
	var held []*topicState
	for _, tu := range n.topics {
		if tu.t != nil {
			held = append(held, tu.t)
		}
	}
	n.mu.Unlock()
	for _, t := range held {
		t.mu.RLock()
		for _, ps := range t.parts {
			if ps == nil {
				continue
			}
			ps.mu.RLock()
			sub := ps.sub
			ps.mu.RUnlock()
			if sub != nil {
				_ = sub.Unsubscribe()
			}
		}
		t.mu.RUnlock()
	}
}

// serveState answers state requests for one held partition. Its holders
// share a queue group, so one of them answers each request; nobody holding
// the partition gives the edge "no responders" at once. A node joins the
// group only once caught up on the partition (see maybeServeState), so a
// holder that has not consumed what others published is never asked.
func (n *Node) serveState(t *topicState, ps *partitionState) error {
	sub, err := n.cfg.NATS.QueueSubscribe(n.subjects.State(t.name, ps.partition), "cache", func(m *nats.Msg) {
		n.sem <- struct{}{}
		go func() {
			defer func() { <-n.sem }()
			n.handleState(t, ps, m)
		}()
	})
	if err != nil {
		return fmt.Errorf("subscribe state %s/%d: %w", t.name, ps.partition, err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	ps.mu.Lock()
	ps.sub = sub
	ps.mu.Unlock()
	return nil
}

func (n *Node) handleState(t *topicState, ps *partitionState, m *nats.Msg) {
	if !n.answers(m) {
		return
	}
	switch {
	case proto.IsValueRequest(m.Data):
		n.handleValue(t, ps, m)
		return
	case proto.IsKeyRequest(m.Data):
		n.handleKey(t, ps, m)
		return
	}
	reply := func(p *proto.StatePage) {
		if m.Reply != "" {
			_ = m.Respond(proto.AppendStatePage(nil, p))
		}
	}
	n.metrics.stateRequests.Inc()
	t.used()
	q, err := proto.DecodeStateRequest(m.Data)
	if err != nil {
		n.metrics.badRequests.Inc()
		reply(&proto.StatePage{Status: proto.StatusError, Error: err.Error()})
		return
	}
	maxBytes := q.MaxBytes
	if maxBytes <= 0 || maxBytes > n.cfg.MaxPageBytes {
		maxBytes = n.cfg.MaxPageBytes
	}
	// A page is one NATS message: records that would not fit in one alone
	// go with their values apart (see apart.go).
	room := n.messageRoom()
	maxBytes = min(maxBytes, room)
	page := proto.StatePage{Status: proto.StatusOK, Epoch: t.epoch, Partition: ps.partition}
	ps.mu.RLock()
	if !ps.answers() {
		// Released while the request waited, or not caught up: an empty
		// page here would make the edge skip what it lacks. It asks again.
		ps.mu.RUnlock()
		n.metrics.notOwnerReplies.Inc()
		reply(&proto.StatePage{Status: proto.StatusNotOwner, Epoch: t.epoch, Partition: ps.partition, Error: "partition not held or not caught up"})
		return
	}
	page.Records, page.More = ps.page(q.Since, maxBytes, room)
	page.Next = ps.next
	ps.mu.RUnlock()
	for i := range page.Records {
		if page.Records[i].Apart {
			n.metrics.recordsApart.Inc()
		}
	}
	page.Cursor = q.Since
	if len(page.Records) > 0 {
		page.Cursor = page.Records[len(page.Records)-1].Offset + 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cut int64
	if page.Records, cut, err = n.fillValues(ctx, t, ps.partition, page.Records); err != nil {
		n.log.Warn("state page values", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "err", err)
		reply(&proto.StatePage{Status: proto.StatusError, Epoch: t.epoch, Partition: ps.partition, Error: err.Error()})
		return
	}
	if cut >= 0 {
		page.Cursor, page.More = cut, true
	}
	reply(&page)
}
