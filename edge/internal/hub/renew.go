// Continuous authorization: every guarded stream is tracked until its
// token's expiry by one loop per edge (a heap of deadlines, no timer or
// goroutine per stream). At expiry minus the guard's challenge the client
// gets event:challenge; a renewal POST with a fresh token, to any edge, is
// verified there and routed over NATS to the edge holding the stream, whose
// expiry becomes the later of the two. At expiry the stream is closed; a
// stream whose signing key leaves its guard's JWKS is closed too.

package hub

import (
	"container/heap"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ssekafka/ssekafka/edge/internal/reason"
	"github.com/ssekafka/ssekafka/edge/internal/route"
	"github.com/ssekafka/ssekafka/guard"
)

// Renewal headers, as event:challenge lists them.
const (
	challengeContentType = "application/x-challenge-response"
	streamHeader         = "X-Ssekafka-Stream"
)

// authority tracks this edge's guarded streams.
type authority struct {
	e    *Hub
	id   string    // this edge's name in stream handles: [NATSName.]key's public key
	key  *renewKey // renewals routed here are sealed to it (renewseal.go)
	m    *authMetrics
	sub  *nats.Subscription
	wake chan struct{} // capacity 1: the earliest deadline may have moved

	mu      sync.Mutex // a leaf: nothing is taken while it is held
	next    uint64
	streams map[uint64]*authStream
	due     authHeap
	signers map[signer]int // streams per signing key, for checkKeys
}

// signer is a guard's key, by kid.
type signer struct {
	name string // the guard's name in Config.Guards
	g    *guard.Guard
	kid  string
}

// authStream is one guarded stream; guarded by authority.mu.
type authStream struct {
	id         uint64
	c          *client
	guard      *guard.Guard
	guardName  string
	identity   string
	roles      []string          // its route's: a renewal's token must grant them too
	attrs      map[string]string // the attributes its route uses, as its first token had them: a renewal's must be the same
	kid        string
	expires    time.Time
	challenged bool      // event:challenge sent for this expiry
	at         time.Time // next deadline: challenge or expiry
	index      int       // in the heap; -1 once removed
}

func (s *authStream) schedule() {
	s.at = s.expires
	if ch := s.guard.Challenge(); ch > 0 && !s.challenged {
		s.at = s.expires.Add(-ch)
	}
}

type authHeap []*authStream

func (h authHeap) Len() int           { return len(h) }
func (h authHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h authHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *authHeap) Push(x any)        { s := x.(*authStream); s.index = len(*h); *h = append(*h, s) }
func (h *authHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	s.index = -1
	return s
}

// startAuth sets up authorization when guards are configured: the renewal
// subscription and the deadline loop.
func (h *Hub) startAuth() error {
	if n := h.cfg.NATSName; n != "" && !subjectToken(n) {
		return fmt.Errorf("edge config: NATSName: %q is not one NATS subject token (no '.', '*', '>', spaces)", n)
	}
	if len(h.cfg.Guards) == 0 {
		return nil
	}
	k := newRenewKey()
	id := k.id
	if h.cfg.NATSName != "" {
		id = h.cfg.NATSName + "." + k.id
	}
	a := &authority{e: h, id: id, key: k, m: newAuthMetrics(h.cfg.Registerer), wake: make(chan struct{}, 1), streams: map[uint64]*authStream{}, signers: map[signer]int{}}
	sub, err := h.cfg.NATS.Subscribe(h.subjects.Renew(a.id), a.serveRenewal)
	if err != nil {
		return err
	}
	a.sub = sub
	h.auth = a
	go a.loop()
	return nil
}

func (a *authority) stop() {
	if a != nil {
		_ = a.sub.Unsubscribe()
	}
}

// track registers a guarded stream's client, once it has joined its feed.
func (a *authority) track(ctx context.Context, c *client, rt *route.Route) {
	sess := sessionFrom(ctx)
	if a == nil || sess == nil {
		return
	}
	s := &authStream{c: c, guard: a.e.cfg.Guards[sess.Guard].Guard, guardName: sess.Guard, identity: sess.Identity, roles: rt.Roles(), kid: sess.KeyID, expires: sess.Expires}
	prefix := route.GuardedKey(rt.Guard(), "attributes.")
	for _, k := range rt.Claims() {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			if s.attrs == nil {
				s.attrs = map[string]string{}
			}
			s.attrs[name] = sess.Attributes[name] // authorize refused a stream without it
		}
	}
	s.schedule()
	a.mu.Lock()
	a.next++
	s.id = a.next
	a.streams[s.id] = s
	heap.Push(&a.due, s)
	a.signers[signer{s.guardName, s.guard, s.kid}]++
	a.m.tracked.Inc()
	a.mu.Unlock()
	c.mu.Lock()
	c.auth = s
	c.mu.Unlock()
	a.poke()
}

