package edge

// WriterJobs is how many shares of a batch e's writer goroutines have
// flushed (the feed's own share aside).
func WriterJobs(e *Edge) uint64 {
	e.writers.start.Do(e.writers.startShards) // or waits for the feed that started them
	var n uint64
	for _, s := range e.writers.shards {
		if s != nil {
			n += s.flushed.Load()
		}
	}
	return n
}

// WriterShares is, per writer, how many of topic's clients it writes (nil
// with one writer or no feed).
func WriterShares(e *Edge, topic string) []int {
	e.mu.Lock()
	f := e.feeds[topic]
	e.mu.Unlock()
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.shards.count...)
}
