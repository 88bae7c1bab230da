package proto

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxTopicLen is Kafka's limit on a topic name.
const MaxTopicLen = 249

// ValidTopic checks a Kafka topic name: 1-249 of [a-zA-Z0-9._-], not "." or "..".
func ValidTopic(topic string) error {
	if topic == "" || len(topic) > MaxTopicLen || topic == "." || topic == ".." {
		return fmt.Errorf("topic %q: invalid length or name: %w", topic, ErrMalformed)
	}
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic %q: character %q not allowed: %w", topic, c, ErrMalformed)
		}
	}
	return nil
}

// SubjectTopic encodes a valid Kafka topic name as one NATS subject token:
// Kafka allows '.', NATS uses it as the separator, and '~' is never in a Kafka
// topic name, so '.' -> '~' is reversible.
func SubjectTopic(topic string) string { return strings.ReplaceAll(topic, ".", "~") }

// Subjects builds the subjects of one prefix.
type Subjects struct{ Prefix string }

// Event is the live-change subject of a partition.
func (s Subjects) Event(topic string, partition int32) string {
	return s.Prefix + ".ev." + SubjectTopic(topic) + "." + strconv.Itoa(int(partition))
}

// Events is the wildcard subject of all partitions of a topic.
func (s Subjects) Events(topic string) string {
	return s.Prefix + ".ev." + SubjectTopic(topic) + ".*"
}

// State is the state-page request subject of a partition.
func (s Subjects) State(topic string, partition int32) string {
	return s.Prefix + ".state." + SubjectTopic(topic) + "." + strconv.Itoa(int(partition))
}

// Meta is the metadata request subject of a topic.
func (s Subjects) Meta(topic string) string { return s.Prefix + ".meta." + SubjectTopic(topic) }

// MetaAll is the wildcard a cache node serves metadata requests on.
func (s Subjects) MetaAll() string { return s.Prefix + ".meta.*" }

// Topics is the request subject on which cache nodes list the topics they hold.
func (s Subjects) Topics() string { return s.Prefix + ".topics" }

// Renew is the subject on which an edge takes renewals of its guarded
// streams, verified by whichever edge received them; edgeID is one token.
func (s Subjects) Renew(edgeID string) string { return s.Prefix + ".renew." + edgeID }

// ParseStateSubject returns the topic and partition of a state subject.
func (s Subjects) ParseStateSubject(subject string) (string, int32, error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".state.")
	if !ok {
		return "", 0, fmt.Errorf("state subject %q: %w", subject, ErrMalformed)
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return "", 0, fmt.Errorf("state subject %q: %w", subject, ErrMalformed)
	}
	p, err := strconv.ParseInt(rest[i+1:], 10, 32)
	if err != nil || p < 0 || p >= MaxPartitions {
		return "", 0, fmt.Errorf("state subject %q: partition: %w", subject, ErrMalformed)
	}
	topic := strings.ReplaceAll(rest[:i], "~", ".")
	return topic, int32(p), ValidTopic(topic)
}

// ParseMetaSubject returns the topic of a metadata subject.
func (s Subjects) ParseMetaSubject(subject string) (string, error) {
	rest, ok := strings.CutPrefix(subject, s.Prefix+".meta.")
	if !ok {
		return "", fmt.Errorf("meta subject %q: %w", subject, ErrMalformed)
	}
	topic := strings.ReplaceAll(rest, "~", ".")
	return topic, ValidTopic(topic)
}
