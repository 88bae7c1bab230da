package membership

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/memberlist"
)

// Config configures a Cluster. Zero means the documented default; NewCluster
// refuses any other invalid value with an error naming the field.
type Config struct {
	// Name is this node's unique name. Default: host name and a random suffix.
	Name string
	// Bind is the gossip address, host:port; port 0 picks a free one. Default "127.0.0.1:7946".
	Bind string
	// Join lists gossip addresses of existing members; empty starts a new cluster.
	Join []string
	// Replicas is how many nodes consume each partition: the primary and
	// Replicas-1 hot standbys. Default 2.
	Replicas int
	// StatusAddr is advertised to the other members (for the status endpoint).
	StatusAddr string
	// ProbeInterval, ProbeTimeout and SuspicionMult tune failure detection
	// (memberlist's). Defaults: memberlist's LAN values (1s, 500ms, 4).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// GossipInterval is memberlist's gossip period. Default 200ms.
	GossipInterval time.Duration
	// Logger receives membership logs. Default: discard.
	Logger *slog.Logger
}

// Member is a live member as this node sees it.
type Member struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	Settled    bool   `json:"caughtUp"`
	StatusAddr string `json:"status,omitempty"`
}

// Cluster is an Ownership backed by memberlist.
//
// Assignment, for a partition: rank the live members by a rendezvous hash of
// (member, topic, partition). The primary is the first of the ranking over
// the settled members (those that said they are caught up); the standbys are
// the top Replicas of the ranking over all members, and the settled top
// Replicas, less the primary. So a node that joins consumes its share as a
// standby and becomes primary of nothing until it is caught up; the nodes
// that held a partition keep it until then; and when a primary dies, its
// settled standby is next. Before any member is settled (a cold start), the
// ranking over all members decides.
type Cluster struct {
	cfg Config
	log *slog.Logger
	ml  *memberlist.Memberlist

	announce chan struct{} // capacity 1: gossip this node's metadata anew
	stop     chan struct{} // closed by Leave or Shutdown: the announcer ends
	stopOnce sync.Once

	mu       sync.Mutex
	members  []Member // live, sorted by name
	settled  bool     // this node's own state
	changed  chan struct{}
	metaSelf []byte
}

// announceTimeout bounds how long the announcer waits for memberlist to
// send this node's new metadata.
const announceTimeout = 5 * time.Second

var _ Ownership = (*Cluster)(nil)

// validate refuses the values that are neither zero (the default) nor valid.
func (cfg *Config) validate() error {
	if cfg.Replicas < 0 {
		return fmt.Errorf("membership config: Replicas %d: must not be negative", cfg.Replicas)
	}
	if cfg.SuspicionMult < 0 {
		return fmt.Errorf("membership config: SuspicionMult %d: must not be negative", cfg.SuspicionMult)
	}
	for _, f := range []struct {
		name  string
		value time.Duration
	}{
		{"ProbeInterval", cfg.ProbeInterval},
		{"ProbeTimeout", cfg.ProbeTimeout},
		{"GossipInterval", cfg.GossipInterval},
	} {
		if f.value < 0 {
			return fmt.Errorf("membership config: %s %v: must not be negative", f.name, f.value)
		}
	}
	if cfg.Bind != "" {
		_, port, err := net.SplitHostPort(cfg.Bind)
		if err != nil {
			return fmt.Errorf("membership config: Bind %q: %w", cfg.Bind, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("membership config: Bind %q: port %q is not 0 to 65535", cfg.Bind, port)
		}
	}
	for i, addr := range cfg.Join {
		if addr == "" {
			return fmt.Errorf("membership config: Join[%d]: empty address", i)
		}
	}
	return nil
}

// NewCluster starts gossiping and joins cfg.Join.
func NewCluster(cfg Config) (*Cluster, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 2
	}
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:7946"
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s-%x", host, time.Now().UnixNano()&0xffffff)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("membership bind %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("membership bind %q: %w", cfg.Bind, err)
	}
	c := &Cluster{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}),
		announce: make(chan struct{}, 1), stop: make(chan struct{})}
	// A node that starts a cluster is settled; one that joins is not, until
	// the cache node says it caught up.
	c.settled = len(cfg.Join) == 0
	c.metaSelf = c.encodeMeta()

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertisePort = port
	if cfg.ProbeInterval > 0 {
		mc.ProbeInterval = cfg.ProbeInterval
	}
	if cfg.ProbeTimeout > 0 {
		mc.ProbeTimeout = cfg.ProbeTimeout
	}
	if cfg.SuspicionMult > 0 {
		mc.SuspicionMult = cfg.SuspicionMult
	}
	mc.GossipInterval = 200 * time.Millisecond
	if cfg.GossipInterval > 0 {
		mc.GossipInterval = cfg.GossipInterval
	}
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = log.New(slogWriter{cfg.Logger}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	c.ml = ml
	if port == 0 {
		c.cfg.Bind = net.JoinHostPort(host, strconv.Itoa(int(ml.LocalNode().Port)))
	}
	if len(cfg.Join) > 0 {
		if _, err := ml.Join(cfg.Join); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("membership join %v: %w", cfg.Join, err)
		}
	}
	go c.announcer()
	return c, nil
}

// announcer gossips this node's metadata each time SetCaughtUp changes it.
// memberlist.UpdateNode waits for the broadcast to go out (up to
// announceTimeout), which Ownership's methods must not do, so it runs here.
func (c *Cluster) announcer() {
	for {
		select {
		case <-c.stop:
			return
		case <-c.announce:
		}
		// memberlist calls NotifyUpdate for this node too, which updates the view.
		if err := c.ml.UpdateNode(announceTimeout); err != nil {
			select {
			case <-c.stop:
			default:
				c.log.Warn("membership: announce caught up", "err", err)
			}
		}
	}
}

