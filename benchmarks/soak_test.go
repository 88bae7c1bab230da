//go:build linux

package benchmarks

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/benchmarks/sseload"
)

var (
	soakDuration = flag.Duration("soak-duration", 10*time.Minute, "how long BenchmarkSoak runs")
	soakClients  = flag.Int("soak-clients", 20_000, "connections in BenchmarkSoak, half on each edge")
	soakRate     = flag.Int("soak-rate", 116, "records per second in BenchmarkSoak")
	soakKeys     = flag.Int("soak-keys", 50_000, "distinct keys the soak's records update")
	soakEvery    = flag.Duration("soak-every", 10*time.Second, "sampling interval of BenchmarkSoak")
	soakPlot     = flag.String("soak-plot", "", "write the soak's samples as an SVG plot here (default: the test's temp dir)")
)

// soakSample is one interval of a soak.
type soakSample struct {
	At                 time.Duration
	RSSA, RSSB         int64   // the edges' resident sets, bytes
	P50, P99           float64 // ms, edge A's clients, this interval
	Delivered, Missed  int64   // both edges' clients, so far
	ReadyA, ReadyB     int64
	ClosedA, ClosedB   int64
	DeliveredPerSecond float64
}

// workerProc is an sseload worker process (benchmarks/cmd/sseload -worker)
// holding connections this process could not (open-file limit).
type workerProc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	st  struct{ Ready, Delivered, Missed, Closed int64 }
}

func startWorker(tb testing.TB, dir, url string, clients int) *workerProc {
	tb.Helper()
	bin := filepath.Join(dir, "sseload")
	run(tb, "..", "go", "build", "-o", bin, "./benchmarks/cmd/sseload")
	w := &workerProc{cmd: exec.Command(bin, "-worker", "-url", url, "-clients", strconv.Itoa(clients))}
	stdin, err := w.cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	w.cmd.Stderr = os.Stderr
	if err := w.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			var st struct{ Ready, Delivered, Missed, Closed int64 }
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				w.mu.Lock()
				w.st = st
				w.mu.Unlock()
			}
		}
	}()
	tb.Cleanup(func() { _ = stdin.Close(); _ = w.cmd.Process.Kill(); _ = w.cmd.Wait() })
	return w
}

func (w *workerProc) status() (ready, delivered, missed, closed int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Ready, w.st.Delivered, w.st.Missed, w.st.Closed
}

// soak runs the shape in which live updates are reported to freeze: many
// connections over two edges, a large key space, a steady trickle of
// records, for a long time; it samples RSS, latency and loss as it goes.
func soak(tb testing.TB, bin, name string, clients, rate, keys int, d, every time.Duration) []soakSample {
	tb.Helper()
	c := startProcCluster(tb, bin, stormConfig, 2)
	a := runClients(tb, sseload.DialOptions{URLs: []string{c.EdgeURLs[0] + "/t"}, Clients: clients / 2})
	b := startWorker(tb, tb.TempDir(), c.EdgeURLs[1]+"/t", clients-clients/2)
	waitUntil(tb, 2*time.Minute, "every client ready", func() bool {
		ready, _, _, _ := b.status()
		return a.Ready() == int64(clients/2) && ready == int64(clients-clients/2)
	})
	prod := startProducer(tb, c.Kafka, 3, rate, max(keys/3, 1))
	defer prod.finish(tb)
	var samples []soakSample
	start := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastDelivered := int64(0)
	a.ResetLatency()
	for at := range tick.C {
		h := a.Latency()
		a.ResetLatency()
		readyB, deliveredB, missedB, closedB := b.status()
		s := soakSample{At: at.Sub(start).Round(time.Second), RSSA: rssOf(c.Edges[0].Pid()), RSSB: rssOf(c.Edges[1].Pid()),
			P50: float64(h.ValueAtQuantile(50)) / 1000, P99: float64(h.ValueAtQuantile(99)) / 1000,
			Delivered: a.Delivered() + deliveredB, Missed: a.Missed() + missedB,
			ReadyA: a.Ready(), ReadyB: readyB, ClosedA: a.Closed(), ClosedB: closedB}
		s.DeliveredPerSecond = float64(s.Delivered-lastDelivered) / every.Seconds()
		lastDelivered = s.Delivered
		samples = append(samples, s)
		fmt.Printf("soak %s %v: RSS A %.1f MiB, B %.1f MiB; p50 %.1f ms, p99 %.1f ms; %.0f deliveries/s; missed %d; closed %d+%d\n",
			name, s.At, float64(s.RSSA)/(1<<20), float64(s.RSSB)/(1<<20), s.P50, s.P99, s.DeliveredPerSecond, s.Missed, s.ClosedA, s.ClosedB)
		if at.Sub(start) >= d {
			break
		}
	}
	return samples
}

