// The cache-tier client: metadata and state pages over NATS request/reply,
// and how their failures are told apart.

package edge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ssekafka/ssekafka/proto"
)

var (
	errTopicNotFound = errors.New("topic not found")
	errUnavailable   = errors.New("cache tier unavailable")
)

func (e *Edge) requestMeta(ctx context.Context, topic string) (proto.Meta, error) {
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.Meta(topic), proto.AppendMetaRequest(nil))
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w: %w", topic, errUnavailable, err)
	}
	m, err := proto.DecodeMeta(msg.Data)
	if err != nil {
		return proto.Meta{}, fmt.Errorf("meta %s: %w", topic, err)
	}
	switch m.Status {
	case proto.StatusOK:
		return m, nil
	case proto.StatusUnknownTopic:
		return m, fmt.Errorf("meta %s: %w", topic, errTopicNotFound)
	}
	return m, fmt.Errorf("meta %s: %s: %s", topic, m.Status, m.Error)
}

// requestPageRetrying asks for a page, again and again while the cache tier
// does not answer (a node died while answering, or none holds the partition
// for a moment) or answers NotOwner (the node released the partition, or is
// not caught up on it), for up to RequestTimeout.
func (e *Edge) requestPageRetrying(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	deadline := time.Now().Add(e.cfg.RequestTimeout)
	for {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.PageTimeout)
		page, err := e.requestPage(rctx, topic, epoch, p, since)
		cancel()
		if err == nil || !errors.Is(err, errUnavailable) || ctx.Err() != nil || time.Now().After(deadline) {
			return page, err
		}
		select {
		case <-ctx.Done():
			return page, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *Edge) requestPage(ctx context.Context, topic string, epoch uint32, p int32, since int64) (proto.StatePage, error) {
	req := proto.AppendStateRequest(nil, &proto.StateRequest{Since: since, MaxBytes: e.cfg.PageBytes})
	msg, err := e.cfg.NATS.RequestWithContext(ctx, e.subjects.State(topic, p), req)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w: %w", topic, p, errUnavailable, err)
	}
	page, err := proto.DecodeStatePage(msg.Data)
	if err != nil {
		return proto.StatePage{}, fmt.Errorf("fetch state %s/%d: %w", topic, p, err)
	}
	if page.Status == proto.StatusNotOwner {
		// Released, or not caught up: another holder answers, or soon will.
		return page, fmt.Errorf("fetch state %s/%d: %w: %s", topic, p, errUnavailable, page.Error)
	}
	if page.Status != proto.StatusOK {
		return page, fmt.Errorf("fetch state %s/%d: %s: %s", topic, p, page.Status, page.Error)
	}
	if page.Epoch != epoch {
		return page, fmt.Errorf("fetch state %s/%d: epoch %d, want %d", topic, p, page.Epoch, epoch)
	}
	return page, nil
}
