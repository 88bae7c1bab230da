//go:build !linux

package accept

// OpenFileLimit is unknown here: MaxConnections defaults to 10000.
func OpenFileLimit() (uint64, bool) { return 0, false }
