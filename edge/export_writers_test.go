package edge

// WriterJobs is how many shares of a batch e's writer goroutines have
// flushed (the feed's own share aside).
func WriterJobs(e *Edge) uint64 { return e.hub.WriterJobs() }

// WriterShares is, per writer, how many of topic's clients it writes (nil
// with one writer or no feed).
func WriterShares(e *Edge, topic string) []int { return e.hub.WriterShares(topic) }
