package edge

import "net/netip"

// KeyReadValuesHeld is how many values e holds for JSON reads being
// answered, and how many references they have in all (one per read
// writing one, and one per read in parts under way).
func KeyReadValuesHeld(e *Edge) (values, refs int) {
	s := &e.keys.values
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.held {
		values++
		refs += v.refs
	}
	return values, refs
}

// KeyReadBytesOf is the bytes the JSON reads in flight from the client
// address addr count against its bound.
func KeyReadBytesOf(e *Edge, addr string) int {
	s := &e.keys.addrs
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.byAddr[addrKey(netip.MustParseAddr(addr))]; st != nil {
		return st.bytes
	}
	return 0
}
