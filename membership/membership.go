// Package membership decides which cache node owns which topic partition.
//
// Cache nodes ask an Ownership which partitions they consume and whether they
// are the primary (the one that publishes live changes) for each. The static
// implementation here owns everything; the memberlist-based cluster
// implementation fills the same interface.
package membership

import (
	"crypto/rand"
	"encoding/binary"
)

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
// Role may be called from any goroutine and must not block. Term returns an
// identifier of this node's current ownership term of a partition: it changes
// whenever the node becomes primary again, so that edges see a new publish
// sequence and fill the gap from state pages.
type Ownership interface {
	Role(topic string, partition int32) Role
	Term(topic string, partition int32) uint64
}

// Static owns every partition as primary, for a single cache node.
type Static struct{ term uint64 }

var _ Ownership = (*Static)(nil)

// NewStatic returns an ownership with a random term, so that a restarted node
// is seen by edges as a new publisher.
func NewStatic() *Static {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Static{term: binary.LittleEndian.Uint64(b[:]) | 1}
}

// Role returns RolePrimary.
func (s *Static) Role(string, int32) Role { return RolePrimary }

// Term returns the node's term, the same for every partition.
func (s *Static) Term(string, int32) uint64 { return s.term }
