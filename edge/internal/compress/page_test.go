package compress

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// statePage is a realistic state page: n SSE frames, each one JSON value
// of about 200 B (a product's price and stock), ids and words varying as
// a catalogue's do, not random bytes.
func statePage(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 24))
	words := []string{"alpine", "basalt", "cedar", "delta", "ember", "fjord", "granite", "harbor",
		"iris", "juniper", "kestrel", "lumen", "meadow", "nimbus", "orchid", "prairie", "quartz",
		"ridge", "sierra", "tundra", "umber", "vesper", "willow", "yarrow", "zephyr"}
	kinds := []string{"jacket", "boot", "tent", "lamp", "pack", "stove", "bottle", "glove"}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "id:%d-%d\ndata:{\"id\":\"sku-%06d\",\"name\":\"%s %s %s\",\"price\":%d.%02d,"+
			"\"currency\":\"EUR\",\"stock\":%d,\"warehouse\":\"%s-%d\",\"rating\":%d.%d,"+
			"\"updatedAt\":\"2026-12-%02dT%02d:%02d:%02d.%03dZ\"}\n\n",
			r.IntN(3), 1000000+i*7+r.IntN(7), 100000+i, words[r.IntN(len(words))],
			words[r.IntN(len(words))], kinds[r.IntN(len(kinds))], r.IntN(900)+10, r.IntN(100),
			r.IntN(5000), words[r.IntN(len(words))], r.IntN(40), r.IntN(5), r.IntN(10),
			r.IntN(28)+1, r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000))
	}
	return []byte(b.String())
}

// liveFrames are n single frames of the same shape, as live changes go.
func liveFrames(n int, seed uint64) [][]byte {
	page := statePage(n, seed)
	frames := make([][]byte, 0, n)
	for len(page) > 0 {
		i := strings.Index(string(page), "\n\n") + 2
		frames = append(frames, page[:i])
		page = page[i:]
	}
	return frames
}
