//go:build linux

package sseload

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// group is the connections of a run: in this process, or spread over
// worker processes (one process may hold at most ~19,000 connections here).
type group interface {
	Ready() int64
	Delivered() int64
	Missed() int64
	Closed() int64
	Reconnects() int64
	Refused() map[string]int64 // streams ended before ready, by why (Clients.Refused)
	RefusedTotal() int64
	SetChurn(perSecond int)
	// Finish stops reading and returns the latency histogram (microseconds);
	// the counters are final after it.
	Finish() *hdrhistogram.Histogram
	Close()
}

// localGroup is a Clients read by a goroutine of this process.
type localGroup struct {
	*Clients
	stop, done chan struct{}
	once       sync.Once
}

func startLocal(o DialOptions) (*localGroup, error) {
	cl, err := DialWith(o)
	if err != nil {
		return nil, err
	}
	g := &localGroup{Clients: cl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() { defer close(g.done); cl.Run(g.stop) }()
	return g, nil
}

func (g *localGroup) Finish() *hdrhistogram.Histogram {
	g.once.Do(func() { close(g.stop); <-g.done })
	return g.Latency()
}

func (g *localGroup) Close() {
	g.Finish()
	g.Clients.Close()
}

// workerStatus is what a worker process reports, a JSON line every 100 ms
// and a last one (Final, with its histogram) when told to stop.
type workerStatus struct {
	ConnectSeconds float64                `json:"connectSeconds"`
	Ready          int64                  `json:"ready"`
	Delivered      int64                  `json:"delivered"`
	Missed         int64                  `json:"missed"`
	Closed         int64                  `json:"closed"`
	Reconnects     int64                  `json:"reconnects"`
	Refused        map[string]int64       `json:"refused,omitempty"`
	Final          bool                   `json:"final,omitempty"`
	Latency        *hdrhistogram.Snapshot `json:"latency,omitempty"`
	Err            string                 `json:"error,omitempty"`
}

// RunWorker is a worker process's side: it dials the connections o
// describes, reports a status line to out every 100 ms, takes "churn N"
// and "stop" lines from in, and after "stop" (or the end of in) writes a
// final status with its histogram.
func RunWorker(ctx context.Context, o DialOptions, in io.Reader, out io.Writer) error {
	enc := json.NewEncoder(out)
	start := time.Now()
	g, err := startLocal(o)
	if err != nil {
		_ = enc.Encode(workerStatus{Final: true, Err: err.Error()})
		return err
	}
	defer g.Close()
	connect := time.Since(start).Seconds()
	status := func() workerStatus {
		return workerStatus{ConnectSeconds: connect, Ready: g.Ready(), Delivered: g.Delivered(),
			Missed: g.Missed(), Closed: g.Closed(), Reconnects: g.Reconnects(), Refused: g.Refused()}
	}
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			cmd, arg, _ := strings.Cut(sc.Text(), " ")
			switch cmd {
			case "churn":
				if v, err := strconv.Atoi(arg); err == nil {
					g.SetChurn(v)
				}
			case "stop":
				return
			}
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			h := g.Finish()
			st := status()
			st.Final, st.Latency = true, h.Export()
			return enc.Encode(st)
		case <-tick.C:
			if err := enc.Encode(status()); err != nil {
				return err
			}
		}
	}
}

// procGroup is connections spread over worker processes: the executable
// is run again with -worker (see RunWorker).
type procGroup struct {
	workers []*worker
}

type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu     sync.Mutex
	status workerStatus
	final  chan struct{} // closed when the final status (or the end of stdout) is read
}