// forget unregisters c, if it is tracked. It is called with feed.mu held.
func (a *authority) forget(c *client) {
	if a == nil {
		return
	}
	c.mu.Lock()
	s := c.auth
	c.mu.Unlock()
	if s == nil {
		return
	}
	a.mu.Lock()
	a.removeLocked(s)
	a.mu.Unlock()
}

func (a *authority) removeLocked(s *authStream) {
	if s.index < 0 {
		return
	}
	heap.Remove(&a.due, s.index)
	delete(a.streams, s.id)
	a.unsignLocked(s)
	a.m.tracked.Dec()
}

func (a *authority) unsignLocked(s *authStream) {
	k := signer{s.guardName, s.guard, s.kid}
	if a.signers[k]--; a.signers[k] <= 0 {
		delete(a.signers, k)
	}
}

func (a *authority) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// handle is the stream's name in event:challenge: the edge and the stream.
func (a *authority) handle(s *authStream) string {
	return a.id + "-" + strconv.FormatUint(s.id, 10)
}

// parseHandle reads a stream handle: the edge's id (its key, or its NATS
// name and key: NAME.KEY), then "-" and the stream's number.
func parseHandle(h string) (edgeID string, id uint64, ok bool) {
	i := strings.LastIndexByte(h, '-')
	if i < 0 {
		return "", 0, false
	}
	edgeID, n := h[:i], h[i+1:]
	name, key, named := strings.Cut(edgeID, ".")
	if !named {
		key = name
	}
	if !subjectToken(key) || named && !subjectToken(name) {
		return "", 0, false
	}
	id, err := strconv.ParseUint(n, 10, 64)
	return edgeID, id, err == nil
}

// subjectToken reports whether s is one NATS subject token.
func subjectToken(s string) bool {
	return s != "" && !strings.ContainsAny(s, ".*> \t\r\n")
}

