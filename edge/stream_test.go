package edge_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/proto"
)

// id renders the event id the edge must send for a progress.
func id(epoch uint32, offsets ...int64) string {
	return string(proto.AppendProgress(nil, &proto.Progress{Epoch: epoch, TimeMs: fixedNow.UnixMilli(), Offsets: offsets}))
}

func TestStateReadyLiveDeleteBytes(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks",
		rec(0, "k1", "v1"),
		rec(1, "k2", "v2"),
		rec(0, "k1", "v1b"), // supersedes offset 0
		rec(2, "k3", "line1\nline2\r\n line3"),
	)
	ep := s.epoch("tasks")
	c := s.connect("/tasks", nil)
	var got strings.Builder
	for _, ev := range c.untilReady() {
		got.WriteString(ev.Raw)
	}
	want := "retry:2000\n\n" +
		"id:" + id(ep, 2, 0, 0) + "\ndata:v1b\n\n" +
		"id:" + id(ep, 2, 1, 0) + "\ndata:v2\n\n" +
		"id:" + id(ep, 2, 1, 1) + "\ndata:line1\ndata:line2\ndata:  line3\n\n" +
		"id:" + id(ep, 2, 1, 1) + "\nevent:ready\ndata:{}\n\n"
	if got.String() != want {
		t.Fatalf("state part:\n got %q\nwant %q", got.String(), want)
	}

	s.produce("tasks", rec(1, "k4", "v4"))
	if ev := c.mustNext(); ev.Raw != "id:"+id(ep, 2, 2, 1)+"\ndata:v4\n\n" {
		t.Fatalf("live event: %q", ev.Raw)
	}
	s.produce("tasks", tombstone(0, "k1"))
	wantDel := "id:" + id(ep, 3, 2, 1) + "\nevent:delete\ndata:" + base64.URLEncoding.EncodeToString([]byte("k1")) + "\n\n"
	if ev := c.mustNext(); ev.Raw != wantDel {
		t.Fatalf("delete event:\n got %q\nwant %q", ev.Raw, wantDel)
	}

	// Resuming from the last id gives nothing before ready; from the ready
	// id, only what came after it, the delete included.
	r := s.connect("/tasks", http.Header{"Last-Event-Id": {id(ep, 2, 1, 1)}})
	var resumed []string
	for _, ev := range r.untilReady() {
		resumed = append(resumed, ev.Raw)
	}
	wantResumed := []string{
		"retry:2000\n\n",
		"id:" + id(ep, 3, 1, 1) + "\nevent:delete\ndata:" + base64.URLEncoding.EncodeToString([]byte("k1")) + "\n\n",
		"id:" + id(ep, 3, 2, 1) + "\ndata:v4\n\n",
		"id:" + id(ep, 3, 2, 1) + "\nevent:ready\ndata:{}\n\n",
	}
	if fmt.Sprint(resumed) != fmt.Sprint(wantResumed) {
		t.Fatalf("resumed:\n got %q\nwant %q", resumed, wantResumed)
	}
}

func TestKeyTemplateAndEtagHeader(t *testing.T) {
	s := newStack(t, stackOptions{})
	r := rec(0, "key", "v")
	r.Headers = []kgo.RecordHeader{{Key: "etag", Value: []byte("revision=42")}}
	s.produce("tasks", r)
	ep := s.epoch("tasks")
	evs := s.connect("/keyed", nil).untilReady()
	wantID := `["a2V5","` + id(ep, 1, 0, 0) + `/revision=42"]`
	if evs[1].ID != wantID || evs[1].Data != "v" {
		t.Fatalf("keyed event %+v, want id %s", evs[1], wantID)
	}
	if want := `[null,"` + id(ep, 1, 0, 0) + `"]`; evs[2].ID != want || evs[2].Event != "ready" {
		t.Fatalf("ready %+v, want id %s", evs[2], want)
	}
	// The keyed id, etag suffix and all, resumes.
	s.produce("tasks", rec(0, "key", "v2"))
	evs = s.connect("/keyed", http.Header{"Last-Event-Id": {wantID}}).untilReady()
	if len(evs) != 3 || evs[1].Data != "v2" {
		t.Fatalf("resumed with keyed id: %+v", evs)
	}
	// So does the same id in the lastEventId query parameter.
	evs = s.connect("/keyed?lastEventId="+wantID, nil).untilReady()
	if len(evs) != 3 || evs[1].Data != "v2" {
		t.Fatalf("resumed with lastEventId parameter: %+v", evs)
	}
}

