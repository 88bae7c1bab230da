package cache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/membership"
)

// topicState is one topic known to this node. Which of its partitions the
// node holds follows the ownership; parts[p] is nil where it holds nothing.
type topicState struct {
	name            string
	id              [16]byte // Kafka's topic id
	leaders         []int32  // partition leaders, as metadata last gave them
	epoch           uint32
	deleteRetention atomic.Int64  // nanoseconds: Kafka's delete.retention.ms, or its default while unread
	retentionRead   atomic.Bool   // deleteRetention was read from the topic's config
	reconciled      chan struct{} // closed after the first reconcile that saw the topic
	onDemand        bool          // taken up for a request, not a bootstrap topic
	lastUsed        atomic.Int64  // unix nanos of the last request for it

	mu    sync.RWMutex
	parts []*partitionState
	gone  bool // deleted or recreated in Kafka: reconcile drops it
}

func (t *topicState) partition(p int32) *partitionState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p < 0 || int(p) >= len(t.parts) {
		return nil
	}
	return t.parts[p]
}

func (t *topicState) leader(p int32) int32 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p >= 0 && int(p) < len(t.leaders) {
		return t.leaders[p]
	}
	return -1
}

// setLeader keeps a partition's leader as metadata last gave it.
func (t *topicState) setLeader(p, leader int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p >= 0 && int(p) < len(t.leaders) {
		t.leaders[p] = leader
	}
}

// used records a request for the topic.
func (t *topicState) used() { t.lastUsed.Store(time.Now().UnixNano()) }

// partitions is the topic's partition count as this node knows it.
func (t *topicState) partitions() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.parts)
}

// held returns the partitions this node holds.
func (t *topicState) held() []*partitionState {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []*partitionState
	for _, ps := range t.parts {
		if ps != nil {
			out = append(out, ps)
		}
	}
	return out
}

// caughtUp reports whether every held partition reached the end offset it
// had when it was taken up.
func (t *topicState) caughtUp() bool {
	for _, ps := range t.held() {
		ps.mu.RLock()
		ok := ps.caughtUp
		ps.mu.RUnlock()
		if !ok {
			return false
		}
	}
	return true
}

