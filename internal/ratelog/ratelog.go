// Package ratelog bounds how often a log line of the same message at WARN or
// above is written: a burst, then one a second, with the count of those
// left out attached to the next one written. Bad input from the network
// (garbage on NATS, hostile requests) must cost a log line now and then,
// not one per message. slog has no rate limiting of its own and the few
// libraries that do it wrap zap or logrus, hence this small handler.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Handler wraps another slog.Handler.
type Handler struct {
	next  slog.Handler
	state *state
}

type state struct {
	burst int
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	msgs map[string]*bucket
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// maxMessages bounds the messages tracked; messages are constant strings in
// this code base, so the bound is only a guard.
const maxMessages = 4096

// New wraps next: per message, burst records at WARN or above, then one
// each every. Lower levels pass unchanged.
func New(next slog.Handler, burst int, every time.Duration) *Handler {
	return &Handler{next: next, state: &state{burst: burst, every: every, now: time.Now, msgs: map[string]*bucket{}}}
}

// Wrap is New with the defaults used across ssekafka: 10 at once, then one
// a second. A logger already wrapped is returned as it is.
func Wrap(l *slog.Logger) *slog.Logger {
	if _, ok := l.Handler().(*Handler); ok {
		return l
	}
	return slog.New(New(l.Handler(), 10, time.Second))
}

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	suppressed, ok := h.state.allow(r.Message)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return h.next.Handle(ctx, r)
}

func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(as), state: h.state}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), state: h.state}
}

// allow takes a token for msg; it returns how many were left out since the
// last one written.
func (s *state) allow(msg string) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	b := s.msgs[msg]
	if b == nil {
		if len(s.msgs) >= maxMessages {
			clear(s.msgs)
		}
		b = &bucket{tokens: float64(s.burst), last: now}
		s.msgs[msg] = b
	}
	b.tokens = min(float64(s.burst), b.tokens+now.Sub(b.last).Seconds()/s.every.Seconds())
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return 0, false
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return n, true
}
