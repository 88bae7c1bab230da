//go:build linux

package sseload

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// PayloadJSON is Payload as an application's JSON value of about 200
// bytes: the partition, sequence and time first (what Clients check),
// then the fields of a catalogue item, varied by seq as real values vary,
// so that compression sees a realistic shape rather than repeats or noise.
func PayloadJSON(partition int, seq, tsNanos int64) []byte {
	words := [...]string{"invoice", "deploy", "review", "backup", "audit", "migrate", "restock", "refund", "ship", "label"}
	statuses := [...]string{"todo", "doing", "done", "blocked"}
	w := func(i int64) string { return words[(i%10+10)%10] }
	at := time.Unix(0, tsNanos).UTC().Format("2006-01-02T15:04:05.000Z")
	return fmt.Appendf(nil, `{"p":%d,"seq":%d,"ts":%d,"id":"item-%d-%d","name":"%s the %s for customer %d","price":%d.%02d,"status":"%s","updatedAt":"%s","tags":["%s","%s","team-%d"]}`,
		partition, seq, tsNanos, partition, seq, w(seq), w(seq/10), 1000+seq*7%9000, 10+seq%990, seq*13%100,
		statuses[seq%4], at, w(seq+1), w(seq+3), seq%17)
}

// The fields parseJSONPayload reads.
var (
	jsonP   = []byte(`"p":`)
	jsonSeq = []byte(`"seq":`)
	jsonTS  = []byte(`"ts":`)
)

// parseJSONPayload reads what PayloadJSON wrote.
func parseJSONPayload(b []byte) (partition int, seq, ts int64, ok bool) {
	p, ok1 := jsonInt(b, jsonP)
	seq, ok2 := jsonInt(b, jsonSeq)
	ts, ok3 := jsonInt(b, jsonTS)
	return int(p), seq, ts, ok1 && ok2 && ok3
}

// jsonInt is the integer after the first key in b.
func jsonInt(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	rest := b[i+len(key):]
	j := 0
	for j < len(rest) && (rest[j] >= '0' && rest[j] <= '9' || j == 0 && rest[j] == '-') {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}
