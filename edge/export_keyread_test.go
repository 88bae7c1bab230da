package edge

import "net/netip"

// KeyReadValuesHeld is how many values e holds for JSON reads being
// answered, and how many references they have in all (one per read
// writing one, and one per read in parts under way).
func KeyReadValuesHeld(e *Edge) (values, refs int) { return e.hub.KeyReads().ValuesHeld() }

// KeyReadBytesOf is the bytes the JSON reads in flight from the client
// address addr count against its bound.
func KeyReadBytesOf(e *Edge, addr string) int {
	return e.hub.KeyReads().BytesOf(addrKey(netip.MustParseAddr(addr)))
}