func (c *Cluster) stopAnnouncer() { c.stopOnce.Do(func() { close(c.stop) }) }

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Addr is the gossip address this node listens on.
func (c *Cluster) Addr() string { return c.cfg.Bind }

// Leave tells the others this node is going, then stops gossiping.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.stopAnnouncer()
	err := c.ml.Leave(timeout)
	return errors.Join(err, c.ml.Shutdown())
}

// Shutdown stops gossiping without a goodbye, as a crash would.
func (c *Cluster) Shutdown() error {
	c.stopAnnouncer()
	return c.ml.Shutdown()
}

// Members returns the live members, sorted by name.
func (c *Cluster) Members() []Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.members)
}

// Changed implements Ownership.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// SetCaughtUp implements Ownership: once caught up, a node is settled for
// good (it may become primary). It records the news and returns; the
// announcer gossips it to the others, and this node's own view (Role,
// Members) changes when memberlist applies it, waking Changed.
func (c *Cluster) SetCaughtUp(caughtUp bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !caughtUp || c.settled {
		return
	}
	c.settled = true
	c.metaSelf = c.encodeMeta()
	select {
	case c.announce <- struct{}{}:
	default: // an announcement is pending; it reads the newest metadata
	}
}

// Role implements Ownership.
func (c *Cluster) Role(topic string, partition int32) Role {
	c.mu.Lock()
	members := c.members
	c.mu.Unlock()
	return roleOf(c.cfg.Name, members, c.cfg.Replicas, topic, partition)
}

// Owners returns the primary and the standbys of a partition.
func (c *Cluster) Owners(topic string, partition int32) (primary string, standbys []string) {
	c.mu.Lock()
	members := c.members
	c.mu.Unlock()
	for _, m := range members {
		switch roleOf(m.Name, members, c.cfg.Replicas, topic, partition) {
		case RolePrimary:
			primary = m.Name
		case RoleStandby:
			standbys = append(standbys, m.Name)
		}
	}
	return primary, standbys
}

// roleOf is the assignment rule (see Cluster) for member self.
func roleOf(self string, members []Member, replicas int, topic string, partition int32) Role {
	type ranked struct {
		score   uint64
		name    string
		settled bool
	}
	rank := make([]ranked, 0, len(members))
	anySettled := false
	for _, m := range members {
		rank = append(rank, ranked{score(m.Name, topic, partition), m.Name, m.Settled})
		anySettled = anySettled || m.Settled
	}
	slices.SortFunc(rank, func(a, b ranked) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	primary := ""
	settledSeen := 0
	standby := false
	for i, r := range rank {
		if r.settled || !anySettled {
			if primary == "" {
				primary = r.name
			}
			if r.name == self && settledSeen < replicas {
				standby = true
			}
			settledSeen++
		}
		if r.name == self && i < replicas {
			standby = true
		}
	}
	switch {
	case primary == self:
		return RolePrimary
	case standby:
		return RoleStandby
	}
	return RoleNone
}

func score(member, topic string, partition int32) uint64 {
	h := xxhash.New()
	_, _ = h.WriteString(member)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(topic)
	_, _ = h.Write([]byte{0})
	_, _ = h.WriteString(strconv.Itoa(int(partition)))
	return h.Sum64()
}

// Node metadata: version 1, a flags byte (bit 0: settled), the status address.
const metaVersion = 1

func (c *Cluster) encodeMeta() []byte {
	flags := byte(0)
	if c.settled {
		flags |= 1
	}
	return append([]byte{metaVersion, flags}, c.cfg.StatusAddr...)
}

func decodeMeta(b []byte) (settled bool, statusAddr string, ok bool) {
	if len(b) < 2 || b[0] != metaVersion {
		return false, "", false
	}
	return b[1]&1 != 0, string(b[2:]), true
}

// update applies one member's news and wakes the watchers if the view
// changed. memberlist calls it with its own lock held, and the node is only
// safe to read during the call.
func (c *Cluster) update(n *memberlist.Node, gone bool) {
	m := Member{Name: n.Name, Addr: n.Address()}
	if !gone {
		settled, status, ok := decodeMeta(n.Meta)
		if !ok {
			c.log.Warn("membership: member with unknown metadata", "member", n.Name)
			return
		}
		m.Settled, m.StatusAddr = settled, status
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	members := slices.DeleteFunc(slices.Clone(c.members), func(x Member) bool { return x.Name == m.Name })
	if !gone {
		members = append(members, m)
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	if slices.Equal(members, c.members) {
		return
	}
	c.members = members
	close(c.changed)
	c.changed = make(chan struct{})
	c.log.Info("membership changed", "member", m.Name, "gone", gone, "members", len(members))
}

// delegate is memberlist's Delegate. memberlist calls it from its packet
// and gossip goroutines: it must not block.
type delegate Cluster

var _ memberlist.Delegate = (*delegate)(nil)

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.metaSelf) > limit {
		return d.metaSelf[:2]
	}
	return slices.Clone(d.metaSelf)
}
func (d *delegate) NotifyMsg([]byte)                {}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d *delegate) LocalState(bool) []byte          { return nil }
func (d *delegate) MergeRemoteState([]byte, bool)   {}

// events is memberlist's EventDelegate. It is called with memberlist's lock
// held, so it only copies what it needs under Cluster.mu and never calls back.
type events Cluster

var _ memberlist.EventDelegate = (*events)(nil)

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Cluster)(e).update(n, false) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Cluster)(e).update(n, true) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Cluster)(e).update(n, false) }

// slogWriter turns memberlist's log lines into debug records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(b)), "component", "memberlist")
	return len(b), nil
}

var _ io.Writer = slogWriter{}
