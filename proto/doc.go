// Package proto holds what cache and edge nodes say to each other over NATS,
// and the event-id codec that clients carry in Last-Event-ID.
//
// Both are hand-written binary codecs rather than Protocol Buffers: the
// messages are few and flat, the hot path (one live change, fanned out to
// every edge) wants append-style encoding into a reused buffer with no
// reflection and no allocation, and a hand-written decoder is easy to fuzz and
// needs no code generator in the build. Every message starts with a version
// byte; a decoder refuses versions it does not know with ErrVersion, so a
// mixed-version cluster fails loudly instead of misreading.
//
// Subjects (prefix configurable):
//
//	<prefix>.ev.<topic>.<partition>     live changes and heads, published by the partition's primary
//	<prefix>.state.<topic>.<partition>  request/reply: one page of state since an offset
//	<prefix>.meta.<topic>               request/reply: partition count, epoch, horizon
//	<prefix>.topics                     request/reply: the topics a cache node holds
//
// Gaps in the live feed are found by offsets, not by a publisher's sequence
// number: a Change carries the publisher's position before it, and a Head a
// primary's position. Every owner of a partition (primary or standby) agrees
// on offsets, so a failover needs no hand-off and any holder may answer.
//
// Topic names are encoded for subjects by SubjectTopic.
package proto