func TestResetAndGarbageIDs(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"))
	ep := s.epoch("tasks")
	full := func(evs []event, skip int) {
		t.Helper()
		var data []string
		for _, ev := range evs[skip:] {
			data = append(data, ev.Data)
		}
		if got := strings.Join(data, ","); got != "1,2,{}" {
			t.Fatalf("want the full state then ready, got %q (%+v)", got, evs)
		}
	}
	// Another epoch: reset, then everything.
	evs := s.connect("/tasks", http.Header{"Last-Event-Id": {id(ep+2, 5, 5, 5)}}).untilReady()
	if evs[1].Raw != "event:reset\ndata:{\"reason\":\"epoch\"}\n\n" {
		t.Fatalf("want reset, got %q", evs[1].Raw)
	}
	full(evs, 2)
	// A position older than the horizon (an hour in this stack): reset.
	old := string(proto.AppendProgress(nil, &proto.Progress{Epoch: ep, TimeMs: fixedNow.UnixMilli() - 2*3600_000, Offsets: []int64{1, 1, 0}}))
	evs = s.connect("/tasks", http.Header{"Last-Event-Id": {old}}).untilReady()
	if evs[1].Event != "reset" || !strings.Contains(evs[1].Data, "horizon") {
		t.Fatalf("want horizon reset, got %+v", evs[1])
	}
	full(evs, 2)
	// More partitions than the topic has: reset.
	evs = s.connect("/tasks", http.Header{"Last-Event-Id": {id(ep, 1, 1, 0, 0)}}).untilReady()
	if evs[1].Raw != "event:reset\ndata:{\"reason\":\"partitions\"}\n\n" {
		t.Fatalf("want partitions reset, got %q", evs[1].Raw)
	}
	full(evs, 2)
	// Each counted under the label operators' alerts match.
	for _, r := range []string{"epoch", "horizon", "partitions"} {
		if n := labeled(t, s.edgeReg, "ssekafka_edge_resets_total", "reason", r); n != 1 {
			t.Fatalf("resets_total{reason=%s} %v, want 1", r, n)
		}
	}
	// Garbage, or an id past the codec's limit: the full state, no reset.
	for _, bad := range []string{"garbage!", "AQ", strings.Repeat("A", proto.MaxEventIDLen+1), `["x",`} {
		evs = s.connect("/tasks", http.Header{"Last-Event-Id": {bad}}).untilReady()
		full(evs, 1)
	}
	// A header past MaxHeaderBytes: 431, from the edge's own reader.
	req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks", nil)
	req.Header.Set("Last-Event-Id", strings.Repeat("A", edge.MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a header past MaxHeaderBytes: %d", resp.StatusCode)
	}
}

func TestZillaProgressResumes(t *testing.T) {
	s := newStack(t, stackOptions{})
	s.produce("tasks", rec(0, "a", "a0"), rec(0, "b", "b1"), rec(0, "c", "c2"), rec(1, "d", "d0"), rec(1, "e", "e1"), rec(2, "f", "f0"))
	// AQQABAIC is Zilla's progress {0 -> 2, 1 -> 1}.
	for _, zid := range []string{"AQQABAIC", "AQQABAIC/revision=42", `["a2V5","AQQABAIC/revision=42"]`} {
		evs := s.connect("/tasks", http.Header{"Last-Event-Id": {zid}}).untilReady()
		var data []string
		for _, ev := range evs[1 : len(evs)-1] {
			data = append(data, ev.Data)
		}
		if got := strings.Join(data, ","); got != "c2,e1,f0" {
			t.Fatalf("id %s: got %q, want c2,e1,f0", zid, got)
		}
	}
}

func TestFilterAndTopicParams(t *testing.T) {
	s := newStack(t, stackOptions{topics: []string{"tasks", "other.topic"}})
	s.produce("tasks", rec(0, "a", "1"), rec(1, "b", "2"), rec(2, "a", "3"))
	s.produce("other.topic", rec(0, "x", "y"))
	evs := s.connect("/tasks/a", nil).untilReady()
	if len(evs) != 4 || evs[1].Data != "1" || evs[2].Data != "3" {
		t.Fatalf("key filter: %+v", evs)
	}
	evs = s.connect("/t/other.topic", nil).untilReady()
	if len(evs) != 3 || evs[1].Data != "y" {
		t.Fatalf("topic from params: %+v", evs)
	}
}

func TestHTTPErrors(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/tasks", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/t/missing-topic", http.StatusNotFound},
		{http.MethodGet, "/t/bad$topic", http.StatusBadRequest},
		// tasks exists, but this route serves only public.* topics.
		{http.MethodGet, "/public/tasks", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, s.url+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
	}
}

// A key whose base64 differs between alphabets: the key-form id and the
// delete data both carry it in padded base64url, as Zilla writes them.
func TestKeyFormIDAndDeleteDataAreBase64url(t *testing.T) {
	s := newStack(t, stackOptions{})
	ep := s.epoch("tasks")
	s.produce("tasks", rec(0, "?>?", "v"))
	c := s.connect("/keyed", nil)
	evs := c.untilReady()
	if want := "id:[\"Pz4_\",\"" + id(ep, 1, 0, 0) + "\"]\ndata:v\n\n"; len(evs) != 3 || evs[1].Raw != want {
		t.Fatalf("state part %+v, want event %q", evs, want)
	}
	s.produce("tasks", tombstone(0, "?>?"))
	if ev, want := c.mustNext(), "id:[\"Pz4_\",\""+id(ep, 2, 0, 0)+"\"]\nevent:delete\ndata:Pz4_\n\n"; ev.Raw != want {
		t.Fatalf("delete %q, want %q", ev.Raw, want)
	}
}
