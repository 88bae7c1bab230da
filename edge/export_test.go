package edge

// HoldFeeds makes every feed of e call hold before it applies a live change
// or a probe tick: a test holds the live feed behind the state pages by
// blocking in hold. Set it before the first stream.
func HoldFeeds(e *Edge, hold func()) { e.holdFeed = hold }