// waitCaughtUp polls caughtUp until it holds, for at most wait.
func (t *topicState) waitCaughtUp(ctx context.Context, wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !t.caughtUp() {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// takeUp is a topic being taken up; done is closed when err is set or the
// topic's partitions were assigned.
type takeUp struct {
	done chan struct{}
	t    *topicState // set under Node.mu once loaded
	err  error
}

var errUnknownTopic = errors.New("unknown topic")

// topic returns the topic's state, taking the topic up on first demand.
func (n *Node) topic(ctx context.Context, name string) (*topicState, error) {
	n.mu.Lock()
	tu, ok := n.topics[name]
	if !ok {
		if len(n.topics) >= n.cfg.MaxTopics {
			n.mu.Unlock()
			n.metrics.topicsRefused.Inc()
			n.dropIdleTopics(time.Now())
			return nil, fmt.Errorf("topic %s: %w (%d held)", name, errTooManyTopics, n.cfg.MaxTopics)
		}
		tu = &takeUp{done: make(chan struct{})}
		n.topics[name] = tu
		go n.takeUp(name, tu)
	}
	n.mu.Unlock()
	select {
	case <-tu.done:
		if tu.t != nil {
			tu.t.used()
		}
		return tu.t, tu.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var errTooManyTopics = errors.New("too many topics held")

// dropIdleTopics drops the topics taken up on demand that got no request
// for TopicIdle: reconcile releases them, and a later request takes them up
// again.
func (n *Node) dropIdleTopics(now time.Time) {
	for _, t := range n.loadedTopics() {
		if !t.onDemand || now.Sub(time.Unix(0, t.lastUsed.Load())) < n.cfg.TopicIdle {
			continue
		}
		t.mu.Lock()
		drop := !t.gone
		t.gone = true
		t.mu.Unlock()
		if drop {
			n.metrics.topicsIdleDropped.Inc()
			n.log.Info("dropping idle topic", LogKeyTopic, t.name, "idle", now.Sub(time.Unix(0, t.lastUsed.Load())).Round(time.Second))
			n.signal()
		}
	}
}

func (n *Node) takeUp(name string, tu *takeUp) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
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
	n.mu.Lock()
	tu.t = t
	n.mu.Unlock()
	n.signal()
	select {
	case <-t.reconciled:
	case <-ctx.Done():
	}
	close(tu.done)
	n.log.Info("topic taken up", LogKeyTopic, name, "partitions", t.partitions(), "held", len(t.held()), "epoch", t.epoch)
}

func (n *Node) loadTopic(ctx context.Context, name string) (*topicState, error) {
	details, err := n.listTopic(ctx, name)
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
	retention, err := n.deleteRetention(ctx, name)
	if err != nil {
		n.topicConfigUnreadable(name, err)
	}
	leaders := make([]int32, len(d.Partitions))
	for p, pd := range d.Partitions {
		if int(p) < len(leaders) {
			leaders[p] = pd.Leader
		}
	}
	t := &topicState{
		name:       name,
		id:         d.ID,
		leaders:    leaders,
		epoch:      topicEpoch(name, d.ID),
		reconciled: make(chan struct{}),
		parts:      make([]*partitionState, len(d.Partitions)),
		onDemand:   !slices.Contains(n.cfg.Bootstrap, name),
	}
	t.used()
	t.deleteRetention.Store(int64(retention))
	t.retentionRead.Store(err == nil)
	return t, nil
}

// kafkaDeleteRetention is Kafka's default delete.retention.ms, assumed
// while a topic's own cannot be read.
const kafkaDeleteRetention = 24 * time.Hour

// deleteRetention reads the topic's delete.retention.ms. On error it
// returns Kafka's default: the horizon is then the shorter of it and
// TombstoneHorizon, and the topic check reads it again.
func (n *Node) deleteRetention(ctx context.Context, name string) (time.Duration, error) {
	rc, err := n.adm.DescribeTopicConfigs(ctx, name)
	if err != nil {
		return kafkaDeleteRetention, fmt.Errorf("describe configs of %s: %w", name, err)
	}
	r, err := rc.On(name, nil)
	if err == nil {
		err = r.Err
	}
	if err != nil {
		return kafkaDeleteRetention, fmt.Errorf("describe configs of %s: %w", name, err)
	}
	for _, c := range r.Configs {
		if c.Key == "delete.retention.ms" && c.Value != nil {
			ms, err := strconv.ParseInt(*c.Value, 10, 64)
			if err != nil || ms < 0 {
				return kafkaDeleteRetention, fmt.Errorf("delete.retention.ms of %s: bad value %q", name, *c.Value)
			}
			return time.Duration(ms) * time.Millisecond, nil
		}
	}
	return kafkaDeleteRetention, nil // not listed: Kafka's default applies
}

func (n *Node) topicConfigUnreadable(name string, err error) {
	n.metrics.topicConfigUnreadable.Inc()
	n.log.Warn("topic config unreadable: tombstone horizon is the shorter of TombstoneHorizon and Kafka's default delete.retention.ms until it is read",
		LogKeyTopic, name, "horizon", min(n.cfg.TombstoneHorizon, kafkaDeleteRetention), "err", err)
}

// rereadRetention reads again a delete.retention.ms that could not be read
// when the topic was taken up (at each topic check).
func (n *Node) rereadRetention(ctx context.Context, t *topicState) {
	if t.retentionRead.Load() {
		return
	}
	retention, err := n.deleteRetention(ctx, t.name)
	if err != nil {
		n.topicConfigUnreadable(t.name, err)
		return
	}
	t.deleteRetention.Store(int64(retention))
	t.retentionRead.Store(true)
	n.log.Info("topic config read", LogKeyTopic, t.name, "delete.retention", retention)
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

// loaded returns a loaded topic, or nil.
func (n *Node) loaded(name string) *topicState {
	n.mu.Lock()
	defer n.mu.Unlock()
	if tu := n.topics[name]; tu != nil {
		return tu.t
	}
	return nil
}

func (n *Node) loadedTopics() []*topicState {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*topicState, 0, len(n.topics))
	for _, tu := range n.topics {
		if tu.t != nil {
			out = append(out, tu.t)
		}
	}
	return out
}

// reconcile makes the held partitions follow the ownership: it takes up
// partitions this node now owns (consuming them from the start) and releases
// the others. It runs on the consume goroutine between polls.
func (n *Node) reconcile(ctx context.Context) {
	for _, t := range n.loadedTopics() {
		var acquire, release []int32
		t.mu.RLock()
		gone := t.gone
		for p, ps := range t.parts {
			role := n.cfg.Ownership.Role(t.name, int32(p))
			if gone {
				role = membership.RoleNone
			}
			switch {
			case role != membership.RoleNone && ps == nil:
				acquire = append(acquire, int32(p))
			case role == membership.RoleNone && ps != nil:
				release = append(release, int32(p))
			case ps != nil:
				n.setRole(t, ps, role)
			}
		}
		t.mu.RUnlock()
		if len(release) > 0 {
			n.kcl.RemoveConsumePartitions(map[string][]int32{t.name: release})
			t.mu.Lock()
			for _, p := range release {
				if sub := t.parts[p].sub; sub != nil {
					_ = sub.Unsubscribe()
				}
				t.parts[p].release()
				t.parts[p] = nil
			}
			t.mu.Unlock()
			n.log.Info("released partitions", LogKeyTopic, t.name, "partitions", release)
		}
		if len(acquire) > 0 {
			n.acquire(ctx, t, acquire)
		}
		select {
		case <-t.reconciled:
		default:
			close(t.reconciled)
		}
		if gone {
			// Forget the old incarnation's metadata (its topic id) in both clients.
			n.kcl.PurgeTopicsFromClient(t.name)
			n.reader.PurgeTopicsFromClient(t.name)
			n.mu.Lock()
			if tu := n.topics[t.name]; tu != nil && tu.t == t {
				delete(n.topics, t.name)
			}
			n.mu.Unlock()
			n.log.Info("dropped topic", LogKeyTopic, t.name)
		}
	}
	n.metrics.updateHeld(n.loadedTopics())
	n.checkNodeCaughtUp()
}

func (n *Node) acquire(ctx context.Context, t *topicState, parts []int32) {
	ends, err := n.adm.ListEndOffsets(ctx, t.name)
	if err != nil {
		n.log.Warn("end offsets", LogKeyTopic, t.name, "err", err)
		n.signal() // try again after the next poll
		return
	}
	consume := make(map[int32]kgo.Offset, len(parts))
	t.mu.Lock()
	for _, p := range parts {
		end := int64(0)
		if o, ok := ends.Lookup(t.name, p); ok && o.Err == nil {
			end = o.Offset
		}
		ps := newPartitionState(p, end)
		ps.role = n.cfg.Ownership.Role(t.name, p)
		if ps.role == membership.RolePrimary {
			ps.since = time.Now().UnixNano()
		}
		n.maybeServeState(t, ps) // at once if there is nothing to catch up with
		t.parts[p] = ps
		consume[p] = kgo.NewOffset().AtStart()
	}
	t.mu.Unlock()
	n.kcl.AddConsumePartitions(map[string]map[int32]kgo.Offset{t.name: consume})
	n.log.Info("acquired partitions", LogKeyTopic, t.name, "partitions", parts)
}

// maybeServeState joins the partition's state queue group once the node has
// caught up on it; before that another holder answers, or nobody ("no
// responders", and the edge asks again). It runs on the consume goroutine.
func (n *Node) maybeServeState(t *topicState, ps *partitionState) {
	if ps.sub != nil {
		return
	}
	ps.mu.RLock()
	ok := ps.caughtUp && !ps.released
	ps.mu.RUnlock()
	if !ok {
		return
	}
	if err := n.serveState(t, ps); err != nil {
		n.log.Warn("serve state", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "err", err)
	}
}

// checkTopic compares a topic with Kafka's metadata (each
// TopicCheckInterval). A topic deleted or recreated (a new topic id) is
// dropped and, if it exists again, taken up anew under its new epoch, so edges
// see the epoch change and reset their clients instead of mixing two topics.
// Partitions added to a topic are taken up.
func (n *Node) checkTopic(ctx context.Context, t *topicState) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	details, err := n.adm.ListTopics(cctx, t.name)
	if err != nil {
		return // Kafka unreachable: try again later
	}
	d, ok := details[t.name]
	if ok && d.Err == nil && d.ID == t.id {
		n.rereadRetention(cctx, t)
	}
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) || (d.Err == nil && d.ID != t.id):
		n.log.Warn("topic deleted or recreated", LogKeyTopic, t.name)
		t.mu.Lock()
		t.gone = true
		t.mu.Unlock()
		n.signal()
		// Take the new incarnation up once the old one is dropped.
		go func() {
			if waitDropped(ctx, n, t) && ok && d.Err == nil {
				if _, err := n.topic(ctx, t.name); err != nil && ctx.Err() == nil {
					n.log.Warn("take up recreated topic", LogKeyTopic, t.name, "err", err)
				}
			}
		}()
	case d.Err == nil && len(d.Partitions) > t.partitions():
		t.mu.Lock()
		for len(t.parts) < len(d.Partitions) {
			t.parts = append(t.parts, nil)
			t.leaders = append(t.leaders, d.Partitions[int32(len(t.parts)-1)].Leader)
		}
		t.mu.Unlock()
		n.log.Info("partitions added", LogKeyTopic, t.name, "partitions", len(d.Partitions))
		n.signal()
	}
}

