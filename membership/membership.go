// Package membership decides which cache node owns which topic partition.
//
// Cache nodes ask an Ownership which partitions they consume and whether they
// are the primary (the one that publishes live changes) for each. Static owns
// everything, for one node; Cluster gossips with hashicorp/memberlist and
// assigns partitions by rendezvous hashing over the live members.
package membership

// Role is a node's part in one partition.
type Role uint8

const (
	// RoleNone: the node does not consume the partition.
	RoleNone Role = iota
	// RoleStandby: the node consumes the partition and answers state
	// requests, but does not publish live changes.
	RoleStandby
	// RolePrimary: the node consumes, answers and publishes live changes.
	RolePrimary
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleStandby:
		return "standby"
	}
	return "none"
}

// Ownership tells a cache node its role per partition.
//
// All methods may be called from any goroutine and must not block: the
// cache calls Role with a topic's lock held and SetCaughtUp from its consume
// loop (docs/LOCKS.md). They must not call back into the cache.
type Ownership interface {
	// Role is this node's part in a partition, now.
	Role(topic string, partition int32) Role
	// Changed returns a channel that is closed when roles may have changed
	// after the call.
	Changed() <-chan struct{}
	// SetCaughtUp tells the ownership whether this node holds every
	// partition it consumes caught up with Kafka. A node that joins a
	// running cluster is made primary of nothing until it says so.
	SetCaughtUp(caughtUp bool)
}

// Static owns every partition as primary, for a single cache node.
type Static struct{}

var _ Ownership = Static{}

// NewStatic returns the single-node ownership.
func NewStatic() Static { return Static{} }

// Role returns RolePrimary.
func (Static) Role(string, int32) Role { return RolePrimary }

// Changed returns a channel that is never closed: roles never change.
func (Static) Changed() <-chan struct{} { return nil }

// SetCaughtUp does nothing.
func (Static) SetCaughtUp(bool) {}
