//go:build !linux

package edge

// openFileLimit is unknown here: MaxConnections defaults to 10000.
func openFileLimit() (uint64, bool) { return 0, false }