func waitDropped(ctx context.Context, n *Node, t *topicState) bool {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		n.mu.Lock()
		tu := n.topics[t.name]
		n.mu.Unlock()
		if tu == nil || tu.t != t {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// setRole records a held partition's role; a node that becomes primary says
// where it stands at once, so edges fill what nobody published meanwhile.
func (n *Node) setRole(t *topicState, ps *partitionState, role membership.Role) {
	ps.mu.Lock()
	was := ps.role
	ps.role = role
	next := ps.next
	became := role == membership.RolePrimary && was != membership.RolePrimary
	if became {
		ps.since = time.Now().UnixNano()
	}
	since := ps.since
	ps.mu.Unlock()
	if became {
		n.log.Info("became primary", LogKeyTopic, t.name, LogKeyPartition, ps.partition, "next", next)
		n.publishHead(t, ps.partition, next, since)
	}
}

// checkNodeCaughtUp tells the ownership once every held partition has caught up.
func (n *Node) checkNodeCaughtUp() {
	if n.caughtUpSaid.Load() || !n.topicsRead.Load() {
		return
	}
	for _, name := range n.cfg.Bootstrap {
		if n.loaded(name) == nil {
			return
		}
	}
	for _, t := range n.loadedTopics() {
		select {
		case <-t.reconciled:
		default:
			return // its partitions are not assigned yet
		}
		if !t.caughtUp() {
			return
		}
	}
	n.caughtUpSaid.Store(true)
	n.cfg.Ownership.SetCaughtUp(true)
	n.log.Info("caught up with every held partition")
}
