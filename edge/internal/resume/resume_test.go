package resume

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/proto"
)

var now = time.UnixMilli(1_800_000_000_000)

func id(t *testing.T, p proto.Progress) string {
	t.Helper()
	return string(proto.AppendEventID(nil, proto.IDEtag, nil, true, &p, ""))
}

func TestStartAt(t *testing.T) {
	topic := Topic{Epoch: 7, Partitions: 3, Horizon: time.Hour}
	live := proto.Progress{Epoch: 7, Offsets: []int64{5, 6, 7}}
	hour := time.Hour.Milliseconds()
	for _, tc := range []struct {
		name    string
		id      ID
		at      []int64
		reset   reason.Reason
		resumed bool
		bad     bool
	}{
		{"no id", ID{}, []int64{0, 0, 0}, reason.Unknown, false, false},
		{"no id, from live", ID{FromLive: true}, []int64{5, 6, 7}, reason.Unknown, false, false},
		{"empty header wins over from=live", ID{InHeader: true, FromLive: true}, []int64{0, 0, 0}, reason.Unknown, false, false},
		{"garbage", ID{Value: "!!"}, []int64{0, 0, 0}, reason.Unknown, false, true},
		{"resume", ID{Value: id(t, proto.Progress{Epoch: 7, TimeMs: now.UnixMilli(), Offsets: []int64{1, 2, 3}})}, []int64{1, 2, 3}, reason.Unknown, true, false},
		{"fewer partitions: padded", ID{Value: id(t, proto.Progress{Epoch: 7, Offsets: []int64{4}})}, []int64{4, 0, 0}, reason.Unknown, true, false},
		{"no epoch (Zilla): resumes", ID{Value: id(t, proto.Progress{Offsets: []int64{1, 1, 1}})}, []int64{1, 1, 1}, reason.Unknown, true, false},
		{"other epoch", ID{Value: id(t, proto.Progress{Epoch: 8, Offsets: []int64{1, 1, 1}})}, []int64{0, 0, 0}, reason.ResetEpoch, false, false},
		{"more partitions", ID{Value: id(t, proto.Progress{Epoch: 7, Offsets: []int64{1, 1, 1, 1}})}, []int64{0, 0, 0}, reason.ResetPartitions, false, false},
		{"past the horizon", ID{Value: id(t, proto.Progress{Epoch: 7, TimeMs: now.UnixMilli() - hour - 1, Offsets: []int64{1, 1, 1}})}, []int64{0, 0, 0}, reason.ResetHorizon, false, false},
		{"at the horizon", ID{Value: id(t, proto.Progress{Epoch: 7, TimeMs: now.UnixMilli() - hour, Offsets: []int64{1, 1, 1}})}, []int64{1, 1, 1}, reason.Unknown, true, false},
		{"query id beside from=live", ID{Value: id(t, proto.Progress{Epoch: 7, Offsets: []int64{2, 2, 2}}), FromLive: true}, []int64{2, 2, 2}, reason.Unknown, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StartAt(tc.id, topic, live, now)
			if s.Reset != tc.reset || s.Resumed != tc.resumed || (s.Err != nil) != tc.bad {
				t.Fatalf("got reset %v resumed %v err %v", s.Reset, s.Resumed, s.Err)
			}
			if s.At.Epoch != 7 || len(s.At.Offsets) != 3 {
				t.Fatalf("start %+v: not of the topic's epoch and partitions", s.At)
			}
			for p, o := range tc.at {
				if s.At.Offsets[p] != o {
					t.Fatalf("start %v, want %v", s.At.Offsets, tc.at)
				}
			}
		})
	}
}

func TestStartAtCountsAnOversizedIDAsBad(t *testing.T) {
	big := make([]byte, proto.MaxEventIDLen+1)
	for i := range big {
		big[i] = 'A'
	}
	s := StartAt(ID{Value: string(big)}, Topic{Epoch: 1, Partitions: 1}, proto.Progress{}, now)
	if s.Err == nil || !errors.Is(s.Err, proto.ErrTooLarge) || s.Resumed {
		t.Fatalf("oversized id: %+v", s)
	}
}

func TestOffsetsConfirmedOnlyPastWhatTheFeedKnows(t *testing.T) {
	for _, tc := range []struct {
		offset, live, known int64
		ask                 bool
	}{
		{5, 5, 0, false}, {5, 0, 5, false}, {6, 5, 5, true}, {6, 7, 0, false}, {6, 0, 7, false},
	} {
		if got := MustConfirm(tc.offset, tc.live, tc.known); got != tc.ask {
			t.Errorf("MustConfirm(%d, live %d, known %d) = %v", tc.offset, tc.live, tc.known, got)
		}
	}
	if PastEnd(5, 5) || !PastEnd(6, 5) {
		t.Error("PastEnd: an offset at the end resumes, one past it resets")
	}
}

func TestLostReachesViewsAKeylessRecordMayMatch(t *testing.T) {
	for _, tc := range []struct {
		entries int
		keyless bool
		want    bool
	}{{0, false, true}, {2, true, true}, {1, false, false}} {
		if got := LostReaches(tc.entries, tc.keyless); got != tc.want {
			t.Errorf("LostReaches(%d, %v) = %v", tc.entries, tc.keyless, got)
		}
	}
}

func TestStateTime(t *testing.T) {
	secs := now.Add(1234*time.Millisecond).UnixMilli() / 1000 * 1000
	for _, tc := range []struct {
		start, want int64
	}{{0, secs}, {secs - 5, secs - 5}, {secs + 500, secs}} {
		if got := StateTime(proto.Progress{TimeMs: tc.start}, now.Add(1234*time.Millisecond)); got != tc.want {
			t.Errorf("StateTime(%d) = %d, want %d", tc.start, got, tc.want)
		}
	}
}

