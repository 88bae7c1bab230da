package reason

import "testing"

// The labels are what operators' alerts match on: each reason has its own,
// and the ones shipped before the type existed keep their spelling.
func TestLabelsAreDistinctAndKeepTheirShippedSpelling(t *testing.T) {
	seen := map[string]Reason{}
	for r := Reason(0); r < count; r++ {
		if r.Label() == "" || r.String() == "" {
			t.Errorf("reason %d has no label or text", r)
		}
		if prev, ok := seen[r.Label()]; ok {
			t.Errorf("reasons %d and %d share the label %q", prev, r, r.Label())
		}
		seen[r.Label()] = r
	}
	shipped := map[Reason]string{
		CacheUnavailable: "cache_unavailable", FeedRestarting: "feed_restarting", QueueFull: "queue_full",
		Draining: "draining", LookupRate: "lookup_rate", MaxConnections: "max_connections",
		MaxConnectionsPer: "max_connections_per_ip", SetupPerAddress: "setup_queue_per_ip",
		HeaderMemory: "header_memory", ResetEpoch: "epoch", ResetHorizon: "horizon",
		ResetPartitions: "partitions", ResetOffsets: "offsets", ResetLost: "lost",
	}
	for r, want := range shipped {
		if r.Label() != want {
			t.Errorf("%v: label %q, shipped as %q", r, r.Label(), want)
		}
	}
	if got := Reason(200).Label(); got != "other" {
		t.Errorf("an unknown reason's label is %q, want other", got)
	}
}
