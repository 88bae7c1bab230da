//go:build linux

package sseload

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/internal/poll"
)

// Options describe one load run.
type Options struct {
	URL        string        // SSE endpoint, http://host:port/path
	Clients    int           // connections
	SlowShare  float64       // share of clients that never read (0..1)
	Brokers    []string      // Kafka to produce to
	Topic      string        // topic the URL streams
	Partitions int           // partitions to spread records over
	Rate       int           // records per second
	Duration   time.Duration // how long to produce
	Keys       int           // distinct keys per partition
	EdgePID    int           // edge process, for RSS per connection (0: skip)
	Settle     time.Duration // wait this long after connecting before reading the edge's RSS
	Churn      int           // connections closed and opened again per second while producing (churn scenario)
	Procs      int           // processes to spread the connections over (≤1: this one)
	Exe        string        // the executable run with -worker for Procs > 1 (default: this one)
	PerSource  int           // against a loopback URL, connections per loopback source address (0: all from one; see DialOptions)
	Progress   io.Writer     // a line per second (nil: none)

	// AcceptEncoding is sent by every client, which decodes what comes (DialOptions).
	AcceptEncoding string
	JSON           bool // records are PayloadJSON (about 200 B) instead of Payload
}

// Result is a run's outcome, written as JSON.
type Result struct {
	Clients          int                `json:"clients"`
	Procs            int                `json:"processes"`
	Slow             int                `json:"slowClients"`
	ConnectSeconds   float64            `json:"connectSeconds"`
	ConnectsPerSec   float64            `json:"connectsPerSecond"`
	Ready            int64              `json:"ready"`
	Produced         int64              `json:"produced"`
	ChurnConnects    int64              `json:"churnConnects,omitempty"`
	ChurnReadyPerSec float64            `json:"churnReadyPerSecond,omitempty"`
	Delivered        int64              `json:"delivered"`
	Expected         int64              `json:"expected"`
	DeliveriesPerSec float64            `json:"deliveriesPerSecond"`
	Missed           int64              `json:"missed"`
	ClosedByServer   int64              `json:"closedByServer"`
	Refused          map[string]int64   `json:"refused,omitempty"` // streams ended before ready, by why
	LatencyMs        map[string]float64 `json:"latencyMs"`
	EdgeRSSPerConn   int64              `json:"edgeRSSBytesPerConnection,omitempty"`
	// EdgeWritesPerDelivery is the edge's write system calls (syscw in
	// /proc/PID/io) while producing and settling, per delivery.
	EdgeWritesPerDelivery float64 `json:"edgeWritesPerDelivery,omitempty"`
	// EdgeCPUMicrosPerDelivery is the edge's user and system CPU time
	// (/proc/PID/stat) while producing and settling, per delivery.
	EdgeCPUMicrosPerDelivery float64 `json:"edgeCPUMicrosPerDelivery,omitempty"`
	// BytesRead is what the clients read off their sockets (one process only).
	BytesRead    int64 `json:"bytesRead,omitempty"`
	DecodeErrors int64 `json:"decodeErrors,omitempty"`
}

