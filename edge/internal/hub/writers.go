package hub

import (
	"sync"
	"sync/atomic"
)

// writers spreads the flushes of a feed's live clients over the edge's
// cores (Config.Writers): each client gets a shard when it joins its feed,
// fixed for its life. Shard 0 is the feed's own goroutine; shards 1..n-1
// are goroutines of the edge, shared by all its feeds, started on first
// use and ended with the edge. After a batch of changes the feed hands
// each shard its dirty clients (in jobs of up to jobClients), flushes its
// own share, takes back and flushes the jobs no writer has started, and
// waits for the rest before it applies the next batch: the flushes of a
// batch never run beside the pushes of the next, as with one writer, so a
// flush still takes what one batch queued (one writev each), and the
// batches grow by themselves when the writes take longer.
//
// A flush is the sink's (sink.flush): it never blocks on the client, so a
// shard never holds its feed up for longer than its writes. A client is
// listed at most once per batch (the feed lists it once: the dirty flag of
// client.push), in one job, flushed by the shard or taken back by the
// feed; per-client order is the order of its queue, whichever goroutine
// writes it.
type writers struct {
	n      int           // Config.Writers; 0 or 1: every flush on the feed's goroutine
	done   chan struct{} // the edge's: the shard goroutines end with it
	start  sync.Once
	shards []*shard // 1..n-1 (0 is the feed's goroutine)
}

// minShardBatch is the fewest dirty clients a batch needs to be spread:
// fewer are flushed on the feed's goroutine, as waking a shard costs about
// as much as a few writevs.
const minShardBatch = 8

// shard is one writer goroutine's list of work.
type shard struct {
	mu      sync.Mutex // a leaf: held only to add, take or take back jobs
	jobs    []writeJob // listed; the writer takes them from jobs[head:], in order
	head    int
	closed  bool          // the goroutine is ending: the feed flushes its share itself
	wake    chan struct{} // capacity 1: jobs were added
	flushed atomic.Uint64 // jobs the goroutine did (tests)
}

// writeJob is up to jobClients of one feed's dirty clients of one batch on
// one shard; done is told when they are flushed.
type writeJob struct {
	clients []*client
	done    *sync.WaitGroup
}

// feedShards is a feed's side of its writers.
type feedShards struct {
	count   []int       // guarded by feed.mu: the feed's clients per shard
	buckets [][]*client // the feed goroutine's alone: a batch's dirty clients per shard
	wg      sync.WaitGroup
}

func (w *writers) init(n int, done chan struct{}) {
	w.n, w.done = n, done
}

// assign picks c's shard as it joins f: the one with the fewest of f's
// clients. The caller holds f.mu.
func (w *writers) assign(fs *feedShards, c *client) {
	if w.n <= 1 {
		return
	}
	if fs.count == nil {
		fs.count = make([]int, w.n)
	}
	least := 0
	for i, n := range fs.count {
		if n < fs.count[least] {
			least = i
		}
	}
	fs.count[least]++
	c.shard = uint16(least)
}

// release forgets c as it leaves f. The caller holds f.mu.
func (w *writers) release(fs *feedShards, c *client) {
	if fs.count != nil {
		fs.count[c.shard]--
	}
}

// flush flushes the sink of each of a feed's dirty clients, on their
// shards, and returns when all are flushed. Only the feed's goroutine
// calls it, with no lock held.
func (w *writers) flush(fs *feedShards, dirty []*client) {
	if w.n <= 1 || len(dirty) < minShardBatch {
		flushAll(dirty)
		return
	}
	w.handOut(fs, dirty)
	fs.wait()
}

// handOut hands each shard its share of dirty, in jobs of at most
// jobClients clients, flushes the feed's own share, then takes back and
// flushes the jobs that no writer has started yet: a writer the scheduler
// has not run (other work on its core) holds no batch up.
func (w *writers) handOut(fs *feedShards, dirty []*client) {
	w.start.Do(w.startShards)
	if fs.buckets == nil {
		fs.buckets = make([][]*client, w.n)
	}
	for _, c := range dirty {
		fs.buckets[c.shard] = append(fs.buckets[c.shard], c)
	}
	for i := 1; i < w.n; i++ {
		b := fs.buckets[i]
		if len(b) == 0 {
			continue
		}
		jobs := (len(b) + jobClients - 1) / jobClients
		fs.wg.Add(jobs)
		if !w.shards[i].hand(b, &fs.wg) {
			fs.wg.Add(-jobs)
			flushAll(b)
		}
	}
	flushAll(fs.buckets[0])
	for took := true; took; {
		took = false
		for _, s := range w.shards[1:] {
			if j, ok := s.takeBack(&fs.wg); ok {
				flushAll(j.clients)
				j.done.Done()
				took = true
			}
		}
	}
}

// jobClients is the most clients in one job: what a writer takes at once,
// and what the feed takes back.
const jobClients = 64

// wait returns once the shards have flushed the last share handed out.
func (fs *feedShards) wait() {
	fs.wg.Wait()
	for i, b := range fs.buckets {
		clear(b)
		fs.buckets[i] = b[:0]
	}
}

func flushAll(cs []*client) {
	for _, c := range cs {
		c.sink.flush()
	}
}

func (w *writers) startShards() {
	w.shards = make([]*shard, w.n)
	for i := 1; i < w.n; i++ {
		s := &shard{wake: make(chan struct{}, 1)}
		w.shards[i] = s
		go s.run(w.done)
	}
}

// hand lists cs on the shard, in jobs told to done, and wakes its
// goroutine; false if the goroutine has ended (the edge is closing).
func (s *shard) hand(cs []*client, done *sync.WaitGroup) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	if s.head > 0 && s.head >= len(s.jobs)/2 { // what was taken goes
		n := copy(s.jobs, s.jobs[s.head:])
		clear(s.jobs[n:])
		s.jobs, s.head = s.jobs[:n], 0
	}
	for len(cs) > 0 {
		k := min(len(cs), jobClients)
		s.jobs = append(s.jobs, writeJob{clients: cs[:k:k], done: done})
		cs = cs[k:]
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// next takes the first job listed; with closing, the shard takes no more
// after what is listed.
func (s *shard) next(closing bool) (writeJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = s.closed || closing
	if s.head == len(s.jobs) {
		s.jobs, s.head = s.jobs[:0], 0
		return writeJob{}, false
	}
	j := s.jobs[s.head]
	s.jobs[s.head] = writeJob{}
	s.head++
	return j, true
}

// takeBack removes the last job listed for done that the shard has not
// taken, if any.
func (s *shard) takeBack(done *sync.WaitGroup) (writeJob, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.jobs) - 1; i >= s.head; i-- {
		if s.jobs[i].done == done {
			j := s.jobs[i]
			copy(s.jobs[i:], s.jobs[i+1:])
			s.jobs[len(s.jobs)-1] = writeJob{}
			s.jobs = s.jobs[:len(s.jobs)-1]
			return j, true
		}
	}
	return writeJob{}, false
}

// run flushes the jobs handed to the shard, in order, until done is
// closed, then what is still listed.
func (s *shard) run(done <-chan struct{}) {
	for {
		closing := false
		select {
		case <-s.wake:
		case <-done:
			closing = true
		}
		for {
			j, ok := s.next(closing)
			if !ok {
				break
			}
			flushAll(j.clients)
			j.done.Done()
			s.flushed.Add(1)
		}
		if closing {
			return
		}
	}
}