// loop sends challenges and closes streams at their deadlines, and checks
// the streams' signing keys as often as a quarter of the shortest JWKS
// refresh interval.
func (a *authority) loop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var keyTick <-chan time.Time
	var every time.Duration
	for _, g := range a.e.cfg.Guards {
		if r := g.Guard.Refresh(); r > 0 && (every == 0 || r < every) {
			every = r
		}
	}
	if every > 0 {
		t := time.NewTicker(max(every/4, 10*time.Millisecond))
		defer t.Stop()
		keyTick = t.C
	}
	for {
		wait := a.runDue(time.Now())
		timer.Reset(wait)
		select {
		case <-a.e.done:
			return
		case <-a.wake:
		case <-timer.C:
		case <-keyTick:
			a.checkKeys()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// runDue acts on every deadline passed and returns the time to the next.
func (a *authority) runDue(now time.Time) time.Duration {
	var challenge, expire []*authStream
	a.mu.Lock()
	for len(a.due) > 0 && !a.due[0].at.After(now) {
		s := a.due[0]
		if !now.Before(s.expires) {
			a.removeLocked(s)
			expire = append(expire, s)
			continue
		}
		s.challenged = true
		s.schedule()
		heap.Fix(&a.due, 0)
		challenge = append(challenge, s)
	}
	a.mu.Unlock()
	for _, s := range expire {
		a.m.expired.Inc()
		s.c.close(reason.TokenExpired)
	}
	for _, s := range challenge {
		if !a.challenge(s) { // still in its state part: again shortly
			a.mu.Lock()
			if s.index >= 0 && s.challenged {
				s.challenged = false
				s.at = now.Add(50 * time.Millisecond)
				heap.Fix(&a.due, s.index)
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.due) == 0 {
		return time.Hour
	}
	return max(time.Until(a.due[0].at), 0)
}

// challenge queues event:challenge to a live client and flushes it, as the
// keep-alive loop does; false if the client is not live yet.
func (a *authority) challenge(s *authStream) bool {
	// Zilla's shape: the method, then every header the renewal must carry.
	data, _ := json.Marshal(struct {
		Method  string            `json:"method"`
		Headers map[string]string `json:"headers"`
	}{http.MethodPost, map[string]string{"content-type": challengeContentType, "x-ssekafka-stream": a.handle(s)}})
	frame := append(append([]byte("event:challenge\ndata:"), data...), "\n\n"...)
	c := s.c
	c.mu.Lock()
	if !c.live {
		c.mu.Unlock()
		return false
	}
	c.appendLocked(marker(frame))
	sk := c.sink
	if sk == nil {
		c.signalLocked()
	}
	c.mu.Unlock()
	if sk != nil {
		sk.flush()
	}
	a.m.challenges.Inc()
	return true
}

// checkKeys closes the streams whose signing key has left their guard's
// keys. It looks at each key once; only a key gone costs a walk of the streams.
func (a *authority) checkKeys() {
	a.mu.Lock()
	var kids []signer
	for k := range a.signers {
		if k.g.Refresh() > 0 && !a.e.cfg.Guards[k.name].KeepOnKeyRemoval {
			kids = append(kids, k)
		}
	}
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	gone := map[signer]bool{}
	for _, k := range kids {
		if !k.g.KeyPresent(ctx, k.kid) {
			gone[k] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	var ended []*authStream
	a.mu.Lock()
	for _, s := range a.streams {
		if gone[signer{s.guardName, s.guard, s.kid}] {
			a.removeLocked(s)
			ended = append(ended, s)
		}
	}
	a.mu.Unlock()
	for _, s := range ended {
		a.m.keyEnded.Inc()
		a.e.log.Info("stream closed: its signing key left the JWKS", "guard", s.guardName, "kid", s.kid)
		s.c.close(reason.KeyRemoved)
	}
}

// renewal is what an edge that received a renewal POST sends to the edge
// holding the stream: the token itself, which the holder verifies again
// with the stream's own guard and roles. Nothing else in it is trusted, so
// a message forged by anyone who may publish on NATS extends nothing.
type renewal struct {
	Stream uint64 `json:"stream"`
	Token  string `json:"token"`
}

// renew verifies a renewal's token against the tracked stream (its guard,
// its identity, its route's roles, the attributes its route's topic and
// filters use) and extends the stream; it returns the HTTP status to
// answer: 204, 404 (no such stream of this identity), 403 (other
// attribute values: the stream was granted for the first ones; it keeps
// that grant until its expiry) or the token's refusal.
func (a *authority) renew(ctx context.Context, r renewal) int {
	a.mu.Lock()
	s := a.streams[r.Stream]
	var g *guard.Guard
	var identity string
	var roles []string
	var attrs map[string]string
	if s != nil {
		g, identity, roles, attrs = s.guard, s.identity, s.roles, s.attrs
	}
	a.mu.Unlock()
	if s == nil {
		return http.StatusNotFound
	}
	sess, err := g.Verify(ctx, r.Token, roles) // outside a.mu: a JWKS fetch may wait
	if err != nil {
		return statusOf(err)
	}
	if sess.Identity != identity {
		return http.StatusNotFound // not this identity's stream: say no more than for none
	}
	for name, want := range attrs {
		if got, ok := sess.Attributes[name]; !ok || got != want {
			a.e.log.Warn("renewal refused: an attribute the route uses differs from the stream's", "guard", s.guardName, "attribute", name)
			return http.StatusForbidden
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.streams[r.Stream] != s {
		return http.StatusNotFound // ended meanwhile
	}
	if exp := sess.Expires; exp.After(s.expires) {
		a.unsignLocked(s)
		s.expires, s.kid, s.challenged = exp, sess.KeyID, false
		a.signers[signer{s.guardName, s.guard, s.kid}]++
		s.schedule()
		heap.Fix(&a.due, s.index)
		a.poke()
	}
	return http.StatusNoContent
}

// serveRenewal answers a renewal routed here by another edge, sealed to
// this edge's key; the answer is sealed too. Anything else is dropped.
func (a *authority) serveRenewal(m *nats.Msg) {
	plain, aead, err := a.key.open(m.Data)
	if err != nil {
		a.m.unsealed.Inc()
		a.e.log.Warn("renewal over NATS not sealed for this edge: dropped", "subject", m.Subject)
		return
	}
	var r renewal
	status := http.StatusBadRequest
	if err := json.Unmarshal(plain, &r); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		status = a.renew(ctx, r)
		cancel()
	}
	_ = m.Respond(sealAnswer(aead, status))
}

// route sends a sealed renewal to the edge holding its stream and waits
// for that edge's sealed answer: answers anyone else sends to the inbox
// (the edges' NATS user may answer any renewal) are counted and ignored.
func (a *authority) route(ctx context.Context, edgeID string, sealed []byte, aead cipher.AEAD) (int, error) {
	nc := a.e.cfg.NATS
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	// Room for a flood of forged answers, bounded; past it NATS drops
	// (and says so: ErrSlowConsumer), and the sender may time out.
	_ = sub.SetPendingLimits(4096, 4<<20)
	if err := nc.PublishRequest(a.e.subjects.Renew(edgeID), inbox, sealed); err != nil {
		return 0, err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		switch {
		case errors.Is(err, nats.ErrSlowConsumer):
			continue
		case err != nil:
			return 0, err
		case len(m.Data) == 0 && m.Header.Get("Status") == "503":
			return 0, nats.ErrNoResponders
		}
		status, err := openAnswer(aead, m.Data)
		if err != nil {
			a.m.unsealed.Inc()
			a.e.log.Warn("renewal answer not sealed by the holding edge: ignored", "subject", a.e.subjects.Renew(edgeID))
			continue
		}
		return status, nil
	}
}

// renewHTTP serves a renewal POST: verified here, then applied here or
// routed to the edge that holds the stream.
func (a *authority) renewHTTP(w http.ResponseWriter, r *http.Request, rt *route.Route) {
	e := a.e
	answer := func(status int, msg string) {
		a.m.renewals.WithLabelValues(strconv.Itoa(status)).Inc()
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		e.fail(w, status, msg)
	}
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), challengeContentType) {
		answer(http.StatusBadRequest, "a renewal has content-type "+challengeContentType)
		return
	}
	edgeID, id, ok := parseHandle(r.Header.Get(streamHeader))
	if !ok {
		answer(http.StatusBadRequest, "a renewal names its stream in "+streamHeader)
		return
	}
	auth := e.cfg.Guards[rt.Guard()]
	token, err := renewalToken(auth.Credentials)(r)
	if err == nil && token == "" {
		err = &guard.Refusal{Status: http.StatusUnauthorized, Code: "invalid_request", Reason: "no credentials"}
	}
	if err == nil {
		// Checked here too, so that a bad token is refused without a trip
		// over NATS; the holder checks it again against the stream.
		_, err = a.verify(r.Context(), r, auth, rt, renewalToken(auth.Credentials))
	}
	if err != nil {
		a.m.renewals.WithLabelValues(strconv.Itoa(statusOf(err))).Inc()
		a.refuseAuth(w, r, rt.Guard(), err)
		return
	}
	msg := renewal{Stream: id, Token: token}
	if edgeID == a.id {
		answer(a.renew(r.Context(), msg), "no such stream")
		return
	}
	data, _ := json.Marshal(msg)
	_, holderKey, named := strings.Cut(edgeID, ".")
	if !named {
		holderKey = edgeID
	}
	sealed, aead, err := sealRenewal(holderKey, data)
	if errors.Is(err, errSealed) {
		answer(http.StatusNotFound, "no such stream") // no edge has that name
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	status := 0
	if err == nil {
		status, err = a.route(ctx, edgeID, sealed, aead)
	}
	switch {
	case err == nil:
		status = holderStatus(status)
		answer(status, strings.ToLower(http.StatusText(status)))
		return
	case errors.Is(err, nats.ErrNoResponders):
		answer(http.StatusNotFound, "no such stream (its edge is gone)")
		return
	}
	e.log.Warn("renewal routing", "err", err)
	w.Header().Set("Retry-After", "1")
	answer(http.StatusServiceUnavailable, "the stream's edge did not answer")
}

// holderStatus keeps the statuses a holding edge answers; anything else is 502.
func holderStatus(status int) int {
	switch status {
	case http.StatusNoContent, http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
		return status
	}
	return http.StatusBadGateway
}

// renewalToken finds a renewal's token in a header or cookie first, else in
// the query: a page's stream URL may still carry the old token in its query
// while the renewal brings the fresh one in a header.
func renewalToken(c guard.Credentials) func(*http.Request) (string, error) {
	hc := guard.Credentials{Headers: c.Headers, Cookies: c.Cookies}
	q := guard.Credentials{Query: c.Query}
	return func(r *http.Request) (string, error) {
		if tok, err := hc.Token(r); tok != "" || err != nil {
			return tok, err
		}
		return q.Token(r)
	}
}

func statusOf(err error) int {
	var ref *guard.Refusal
	if errors.As(err, &ref) {
		return ref.Status
	}
	return http.StatusUnauthorized
}