// Run connects the clients, waits for their ready, produces at Rate for
// Duration, waits for the deliveries to settle, and reports.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Partitions <= 0 {
		o.Partitions = 1
	}
	if o.Keys <= 0 {
		o.Keys = 100
	}
	progress := func(format string, a ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", a...)
		}
	}
	rssBefore := rss(o.EdgePID)
	slow := int(float64(o.Clients) * o.SlowShare)
	start := time.Now()
	var cl group
	connect := time.Duration(0)
	if o.Procs > 1 {
		exe := o.Exe
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		pg, err := startWorkers(ctx, exe, o.URL, o.Procs, o.Clients, slow, o.PerSource, o.AcceptEncoding)
		if err != nil {
			return nil, err
		}
		cl = pg
		connect = time.Duration(pg.connectSeconds() * float64(time.Second))
	} else {
		lg, err := startLocal(DialOptions{URLs: []string{o.URL}, Clients: o.Clients, Stalled: slow, PerSource: o.PerSource, AcceptEncoding: o.AcceptEncoding})
		if err != nil {
			return nil, err
		}
		cl = lg
		connect = time.Since(start)
	}
	defer cl.Close()
	res := &Result{Clients: o.Clients, Procs: max(o.Procs, 1), Slow: slow, ConnectSeconds: connect.Seconds(),
		ConnectsPerSec: float64(o.Clients) / connect.Seconds()}
	if err := waitReady(ctx, cl, int64(o.Clients-slow)); err != nil {
		return nil, err
	}
	progress("%d clients connected in %v, %d ready", o.Clients, connect.Round(time.Millisecond), cl.Ready())
	if o.EdgePID > 0 {
		// The Go runtime returns the memory of finished handlers to the OS
		// gradually; Settle lets it, so the figure is the steady state.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.Settle):
		}
		res.EdgeRSSPerConn = (rss(o.EdgePID) - rssBefore) / int64(o.Clients)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(o.Brokers...), kgo.DefaultProduceTopic(o.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	cl.SetChurn(o.Churn)
	seqs := make([]int64, o.Partitions)
	interval := time.Second / time.Duration(max(o.Rate, 1))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	end := time.After(o.Duration)
	produceStart := time.Now()
	syscwBefore, cpuBefore := syscw(o.EdgePID), CPUSeconds(o.EdgePID)
	var produced int64
	lastDelivered := int64(0)
produce:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-end:
			break produce
		case <-second.C:
			d := cl.Delivered()
			progress("produced %d, delivered %d (%d/s), missed %d, closed %d, reconnected %d%s", produced, d, d-lastDelivered, cl.Missed(), cl.Closed(), cl.Reconnects(), refusedSuffix(cl.Refused()))
			lastDelivered = d
		case <-tick.C:
			p := int(produced % int64(o.Partitions))
			seqs[p]++
			r := &kgo.Record{Partition: int32(p), Key: []byte("key-" + strconv.Itoa(int(seqs[p])%o.Keys)), Value: o.value(p, seqs[p])}
			prod.Produce(ctx, r, nil)
			produced++
		}
	}
	cl.SetChurn(0)
	if err := prod.Flush(ctx); err != nil {
		return nil, err
	}
	res.Produced = produced
	if o.Churn > 0 {
		// Reconnected clients start at live: no delivery count to expect.
		res.ChurnConnects = cl.Reconnects()
		res.ChurnReadyPerSec = float64(cl.Ready()-int64(o.Clients-slow)) / time.Since(produceStart).Seconds()
	} else {
		res.Expected = produced * int64(o.Clients-slow)
		// Let what is in flight arrive, for at most 30s.
		_ = waitUntil(ctx, 30*time.Second, func() bool { return cl.Delivered()+cl.Missed() >= res.Expected })
	}
	elapsed := time.Since(produceStart)
	writes, cpu := syscw(o.EdgePID)-syscwBefore, CPUSeconds(o.EdgePID)-cpuBefore
	h := cl.Finish()
	res.BytesRead, res.DecodeErrors = decodeStats(cl)
	res.Ready, res.Delivered, res.Missed, res.ClosedByServer = cl.Ready(), cl.Delivered(), cl.Missed(), cl.Closed()
	res.Refused = cl.Refused() // empty: left out of the JSON
	res.DeliveriesPerSec = float64(res.Delivered) / elapsed.Seconds()
	if o.EdgePID > 0 && res.Delivered > 0 {
		res.EdgeWritesPerDelivery = float64(writes) / float64(res.Delivered)
		res.EdgeCPUMicrosPerDelivery = cpu * 1e6 / float64(res.Delivered)
	}
	res.LatencyMs = map[string]float64{}
	for _, q := range []float64{50, 90, 99, 99.9, 100} {
		res.LatencyMs["p"+strings.TrimSuffix(strconv.FormatFloat(q, 'f', -1, 64), ".0")] = float64(h.ValueAtQuantile(q)) / 1000
	}
	return res, nil
}

// value is the record Run produces for partition p's seq-th: Payload, or
// PayloadJSON with JSON.
func (o *Options) value(p int, seq int64) []byte {
	if o.JSON {
		return PayloadJSON(p, seq, time.Now().UnixNano())
	}
	return Payload(p, seq, time.Now().UnixNano())
}

