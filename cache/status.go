package cache

import (
	"slices"
	"strings"
)

// Status is what a node holds, for its status endpoint.
type Status struct {
	Ready  bool          `json:"ready"`
	Topics []TopicStatus `json:"topics"`
}

// TopicStatus is one topic as a node holds it.
type TopicStatus struct {
	Name       string            `json:"name"`
	Epoch      uint32            `json:"epoch"`
	Partitions int               `json:"partitions"`
	Held       []PartitionStatus `json:"held"`
}

// PartitionStatus is one held partition.
type PartitionStatus struct {
	Partition  int32  `json:"partition"`
	Role       string `json:"role"`
	Next       int64  `json:"next"`
	HighWater  int64  `json:"highWatermark"`
	Lag        int64  `json:"lag"`
	CaughtUp   bool   `json:"caughtUp"`
	Keys       int    `json:"keys"`
	IndexBytes int64  `json:"indexBytes"`
	ValueBytes int64  `json:"valueBytes"`
}

// Status reports what the node holds now.
func (n *Node) Status() Status {
	st := Status{Ready: n.Ready()}
	for _, t := range n.loadedTopics() {
		ts := TopicStatus{Name: t.name, Epoch: t.epoch, Partitions: t.partitions()}
		for _, ps := range t.held() {
			ps.mu.RLock()
			ts.Held = append(ts.Held, PartitionStatus{
				Partition: ps.partition, Role: ps.role.String(), Next: ps.next, HighWater: ps.hwm,
				Lag: max(ps.hwm-ps.next, 0), CaughtUp: ps.caughtUp, Keys: len(ps.byKey), IndexBytes: ps.bytes, ValueBytes: ps.values,
			})
			ps.mu.RUnlock()
		}
		slices.SortFunc(ts.Held, func(a, b PartitionStatus) int { return int(a.Partition - b.Partition) })
		st.Topics = append(st.Topics, ts)
	}
	slices.SortFunc(st.Topics, func(a, b TopicStatus) int { return strings.Compare(a.Name, b.Name) })
	return st
}
