package hub

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/ssekafka/ssekafka/edge/internal/compress"
	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// SSE framing. Fields are written without the optional space after the
// colon; a data line that itself starts with a space gets one, since a
// reader strips exactly one.

// frameFormat is how a view's record events are written: the id's format
// and, for clients that asked for Zilla's timestamp extension, a
// "timestamp:" line first. Views differ by it (the view key), so each
// record is encoded once per format. enc is the content coding its streams
// are sent in (coding.go): a view's frames are made into chunks of it once.
type frameFormat struct {
	id        proto.IDFormat
	timestamp bool
	enc       compress.Encoding
}

// viewKey names the view of a route's clients with the same filters and
// frame format. A coding other than identity is a letter before the route
// (its digits), the timestamp extension a "t" after it.
func (ff frameFormat) viewKey(route int, filterKey string) string {
	key := strconv.Itoa(route)
	switch ff.enc {
	case compress.Identity:
	case compress.Gzip:
		key = "g" + key
	case compress.Zstd:
		key = "z" + key
	default:
		key = "e" + strconv.Itoa(int(ff.enc)) + "." + key
	}
	if ff.timestamp {
		return key + "t" + filterKey
	}
	return key + filterKey
}

// contentType is the stream's Content-Type: Zilla echoes the extension.
func (ff frameFormat) contentType() string {
	if ff.timestamp {
		return "text/event-stream;ext=timestamp"
	}
	return "text/event-stream"
}

// appendEvent appends rec's event in this format.
func (ff frameFormat) appendEvent(b []byte, rec *proto.Record, p *proto.Progress) []byte {
	if ff.timestamp {
		b = appendTimestamp(b, rec.TimeMs)
	}
	return appendRecordFrame(b, ff.id, rec, p)
}

// wantsTimestamp reports whether r asks for Zilla's timestamp extension:
// as in Zilla, an Accept header containing "ext=timestamp"
// (text/event-stream;ext=timestamp).
func wantsTimestamp(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "ext=timestamp") {
			return true
		}
	}
	return false
}

// appendTimestamp appends Zilla's "timestamp:" line: the record's Kafka
// timestamp (Unix milliseconds) in lower-case hex after "0x"
// (timestamp:0x161e350a495). As Zilla, none for a timestamp not above 0.
func appendTimestamp(b []byte, ms int64) []byte {
	if ms <= 0 {
		return b
	}
	b = append(b, "timestamp:0x"...)
	b = strconv.AppendInt(b, ms, 16)
	return append(b, '\n')
}

// appendRecordFrame appends the event for rec: "id:", "event:delete" for a
// tombstone (its data is the key in proto.KeyEncoding, as in Zilla), then the value as
// one "data:" line per line.
func appendRecordFrame(b []byte, f proto.IDFormat, rec *proto.Record, p *proto.Progress) []byte {
	b = append(b, "id:"...)
	etag := ""
	if rec.EtagHeader {
		etag = rec.Etag
	}
	b = proto.AppendEventID(b, f, rec.Key, rec.KeyNull, p, etag)
	b = append(b, '\n')
	if rec.Tombstone {
		b = append(b, "event:delete\ndata:"...)
		b = proto.KeyEncoding.AppendEncode(b, rec.Key)
		return append(b, "\n\n"...)
	}
	b = appendData(b, rec.Value)
	return append(b, '\n')
}

// appendData writes v as data lines, splitting at CR, LF and CRLF.
func appendData(b []byte, v []byte) []byte {
	for {
		line, rest, more := cutLine(v)
		b = append(b, "data:"...)
		if len(line) > 0 && line[0] == ' ' {
			b = append(b, ' ')
		}
		b = append(b, line...)
		b = append(b, '\n')
		if !more {
			return b
		}
		v = rest
	}
}

func cutLine(v []byte) (line, rest []byte, more bool) {
	for i, c := range v {
		switch c {
		case '\n':
			return v[:i], v[i+1:], true
		case '\r':
			if i+1 < len(v) && v[i+1] == '\n' {
				return v[:i], v[i+2:], true
			}
			return v[:i], v[i+1:], true
		}
	}
	return v, nil, false
}

// appendReady appends the marker that ends the state part.
func appendReady(b []byte, f proto.IDFormat, p *proto.Progress) []byte {
	b = append(b, "id:"...)
	b = proto.AppendEventID(b, f, nil, true, p, "")
	return append(b, "\nevent:ready\ndata:{}\n\n"...)
}

// appendReset appends "event:reset" with r (one of reason.Reset*) in its
// data, spelt as its metric label: {"reason":"epoch"}.
func appendReset(b []byte, r reason.Reason) []byte {
	b = append(b, `event:reset`+"\n"+`data:{"reason":"`...)
	b = append(b, r.Label()...)
	return append(b, "\"}\n\n"...)
}

func appendRetry(b []byte, ms int64) []byte {
	b = append(b, "retry:"...)
	b = strconv.AppendInt(b, ms, 10)
	return append(b, "\n\n"...)
}

var keepAliveFrame = []byte(":\n\n")
