package hub

import (
	"bytes"
	"testing"
)

// A renewal sealed for one edge opens only there; its answer opens only
// with the sender's key, and a request cannot pass for an answer.
func TestSealedRenewalOpensOnlyAtItsHolder(t *testing.T) {
	holder, other := newRenewKey(), newRenewKey()
	msg, aead, err := sealRenewal(holder.id, []byte(`{"stream":1,"token":"secret"}`))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(msg, []byte("secret")) {
		t.Fatal("the token is readable in the sealed message")
	}
	if _, _, err := other.open(msg); err == nil {
		t.Fatal("another edge opened the renewal")
	}
	tampered := bytes.Clone(msg)
	tampered[len(tampered)-1] ^= 1
	if _, _, err := holder.open(tampered); err == nil {
		t.Fatal("a tampered renewal opened")
	}
	plain, hAEAD, err := holder.open(msg)
	if err != nil || string(plain) != `{"stream":1,"token":"secret"}` {
		t.Fatalf("holder: %q, %v", plain, err)
	}
	if status, err := openAnswer(aead, sealAnswer(hAEAD, 204)); err != nil || status != 204 {
		t.Fatalf("answer: %d, %v", status, err)
	}
	if _, err := openAnswer(aead, []byte("204")); err == nil {
		t.Fatal("a plain answer was believed")
	}
	if _, err := openAnswer(aead, msg[32:]); err == nil {
		t.Fatal("the request passed for an answer")
	}
	for _, id := range []string{"0123456789abcdef", "zz", ""} {
		if _, _, err := sealRenewal(id, nil); err != errSealed {
			t.Fatalf("sealed for %q: %v, want errSealed", id, err)
		}
	}
}

// A handle names the edge (its key, or its NATS name and key) and the stream.
func TestParseHandle(t *testing.T) {
	for _, tc := range []struct {
		h, edge string
		id      uint64
		ok      bool
	}{
		{"abc-17", "abc", 17, true},
		{"edge-1.abc-17", "edge-1.abc", 17, true},
		{"a.b.c-1", "", 0, false},
		{".abc-1", "", 0, false},
		{"abc.-1", "", 0, false},
		{"a*b-1", "", 0, false},
		{"a>-1", "", 0, false},
		{"-1", "", 0, false},
		{"abc", "", 0, false},
		{"abc-x", "abc", 0, false},
	} {
		edge, id, ok := parseHandle(tc.h)
		if ok != tc.ok || ok && (edge != tc.edge || id != tc.id) {
			t.Errorf("parseHandle(%q) = %q, %d, %v; want %q, %d, %v", tc.h, edge, id, ok, tc.edge, tc.id, tc.ok)
		}
	}
}
