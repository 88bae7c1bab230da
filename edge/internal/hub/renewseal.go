// Sealed renewals. Every edge's NATS user may subscribe to every renewal
// subject and answer on it (one shared user; NATS permissions cannot tell
// edges apart), so a renewal routed over NATS is sealed to the holding
// edge: its name in stream handles is its X25519 public key, the sender
// seals the renewal (token included) with a key agreed from an ephemeral
// key of its own and the holder's (HKDF-SHA256, AES-256-GCM), and the
// holder seals its answer with the same key. Another edge, or anyone on
// NATS, sees only ciphertext, cannot forge an answer the sender believes,
// and gains nothing by replaying a request (the holder verifies its token
// again; a renewal only ever extends to that token's expiry).

package hub

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
)

const sealInfo = "ssekafka renewal v1"

var errSealed = errors.New("renewal: not sealed for this edge")

// renewKey is this edge's key pair; its public key, in hex, is its id.
type renewKey struct {
	priv *ecdh.PrivateKey
	id   string
}

func newRenewKey() *renewKey {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic("edge: X25519 key: " + err.Error()) // crypto/rand does not fail
	}
	return &renewKey{priv: priv, id: hex.EncodeToString(priv.PublicKey().Bytes())}
}

// sealedAEAD derives the key of one renewal from an X25519 secret and both
// public keys.
func sealedAEAD(shared, ephPub, holderPub []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, shared, append(append([]byte{}, ephPub...), holderPub...), sealInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Additional data: a request cannot pass for an answer.
var (
	adRequest = []byte("request")
	adAnswer  = []byte("answer")
)

// sealRenewal seals plain for the edge named holderID; it returns the
// message and the key its answer comes sealed with. An id that is not a
// public key names no edge: errSealed.
func sealRenewal(holderID string, plain []byte) ([]byte, cipher.AEAD, error) {
	pubBytes, err := hex.DecodeString(holderID)
	if err != nil || len(pubBytes) != 32 {
		return nil, nil, errSealed
	}
	pub, err := ecdh.X25519().NewPublicKey(pubBytes)
	if err != nil {
		return nil, nil, errSealed
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, nil, errSealed // a low-order point
	}
	ephPub := eph.PublicKey().Bytes()
	aead, err := sealedAEAD(shared, ephPub, pubBytes)
	if err != nil {
		return nil, nil, err
	}
	return seal(aead, ephPub, plain, adRequest), aead, nil
}

// open opens a renewal sealed for k; it returns the plain text and the key
// to seal the answer with.
func (k *renewKey) open(msg []byte) ([]byte, cipher.AEAD, error) {
	if len(msg) < 32 {
		return nil, nil, errSealed
	}
	ephPub, rest := msg[:32], msg[32:]
	eph, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, nil, errSealed
	}
	shared, err := k.priv.ECDH(eph)
	if err != nil {
		return nil, nil, errSealed
	}
	aead, err := sealedAEAD(shared, ephPub, k.priv.PublicKey().Bytes())
	if err != nil {
		return nil, nil, err
	}
	plain, err := unseal(aead, rest, adRequest)
	if err != nil {
		return nil, nil, err
	}
	return plain, aead, nil
}

// sealAnswer seals a renewal's HTTP status.
func sealAnswer(aead cipher.AEAD, status int) []byte {
	return seal(aead, nil, []byte(strconv.Itoa(status)), adAnswer)
}

// openAnswer opens an answer sealed with aead: an error for anything its
// holder did not seal.
func openAnswer(aead cipher.AEAD, msg []byte) (int, error) {
	plain, err := unseal(aead, msg, adAnswer)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(plain))
}

// seal appends a fresh nonce and the sealed plain text to prefix.
func seal(aead cipher.AEAD, prefix, plain, ad []byte) []byte {
	out := make([]byte, len(prefix), len(prefix)+aead.NonceSize()+len(plain)+aead.Overhead())
	copy(out, prefix)
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plain, ad)
}

func unseal(aead cipher.AEAD, msg, ad []byte) ([]byte, error) {
	if len(msg) < aead.NonceSize() {
		return nil, errSealed
	}
	plain, err := aead.Open(nil, msg[:aead.NonceSize()], msg[aead.NonceSize():], ad)
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}
