package tier

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/proto"
)

// NATS is the Tier over a NATS connection: request/reply on the state and
// meta subjects, the live messages on the topic's event subjects.
type NATS struct {
	nc       *nats.Conn
	subjects proto.Subjects
}

var _ Tier = (*NATS)(nil)

// NewNATS is the Tier over nc, its subjects under prefix.
func NewNATS(nc *nats.Conn, prefix string) *NATS {
	return &NATS{nc: nc, subjects: proto.Subjects{Prefix: prefix}}
}

func (n *NATS) request(ctx context.Context, subject string, req []byte) ([]byte, error) {
	msg, err := n.nc.RequestWithContext(ctx, subject, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return msg.Data, nil
}

// Meta asks the topic's meta subject.
func (n *NATS) Meta(ctx context.Context, topic string) (proto.Meta, error) {
	b, err := n.request(ctx, n.subjects.Meta(topic), proto.AppendMetaRequest(nil))
	if err != nil {
		return proto.Meta{}, err
	}
	return proto.DecodeMeta(b)
}

// State asks partition p's state subject for a page.
func (n *NATS) State(ctx context.Context, topic string, p int32, req proto.StateRequest) (proto.StatePage, error) {
	b, err := n.request(ctx, n.subjects.State(topic, p), proto.AppendStateRequest(nil, &req))
	if err != nil {
		return proto.StatePage{}, err
	}
	return proto.DecodeStatePage(b)
}

// Value asks partition p's state subject for a part of a record apart.
func (n *NATS) Value(ctx context.Context, topic string, p int32, req proto.ValueRequest) (proto.ValuePart, error) {
	b, err := n.request(ctx, n.subjects.State(topic, p), proto.AppendValueRequest(nil, &req))
	if err != nil {
		return proto.ValuePart{}, err
	}
	return proto.DecodeValuePart(b)
}

// Key asks partition p's state subject for a key.
func (n *NATS) Key(ctx context.Context, topic string, p int32, req proto.KeyRequest) (proto.KeyReply, error) {
	b, err := n.request(ctx, n.subjects.State(topic, p), proto.AppendKeyRequest(nil, &req))
	if err != nil {
		return proto.KeyReply{}, err
	}
	return proto.DecodeKeyReply(b)
}

// Subscribe subscribes msgs to the topic's event subjects (NATS drops what
// finds msgs full) and flushes, so that the server has the interest when
// it returns.
func (n *NATS) Subscribe(ctx context.Context, topic string, msgs chan *Msg) (Subscription, error) {
	sub, err := n.nc.ChanSubscribe(n.subjects.Events(topic), msgs)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("flush subscribe %s: %w", topic, err)
	}
	return sub, nil
}

// MaxPayload is the server's max payload.
func (n *NATS) MaxPayload() int { return int(n.nc.MaxPayload()) }

// Reconnects is the connection's reconnect count.
func (n *NATS) Reconnects() uint64 { return n.nc.Stats().Reconnects }