func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n << 10
		}
	}
	return 0
}

// soakSummary compares the second minute with the last: the soak's target
// is both within 10%.
func soakSummary(samples []soakSample, every time.Duration) string {
	per := max(int(time.Minute/every), 1)
	if len(samples) < 3*per {
		return "too short to compare minutes"
	}
	avg := func(ss []soakSample, f func(soakSample) float64) float64 {
		t := 0.0
		for _, s := range ss {
			t += f(s)
		}
		return t / float64(len(ss))
	}
	second, last := samples[per:2*per], samples[len(samples)-per:]
	rss := func(s soakSample) float64 { return float64(s.RSSA+s.RSSB) / (1 << 20) }
	p99 := func(s soakSample) float64 { return s.P99 }
	end := samples[len(samples)-1]
	return fmt.Sprintf("RSS of both edges %.1f → %.1f MiB (%+.1f%%), p99 %.1f → %.1f ms (%+.1f%%), missed %d, closed by the server %d",
		avg(second, rss), avg(last, rss), 100*(avg(last, rss)/avg(second, rss)-1),
		avg(second, p99), avg(last, p99), 100*(avg(last, p99)/max(avg(second, p99), 0.001)-1), end.Missed, end.ClosedA+end.ClosedB)
}

// writeSoakPlot draws RSS (MiB, both edges) and p99 (ms) over time.
func writeSoakPlot(path string, runs map[string][]soakSample) error {
	const w, h, pad = 720, 300, 50
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`, w, 2*h)
	colors := []string{"#b55a4a", "#4a7fb5"}
	panel := func(y0 int, title string, f func(soakSample) float64) {
		top, span := 1.0, 1.0
		for _, ss := range runs {
			for _, s := range ss {
				top = max(top, f(s))
				span = max(span, s.At.Seconds())
			}
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s (max %.1f)</text>`, pad, y0+15, title, top)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`, pad, y0+h-pad, w-10, y0+h-pad)
		i := 0
		for name, ss := range runs {
			var pts []string
			for _, s := range ss {
				x := pad + (w-pad-10)*s.At.Seconds()/span
				y := float64(y0+h-pad) - float64(h-2*pad)*f(s)/top
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" points="%s"/>`, colors[i%len(colors)], strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, w-200, y0+30+15*i, colors[i%len(colors)], name)
			i++
		}
	}
	panel(0, "RSS of both edges, MiB", func(s soakSample) float64 { return float64(s.RSSA+s.RSSB) / (1 << 20) })
	panel(h, "p99 latency of edge A's clients per interval, ms", func(s soakSample) float64 { return s.P99 })
	b.WriteString(`</svg>`)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// BenchmarkSoak: -soak-clients connections over two edges (half of them
// in an sseload worker process), records at -soak-rate over -soak-keys
// keys, for -soak-duration, sampled every -soak-every. With
// -storm-baseline REF the same soak runs first on that commit.
//
//	go test -run '^$' -bench Soak -benchtime 1x -timeout 60m -storm-baseline main -soak-plot soak.svg ./benchmarks/
func BenchmarkSoak(b *testing.B) {
	runs := map[string][]soakSample{}
	eachBuild(b, func(b *testing.B, name, bin string) {
		samples := soak(b, bin, name, *soakClients, *soakRate, *soakKeys, *soakDuration, *soakEvery)
		runs[name] = samples
		fmt.Printf("soak, %s: %s\n", name, soakSummary(samples, *soakEvery))
	})
	plot := *soakPlot
	if plot == "" {
		plot = filepath.Join(b.TempDir(), "soak.svg")
	}
	if err := writeSoakPlot(plot, runs); err != nil {
		b.Fatal(err)
	}
	fmt.Println("soak plot:", plot)
}
