package edge

import (
	"sync"
	"sync/atomic"
)

// writers spreads the flushes of a feed's live clients over the edge's
// cores (Config.Writers): each client gets a shard when it joins its feed,
// fixed for its life. Shard 0 is the feed's own goroutine; shards 1..n-1
// are goroutines of the edge, shared by all its feeds, started on first
// use and ended with the edge. After a batch of changes the feed hands
// each shard the list of its dirty clients, flushes its own share, and
// waits for the shards before it applies the next batch: the flushes of a
// batch never run beside the pushes of the next, as with one writer, so a
// flush still takes what one batch queued (one writev each), and the
// batches grow by themselves when the writes take longer.
//
// A flush is the sink's (sink.flush): it never blocks on the client, so a
// shard never holds its feed up for longer than its writes. A client is in
// a shard's list at most once per batch (the feed lists it once: the
// dirty flag of client.push); per-client order is the order of its queue,
// whichever goroutine writes it.
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
	mu      sync.Mutex // a leaf: held only to add or take jobs
	jobs    []writeJob
	closed  bool          // the goroutine has ended: the feed flushes its share itself
	wake    chan struct{} // capacity 1: jobs were added
	spare   []writeJob    // the goroutine's alone: its last list, reused
	flushed atomic.Uint64 // jobs done (tests)
}

// writeJob is one feed's dirty clients of one batch on one shard; done is
// told when they are flushed.
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
	c.shard = least
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

// handOut hands each shard its share of dirty, and flushes the feed's own.
func (w *writers) handOut(fs *feedShards, dirty []*client) {
	w.start.Do(w.startShards)
	if fs.buckets == nil {
		fs.buckets = make([][]*client, w.n)
	}
	for _, c := range dirty {
		fs.buckets[c.shard] = append(fs.buckets[c.shard], c)
	}
	for i := 1; i < w.n; i++ {
		if len(fs.buckets[i]) == 0 {
			continue
		}
		fs.wg.Add(1)
		if !w.shards[i].hand(writeJob{clients: fs.buckets[i], done: &fs.wg}) {
			fs.wg.Done()
			flushAll(fs.buckets[i])
		}
	}
	flushAll(fs.buckets[0])
}

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

// hand adds j to the shard's list and wakes its goroutine; false if the
// goroutine has ended (the edge is closing).
func (s *shard) hand(j writeJob) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.jobs = append(s.jobs, j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// run flushes the clients handed to the shard until done is closed, then
// what is still listed.
func (s *shard) run(done <-chan struct{}) {
	for {
		closing := false
		select {
		case <-s.wake:
		case <-done:
			closing = true
		}
		s.mu.Lock()
		jobs := s.jobs
		s.jobs = s.spare[:0]
		s.closed = closing
		s.mu.Unlock()
		for i := range jobs {
			flushAll(jobs[i].clients)
			jobs[i].done.Done()
		}
		s.flushed.Add(uint64(len(jobs)))
		clear(jobs)
		s.spare = jobs[:0]
		if closing {
			return
		}
	}
}
