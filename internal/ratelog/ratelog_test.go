package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// 100,000 warnings of one message in a second make the burst and a line a
// second, the next one saying how many were left out; another message and
// lower levels are not held back.
func TestBoundsWarningsPerMessage(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, nil), 10, time.Second)
	clock := time.Unix(1_000_000, 0)
	h.state.now = func() time.Time { return clock }
	log := slog.New(h).With("component", "edge")
	for i := range 100_000 {
		log.Warn("bad live change", "i", i)
		if i%10_000 == 0 {
			log.Info("info passes")
		}
	}
	log.Error("other message")
	clock = clock.Add(time.Second)
	log.Warn("bad live change", "i", "after")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var warns, infos int
	for _, l := range lines {
		switch {
		case strings.Contains(l, "bad live change"):
			warns++
		case strings.Contains(l, "info passes"):
			infos++
		}
	}
	if warns != 11 || infos != 10 || !strings.Contains(out.String(), "other message") {
		t.Fatalf("%d warnings, %d infos:\n%s", warns, infos, out.String())
	}
	if last := lines[len(lines)-1]; !strings.Contains(last, "suppressed=99990") || !strings.Contains(last, "component=edge") {
		t.Fatalf("last line %q", last)
	}
	if Wrap(slog.New(h)).Handler() != h {
		t.Fatal("wrapped twice")
	}
}
