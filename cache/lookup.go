package cache

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// listTopic is ListTopics for one name, with a "no such topic" asked again
// of Kafka itself: kgo answers from metadata it cached for MetadataMinAge
// (5 s), a missing topic included, which would hide a topic created since
// for that long. The fresh answer refreshes kgo's cache.
func (n *Node) listTopic(ctx context.Context, name string) (kadm.TopicDetails, error) {
	details, err := n.adm.ListTopics(ctx, name)
	if err != nil {
		return nil, err
	}
	if d, ok := details[name]; ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return details, nil
	}
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(name)
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(ctx, n.kcl); err != nil {
		return details, nil // the cached answer stands
	}
	return n.adm.ListTopics(ctx, name)
}
