package edge

import (
	"net/netip"

	"github.com/ssekafka/ssekafka/edge/internal/accept"
)

// openFileLimit is the process's open-file limit, as the default
// connection cap reads it.
func openFileLimit() (uint64, bool) { return accept.OpenFileLimit() }

// addrKey is an address's key in the per-address limits.
func addrKey(ip netip.Addr) netip.Prefix { return accept.AddrKey(ip) }
