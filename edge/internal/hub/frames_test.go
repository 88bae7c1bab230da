package hub

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

// parseSSE is the event-stream interpretation of the HTML standard, enough
// to check our framing: it returns the dispatched events' (id, type, data).
func parseSSE(stream string) [][3]string {
	var out [][3]string
	var id, typ, data string
	hasData := false
	stream = strings.ReplaceAll(strings.ReplaceAll(stream, "\r\n", "\n"), "\r", "\n")
	for _, line := range strings.Split(stream, "\n") {
		if line == "" {
			if hasData {
				out = append(out, [3]string{id, typ, strings.TrimSuffix(data, "\n")})
			}
			typ, data, hasData = "", "", false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			typ = value
		case "data":
			data += value + "\n"
			hasData = true
		}
	}
	return out
}

func TestRecordFrameBytes(t *testing.T) {
	p := &proto.Progress{Epoch: 1, TimeMs: 2, Offsets: []int64{3}}
	id := string(proto.AppendProgress(nil, p))
	for _, tc := range []struct {
		rec  proto.Record
		want string
	}{
		{proto.Record{Key: []byte("k"), Value: []byte(`{"a":1}`)}, "id:" + id + "\ndata:{\"a\":1}\n\n"},
		{proto.Record{Key: []byte("k"), Value: []byte("a\nb\r\nc\rd")}, "id:" + id + "\ndata:a\ndata:b\ndata:c\ndata:d\n\n"},
		{proto.Record{Key: []byte("k"), Value: []byte(" lead")}, "id:" + id + "\ndata:  lead\n\n"},
		{proto.Record{Key: []byte("k"), Value: []byte{}}, "id:" + id + "\ndata:\n\n"},
		{proto.Record{Key: []byte("k?"), Tombstone: true}, "id:" + id + "\nevent:delete\ndata:az8=\n\n"},
		// base64url, padded, as Zilla writes it ("Pz4/" in the standard alphabet).
		{proto.Record{Key: []byte("?>?"), Tombstone: true}, "id:" + id + "\nevent:delete\ndata:Pz4_\n\n"},
		{proto.Record{Key: []byte("k"), Tombstone: true}, "id:" + id + "\nevent:delete\ndata:aw==\n\n"},
		{proto.Record{Key: []byte("k"), Value: []byte("v"), Etag: "r=1", EtagHeader: true}, "id:" + id + "/r=1\ndata:v\n\n"},
	} {
		if got := string(appendRecordFrame(nil, proto.IDEtag, &tc.rec, p)); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	if got := string(appendReady(nil, proto.IDKeyEtag, p)); got != "id:[null,\""+id+"\"]\nevent:ready\ndata:{}\n\n" {
		t.Errorf("ready: %q", got)
	}
	if got := string(appendReset(nil, reason.ResetEpoch)); got != "event:reset\ndata:{\"reason\":\"epoch\"}\n\n" {
		t.Errorf("reset: %q", got)
	}
	if got := string(appendRetry(nil, 2500)); got != "retry:2500\n\n" {
		t.Errorf("retry: %q", got)
	}
}

// Zilla's timestamp line (ext=timestamp): "timestamp:0x", the record's
// Kafka timestamp in lower-case hex, before the id; none for a timestamp
// not above 0, as Zilla; without the extension the frame is unchanged.
func TestTimestampLineBytes(t *testing.T) {
	p := &proto.Progress{Epoch: 1, TimeMs: 2, Offsets: []int64{3}}
	id := string(proto.AppendProgress(nil, p))
	stamped, plain := frameFormat{id: proto.IDEtag, timestamp: true}, frameFormat{id: proto.IDEtag}
	for _, tc := range []struct {
		ff   frameFormat
		rec  proto.Record
		want string
	}{
		{stamped, proto.Record{Key: []byte("k"), Value: []byte("v"), TimeMs: 1519937168533}, "timestamp:0x161e350a495\nid:" + id + "\ndata:v\n\n"},
		{stamped, proto.Record{Key: []byte("k"), Tombstone: true, TimeMs: 255}, "timestamp:0xff\nid:" + id + "\nevent:delete\ndata:aw==\n\n"},
		{stamped, proto.Record{Key: []byte("k"), Value: []byte("v")}, "id:" + id + "\ndata:v\n\n"},
		{stamped, proto.Record{Key: []byte("k"), Value: []byte("v"), TimeMs: -1}, "id:" + id + "\ndata:v\n\n"},
		{plain, proto.Record{Key: []byte("k"), Value: []byte("v"), TimeMs: 1519937168533}, "id:" + id + "\ndata:v\n\n"},
	} {
		if got := string(tc.ff.appendEvent(nil, &tc.rec, p)); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.ff, got, tc.want)
		}
	}
	if stamped.viewKey(1, "|k\"a\"") == plain.viewKey(1, "|k\"a\"") {
		t.Error("streams with and without timestamps share a view")
	}
}

// FuzzRecordFrame checks that any value, framed and read back by a standard
// SSE parser, is one event whose data is the value (line ends normalised)
// and whose id parses back to the progress.
func FuzzRecordFrame(f *testing.F) {
	for _, s := range []string{"", "x", "a\nb", "a\r\nb\rc", " lead", "\n", "\r\n\r\n", "data: x\n\nid: y", ":c"} {
		f.Add([]byte("k"), []byte(s), "")
	}
	f.Add([]byte("k"), []byte("v"), "rev=1")
	f.Add([]byte("k"), []byte("v"), "a\"b\\c\nd")
	f.Fuzz(func(t *testing.T, key, value []byte, etag string) {
		p := &proto.Progress{Epoch: 1, TimeMs: 2, Offsets: []int64{3, 4}}
		rec := proto.Record{Key: key, Value: value, Etag: etag, EtagHeader: etag != ""}
		frame := appendRecordFrame(nil, proto.IDKeyEtag, &rec, p)
		evs := parseSSE(string(frame))
		want := strings.ReplaceAll(strings.ReplaceAll(string(value), "\r\n", "\n"), "\r", "\n")
		if len(evs) != 1 || evs[0][2] != want || evs[0][1] != "" {
			t.Fatalf("value %q framed as %q parsed to %q", value, frame, evs)
		}
		if bytes.Count(frame, []byte("\n\n")) != 1 || !bytes.HasSuffix(frame, []byte("\n\n")) {
			t.Fatalf("frame %q is not exactly one event", frame)
		}
		back, err := proto.ParseEventID(evs[0][0])
		if err != nil || back.Offsets[1] != 4 {
			t.Fatalf("id %q: %+v %v", evs[0][0], back, err)
		}
	})
}