// startWorkers starts procs workers sharing n connections (stalled of
// them never read), each with its own set of loopback source addresses
// when perSource is set, and waits until every one has dialled.
func startWorkers(ctx context.Context, exe, url string, procs, n, stalled, perSource int, acceptEncoding string) (*procGroup, error) {
	if perSource > 0 && procs > 256 {
		return nil, fmt.Errorf("%d processes: at most 256 have source addresses of their own", procs)
	}
	g := &procGroup{}
	for i := range procs {
		share := n/procs + btoi(i < n%procs)
		stalledShare := stalled/procs + btoi(i < stalled%procs)
		cmd := exec.CommandContext(ctx, exe, "-worker", "-url", url,
			"-clients", strconv.Itoa(share), "-stalled", strconv.Itoa(stalledShare),
			"-per-source", strconv.Itoa(perSource), "-source-set", strconv.Itoa(i), "-accept-encoding", acceptEncoding)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			g.Close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			g.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			g.Close()
			return nil, fmt.Errorf("start worker %d: %w", i, err)
		}
		w := &worker{cmd: cmd, stdin: stdin, final: make(chan struct{})}
		g.workers = append(g.workers, w)
		go w.read(stdout)
	}
	err := waitUntil(ctx, 5*time.Minute, func() bool {
		for _, w := range g.workers {
			w.mu.Lock()
			dialled := w.status.ConnectSeconds > 0 || w.status.Err != ""
			w.mu.Unlock()
			if !dialled && !isClosed(w.final) {
				return false
			}
		}
		return true
	})
	for i, w := range g.workers {
		w.mu.Lock()
		st := w.status
		w.mu.Unlock()
		switch {
		case st.Err != "":
			err = fmt.Errorf("worker %d: %s", i, st.Err)
		case st.ConnectSeconds == 0:
			err = errors.Join(err, fmt.Errorf("worker %d ended before connecting", i))
		}
	}
	if err != nil {
		g.Close()
		return nil, err
	}
	return g, nil
}

func (w *worker) read(stdout io.Reader) {
	defer close(w.final)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var st workerStatus
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			continue
		}
		w.mu.Lock()
		w.status = st
		w.mu.Unlock()
		if st.Final {
			return
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (g *procGroup) sum(f func(*workerStatus) int64) int64 {
	var total int64
	for _, w := range g.workers {
		w.mu.Lock()
		total += f(&w.status)
		w.mu.Unlock()
	}
	return total
}

// connectSeconds is the slowest worker's dialling time.
func (g *procGroup) connectSeconds() float64 {
	var slowest float64
	for _, w := range g.workers {
		w.mu.Lock()
		slowest = max(slowest, w.status.ConnectSeconds)
		w.mu.Unlock()
	}
	return slowest
}

func (g *procGroup) Ready() int64 { return g.sum(func(s *workerStatus) int64 { return s.Ready }) }
func (g *procGroup) Delivered() int64 {
	return g.sum(func(s *workerStatus) int64 { return s.Delivered })
}
func (g *procGroup) Missed() int64 { return g.sum(func(s *workerStatus) int64 { return s.Missed }) }
func (g *procGroup) Closed() int64 { return g.sum(func(s *workerStatus) int64 { return s.Closed }) }
func (g *procGroup) Reconnects() int64 {
	return g.sum(func(s *workerStatus) int64 { return s.Reconnects })
}

func (g *procGroup) RefusedTotal() int64 {
	return g.sum(func(s *workerStatus) int64 {
		var n int64
		for _, v := range s.Refused {
			n += v
		}
		return n
	})
}

func (g *procGroup) Refused() map[string]int64 {
	all := map[string]int64{}
	for _, w := range g.workers {
		w.mu.Lock()
		for why, n := range w.status.Refused {
			all[why] += n
		}
		w.mu.Unlock()
	}
	return all
}

func (g *procGroup) SetChurn(perSecond int) {
	for i, w := range g.workers {
		share := perSecond/len(g.workers) + btoi(i < perSecond%len(g.workers))
		fmt.Fprintf(w.stdin, "churn %d\n", share)
	}
}

// Finish stops every worker and merges their histograms.
func (g *procGroup) Finish() *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, w := range g.workers {
		fmt.Fprintln(w.stdin, "stop")
	}
	for _, w := range g.workers {
		select {
		case <-w.final:
		case <-time.After(30 * time.Second):
		}
		w.mu.Lock()
		if w.status.Latency != nil {
			h.Merge(hdrhistogram.Import(w.status.Latency))
		}
		w.mu.Unlock()
	}
	return h
}

func (g *procGroup) Close() {
	for _, w := range g.workers {
		_ = w.stdin.Close() // a worker ends at the end of its input
	}
	for _, w := range g.workers {
		select {
		case <-w.final: // stdout read to its end: Wait may close it
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			<-w.final
		}
		done := make(chan struct{})
		go func() { _ = w.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			<-done
		}
	}
}