// decodeStats is what g's clients read off their sockets and how many
// compressed bodies failed: known for clients of this process only.
func decodeStats(g group) (bytesRead, decodeErrors int64) {
	if lg, ok := g.(*localGroup); ok {
		return lg.BytesRead(), lg.DecodeErrors()
	}
	return 0, 0
}

// WriteJSON writes the result, indented.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSVG writes a bar chart of the latency percentiles.
func (r *Result) WriteSVG(w io.Writer) error {
	keys := []string{"p50", "p90", "p99", "p99.9", "p100"}
	top := 0.0
	for _, k := range keys {
		top = max(top, r.LatencyMs[k])
	}
	top = max(top, 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="520" height="260" font-family="sans-serif" font-size="12">`)
	fmt.Fprintf(&b, `<text x="10" y="18">latency (ms), %d clients, %.0f deliveries/s</text>`, r.Clients, r.DeliveriesPerSec)
	for i, k := range keys {
		h := 180 * r.LatencyMs[k] / top
		x := 40 + i*95
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="60" height="%.1f" fill="#4a7fb5"/>`, x, 220-h, h)
		fmt.Fprintf(&b, `<text x="%d" y="240">%s</text><text x="%d" y="%.1f">%.2f</text>`, x+15, k, x, 215-h, r.LatencyMs[k])
	}
	b.WriteString(`</svg>`)
	_, err := io.WriteString(w, b.String())
	return err
}

// waitReady waits until want clients are ready, for at most a minute, or
// until the others' streams ended before ready (a refused client does not
// come back); the error then says how many were refused, and why.
func waitReady(ctx context.Context, cl group, want int64) error {
	err := waitUntil(ctx, 60*time.Second, func() bool { return cl.Ready()+cl.RefusedTotal() >= want })
	ready := cl.Ready()
	if err == nil && ready >= want {
		return nil
	}
	if err == nil {
		err = errors.New("the others' streams ended")
	}
	return fmt.Errorf("%d of %d clients ready: %w%s", ready, want, err, refusedSuffix(cl.Refused()))
}

// settingOf names the edge setting behind a refusal's reason (the texts of
// edge/internal/reason), for a load tester who meets it.
var settingOf = map[string]string{
	"too many connections from this address":      "sse.maxConnectionsPerIP",
	"edge at its connection limit":                "sse.maxConnections",
	"setup queue full":                            "sse.setupQueue",
	"too many streams starting from this address": "sse.setupQueuePerAddress",
}

// FormatRefused writes refusals by why, most first, each with the edge
// setting behind it where known: "2000 too many connections from this
// address (sse.maxConnectionsPerIP), 3 HTTP 404 Not Found".
func FormatRefused(refused map[string]int64) string {
	whys := slices.Collect(maps.Keys(refused))
	slices.SortFunc(whys, func(a, b string) int {
		return cmp.Or(cmp.Compare(refused[b], refused[a]), cmp.Compare(a, b))
	})
	parts := make([]string, 0, len(whys))
	for _, why := range whys {
		part := strconv.FormatInt(refused[why], 10) + " " + why
		if s, ok := settingOf[why]; ok {
			part += " (" + s + ")"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// refusedSuffix is "; refused: ..." when there are refusals.
func refusedSuffix(refused map[string]int64) string {
	if len(refused) == 0 {
		return ""
	}
	return "; refused: " + FormatRefused(refused)
}

// waitUntil polls cond until it holds, for at most limit.
func waitUntil(ctx context.Context, limit time.Duration, cond func() bool) error {
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := poll.Wait(wctx, 10*time.Millisecond, cond)
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("not within %v", limit)
	}
	return err
}

// CPUSeconds is a process's user and system CPU time so far, from
// /proc/PID/stat (0 if unknown); Linux counts it in ticks of 1/100 s.
func CPUSeconds(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is
	// the first, utime the 12th, stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(utime+stime) / 100
}

// rss reads a process's resident set size in bytes from /proc (0 if unknown).
func rss(pid int) int64 { return procField(pid, "status", "VmRSS:") << 10 }

// syscw reads a process's write system calls so far from /proc (0 if unknown).
func syscw(pid int) int64 { return procField(pid, "io", "syscw:") }

// procField reads the number after prefix in /proc/PID/file (a "kB" unit is dropped).
func procField(pid int, file, prefix string) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