func TestPendingKeptAtReadyOnlyPastTheStatePart(t *testing.T) {
	at := proto.Progress{Offsets: []int64{10, 0}}
	for _, tc := range []struct {
		p    int32
		o    int64
		keep bool
	}{{0, 9, false}, {0, 10, true}, {1, 0, true}, {2, 0, true}} {
		if got := KeepPending(tc.p, tc.o, at); got != tc.keep {
			t.Errorf("KeepPending(%d, %d) = %v", tc.p, tc.o, got)
		}
	}
	at = proto.Progress{TimeMs: 50, Offsets: []int64{10, 3}}
	ReadyAt(&at, proto.Progress{TimeMs: 40, Offsets: []int64{8, 9, 12}})
	if at.Offsets[0] != 10 || at.Offsets[1] != 9 || len(at.Offsets) != 2 || at.TimeMs != 40 {
		t.Fatalf("ReadyAt: %+v", at)
	}
}

func TestSendLeavesOutWhatTheClientCannotHoldOrGetsLater(t *testing.T) {
	sup := map[string]struct{}{"new": {}}
	for _, tc := range []struct {
		name string
		rec  proto.Record
		skip int64
		want bool
	}{
		{"value", proto.Record{Offset: 1, Key: []byte("k")}, math.MaxInt64, true},
		{"tombstone below skip", proto.Record{Offset: 1, Key: []byte("k"), Tombstone: true}, 2, false},
		{"tombstone at skip", proto.Record{Offset: 2, Key: []byte("k"), Tombstone: true}, 2, true},
		{"keyless tombstone", proto.Record{Offset: 2, KeyNull: true, Tombstone: true}, -1, false},
		{"superseded", proto.Record{Offset: 2, Key: []byte("new")}, -1, false},
	} {
		if got := Send(&tc.rec, tc.skip, sup); got != tc.want {
			t.Errorf("%s: Send = %v", tc.name, got)
		}
	}
	if FirstSkip(0) != math.MaxInt64 || FirstSkip(3) != -1 {
		t.Error("FirstSkip: from zero every tombstone is left out, a resume gets them all")
	}
	if SkipAfterPage(math.MaxInt64, 5, -1) != 5 || SkipAfterPage(math.MaxInt64, 5, 9) != 9 || SkipAfterPage(-1, 5, 9) != -1 {
		t.Error("SkipAfterPage")
	}
}

func TestSourceFor(t *testing.T) {
	for _, tc := range []struct {
		name         string
		ring, storm  bool
		since        int64
		paged, reuse bool
		want         Source
	}{
		{"storm resume in the ring", true, true, 5, false, false, Ring},
		{"storm from zero: a page first", true, true, 0, false, true, SharedPage},
		{"storm from zero, paged: the ring for the rest", true, true, 0, true, true, Ring},
		{"lone resume in the ring: a page", true, false, 5, false, false, OwnPage},
		{"storm, ring does not cover", false, true, 5, false, true, SharedPage},
		{"crowded lone stream", false, false, 5, false, true, SharedPage},
	} {
		if got := SourceFor(tc.ring, tc.storm, tc.since, tc.paged, tc.reuse); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSharing(t *testing.T) {
	for _, tc := range []struct {
		s               Sharing
		others, crowded bool
		again           bool
		storm, reuse    bool
	}{
		{ShareWhenCrowded, true, true, false, true, true},
		{ShareWhenCrowded, false, false, false, false, false},
		{ShareWhenCrowded, false, true, true, false, false},
		{ShareAlways, false, false, false, true, true},
		{ShareAlways, false, false, true, true, false},
		{ShareNever, true, true, false, false, true},
	} {
		if tc.s.Storm(tc.others) != tc.storm || tc.s.Reuse(tc.crowded, tc.again) != tc.reuse {
			t.Errorf("%+v", tc)
		}
	}
}

func TestKindLabelsKeepTheirShippedSpelling(t *testing.T) {
	k := KindRing
	if k.Label() != "ring" {
		t.Fatal(k.Label())
	}
	if k = k.AfterPage(true); k.Label() != "coalesced" {
		t.Fatal(k.Label())
	}
	if k = k.AfterPage(false); k.Label() != "state" {
		t.Fatal(k.Label())
	}
	if k = k.AfterPage(true); k.Label() != "state" {
		t.Fatal("one own request makes it state for good")
	}
}

// Whatever a client sends as its id, its stream starts somewhere of the
// topic's epoch and partitions, reset or resumed, never both.
func FuzzStartAt(f *testing.F) {
	for _, seed := range []string{"", "garbage!", "AQ", "AQQABAIC", "AQQABAIC/revision=42", `["a2V5","AQQABAIC/revision=42"]`, `["x",`} {
		f.Add(seed, true, false)
	}
	p := proto.Progress{Epoch: 7, TimeMs: now.UnixMilli(), Offsets: []int64{1, 2, 3}}
	f.Add(string(proto.AppendEventID(nil, proto.IDEtag, nil, true, &p, "")), false, true)
	topic := Topic{Epoch: 7, Partitions: 3, Horizon: time.Hour}
	live := proto.Progress{Epoch: 7, Offsets: []int64{5, 6, 7}}
	f.Fuzz(func(t *testing.T, value string, inHeader, fromLive bool) {
		s := StartAt(ID{Value: value, InHeader: inHeader, FromLive: fromLive}, topic, live, now)
		if s.At.Epoch != 7 || len(s.At.Offsets) != 3 {
			t.Fatalf("%q: start %+v", value, s.At)
		}
		if s.Resumed && (s.Reset != reason.Unknown || s.Err != nil) {
			t.Fatalf("%q: resumed and %v / %v", value, s.Reset, s.Err)
		}
	})
}
