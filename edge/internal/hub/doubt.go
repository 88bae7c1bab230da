package hub

// doubts are the far live messages of one partition that the cache tier
// did not confirm when they came (plausible): forged, stale, or real but
// answered by a holder that lagged, or not answered in time. They are
// dropped at once (what was real is filled from the cache tier) and judged
// by the next probe: only those the tier still does not hold are counted in
// bad_changes_total, the metric operators alert on, and logged at WARN.
type doubts struct {
	n    int   // messages in doubt
	next int64 // the highest position they claim the cache tier reached
}

// doubt records a dropped live message of partition p claiming the cache
// tier had reached next. It runs on the feed goroutine.
func (f *feed) doubt(p int32, next int64) {
	d := &f.parts[p].doubts
	d.n++
	d.next = max(d.next, next)
	f.e.log.Debug("live message far past the cache tier's head, not confirmed by it: dropped, judged at the next probe",
		"topic", f.topic, "partition", p, "next", next)
}

// judgeDoubts judges partition p's doubts against the head a probe got:
// the tier holds what they claimed (they came from a cache node, ahead of
// the holder that answered), or they are counted as bad. It runs on the
// feed goroutine.
func (f *feed) judgeDoubts(p int32, head int64) {
	d := &f.parts[p].doubts
	if d.n == 0 {
		return
	}
	if head < d.next {
		f.e.metrics.BadChanges.Add(float64(d.n))
		f.e.log.Warn("live messages far past the cache tier's head, still not confirmed by it: dropped",
			"topic", f.topic, "partition", p, "messages", d.n, "highest", d.next, "head", head)
	}
	*d = doubts{}
}
