// Package proctest runs a process for a test or benchmark (an ssekafka
// binary, built from this tree or an older commit) and keeps its output to
// search: the process tests' one runner.
package proctest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssekafka/ssekafka/internal/poll"
)

// maxOutput bounds what a process's output keeps; the rest is dropped.
const maxOutput = 4 << 20

// Proc is a running process whose output (stdout and stderr, line by line)
// is kept and searched.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// Start starts bin with args; the process is killed when tb ends, and its
// output logged if tb failed.
func Start(tb testing.TB, bin, name string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	r, w := io.Pipe()
	p.Cmd.Stdout, p.Cmd.Stderr = w, w
	if err := p.Cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			if p.out.Len() < maxOutput {
				p.out.Write(sc.Bytes())
				p.out.WriteByte('\n')
			}
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, r) // a line past the scanner's limit: keep the pipe flowing
	}()
	go func() { _ = p.Cmd.Wait(); w.Close(); close(p.done) }()
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

// Output is what the process has printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the process has printed line, or fails tb after a
// minute.
func (p *Proc) WaitFor(tb testing.TB, line string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := poll.Wait(ctx, 20*time.Millisecond, func() bool { return strings.Contains(p.Output(), line) }); err != nil {
		tb.Fatalf("%s: no %q within a minute:\n%s", p.Name, line, p.Output())
	}
}

// Kill ends the process with SIGKILL (no goodbye, as a crash) and waits
// for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }
