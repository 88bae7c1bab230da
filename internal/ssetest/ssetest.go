// Package ssetest reads Server-Sent Events streams in tests as an
// EventSource parses them: id, event, data, retry and comments, with the
// raw bytes of each block for tests that compare what went on the wire.
//
// Lines end at LF only, as the edge writes them: a CR the edge wrote by
// mistake stays in a value (and in Raw), so a test sees it.
//
// A Reader parses synchronously on the caller's goroutine. A Stream reads
// in the background and never waits for the test: what it parsed waits in
// a queue that grows as needed (no buffer allocated up front, so thousands
// of streams stay cheap; a channel of 1<<16 events cost ~6 MiB each, and
// the property tests' connections stalled a -count=100 run).
package ssetest

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"sync"
	"time"
)

// Event is one block of a stream, up to and including its blank line.
type Event struct {
	ID, Event, Data, Retry string
	HasID, HasData         bool
	// Comment says the block held comment lines; Comments is their text
	// (after the colon and one space), joined by "\n".
	Comment  bool
	Comments string
	Raw      string // the block's bytes as read
}

// Dispatched says whether an EventSource would dispatch ev: it has data.
func (ev Event) Dispatched() bool { return ev.HasData }

// KeepAlive says whether ev holds comments only (a keep-alive).
func (ev Event) KeepAlive() bool { return ev.Comment && !ev.HasData }

// Reader parses blocks from a stream, one at a time.
type Reader struct {
	br  *bufio.Reader
	tee io.Writer
	raw strings.Builder
}

// NewReader reads r; a *bufio.Reader is used as it is (one that read a
// response's header keeps what it buffered).
func NewReader(r io.Reader) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	return &Reader{br: br}
}

// Tee writes every line r reads to w as it is read, an unfinished block
// at the stream's end included, and returns r.
func (r *Reader) Tee(w io.Writer) *Reader {
	r.tee = w
	return r
}

// Next returns the next block, keep-alives included. At the stream's end
// it returns the error that ended it (io.EOF when the server closed it);
// an unfinished last block is not returned.
func (r *Reader) Next() (Event, error) {
	var ev Event
	r.raw.Reset()
	for {
		line, err := r.br.ReadString('\n')
		r.raw.WriteString(line)
		if r.tee != nil {
			_, _ = io.WriteString(r.tee, line)
		}
		if err != nil {
			return Event{}, err
		}
		line = line[:len(line)-1]
		if line == "" {
			ev.Raw = r.raw.String()
			return ev, nil
		}
		parseLine(&ev, line)
	}
}

// parseLine adds one field line (without its LF) to ev.
func parseLine(ev *Event, line string) {
	if text, ok := strings.CutPrefix(line, ":"); ok {
		if ev.Comment {
			ev.Comments += "\n"
		}
		ev.Comment = true
		ev.Comments += strings.TrimPrefix(text, " ")
		return
	}
	field, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch field {
	case "id":
		ev.ID, ev.HasID = value, true
	case "event":
		ev.Event = value
	case "data":
		if ev.HasData {
			ev.Data += "\n"
		}
		ev.Data += value
		ev.HasData = true
	case "retry":
		ev.Retry = value
	}
}

// NextDispatched returns the next block that is not a keep-alive.
func (r *Reader) NextDispatched() (Event, error) {
	for {
		ev, err := r.Next()
		if err != nil || !ev.KeepAlive() {
			return ev, err
		}
	}
}

// Until returns the blocks up to and including the first for which stop
// holds, keep-alives included; at the stream's end, those read and the
// error.
func (r *Reader) Until(stop func(Event) bool) ([]Event, error) {
	var evs []Event
	for {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
		if stop(ev) {
			return evs, nil
		}
	}
}

// IsReady says whether ev is the edge's event:ready.
func IsReady(ev Event) bool { return ev.Event == "ready" }

// Data is the data of the dispatched blocks in evs, in order.
func Data(evs []Event) []string {
	var data []string
	for _, ev := range evs {
		if ev.HasData {
			data = append(data, ev.Data)
		}
	}
	return data
}

// Errors of Stream.Next.
var (
	ErrEnded   = errors.New("stream ended")
	ErrStopped = errors.New("stopped")
	ErrTimeout = errors.New("timeout waiting for an event")
)

// Stream reads one stream in the background.
type Stream struct {
	body   io.ReadCloser
	cancel func()
	events chan Event // unbuffered: fed from queue, closed after the last event
	done   chan struct{}

	mu    sync.Mutex
	raw   strings.Builder
	err   error         // what ended the read
	queue []Event       // parsed, not yet handed out
	ended bool          // the read ended: no more appends
	more  chan struct{} // a token when queue grew or ended
	quit  chan struct{} // closed by Close or Abandon: stop handing out
	stop  sync.Once
}

// Start reads body in the background until it ends; cancel (nil for
// none) ends the request it belongs to, and is called by Close.
func Start(body io.ReadCloser, cancel func()) *Stream {
	if cancel == nil {
		cancel = func() {}
	}
	s := &Stream{body: body, cancel: cancel, events: make(chan Event), done: make(chan struct{}),
		more: make(chan struct{}, 1), quit: make(chan struct{})}
	go s.read()
	go s.feed()
	return s
}

func (s *Stream) read() {
	defer close(s.done)
	r := NewReader(s.body).Tee(rawWriter{s})
	for {
		ev, err := r.Next()
		if err != nil {
			s.push(Event{}, err)
			return
		}
		s.push(ev, nil)
	}
}

// rawWriter appends to the stream's raw bytes under its lock.
type rawWriter struct{ s *Stream }

func (w rawWriter) Write(b []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.raw.Write(b)
}

func (s *Stream) push(ev Event, end error) {
	s.mu.Lock()
	if end != nil {
		s.ended, s.err = true, end
	} else {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	select {
	case s.more <- struct{}{}:
	default:
	}
}

// feed hands the queued events to events in order, then closes it.
func (s *Stream) feed() {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue[0] = Event{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			select {
			case s.events <- ev:
			case <-s.quit:
				return
			}
			continue
		}
		ended := s.ended
		s.mu.Unlock()
		if ended {
			close(s.events)
			return
		}
		select {
		case <-s.more:
		case <-s.quit:
			return
		}
	}
}

// Events are every block in order, keep-alives included; closed after the
// last one once the stream ended.
func (s *Stream) Events() <-chan Event { return s.events }

// Done is closed when the read ended.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err is what ended the read (io.EOF when the server closed the stream),
// nil while it goes on.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Raw is every byte read so far.
func (s *Stream) Raw() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}

// Next returns the next block that is not a keep-alive: ErrEnded when
// the stream ended first, ErrTimeout after timeout.
func (s *Stream) Next(timeout time.Duration) (Event, error) {
	return s.NextOrStop(timeout, nil)
}

// NextOrStop is Next, returning ErrStopped when stop closes first.
func (s *Stream) NextOrStop(timeout time.Duration, stop <-chan struct{}) (Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-stop:
			return Event{}, ErrStopped
		case ev, ok := <-s.events:
			if !ok {
				return Event{}, ErrEnded
			}
			if ev.KeepAlive() {
				continue
			}
			return ev, nil
		case <-deadline.C:
			return Event{}, ErrTimeout
		}
	}
}

// Close ends the request, waits for the read to end and closes the body.
func (s *Stream) Close() {
	s.cancel()
	<-s.done
	s.body.Close()
	s.Abandon()
}

// Abandon stops handing out events; the read goes on until the stream
// ends (for a stream the test no longer reads, ended by the server).
func (s *Stream) Abandon() { s.stop.Do(func() { close(s.quit) }) }
