package guard

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issue 10: anyone may send tokens naming keys nobody has, and each spends the
// unknown-kid refresh the limiter allows; but every such refresh reads the
// whole set, so a freshly rotated key is still found within about one
// UnknownKeyRefresh interval while junk kids are sent, not at the periodic
// refresh.
func TestJunkKidsDoNotHideARotatedKey(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, publicJWK(t, &k.rsa.PublicKey, "rsa1"))
	const every = 2500 * time.Millisecond // more than Verify's 2 s wait for the limiter, as the 30 s default is
	g := newGuard(t, Options{Name: "g", KeysURL: srv.URL, UnknownKeyRefresh: every, Refresh: time.Hour})
	junk := sign(t, jwt.SigningMethodRS256, k.rsa, "junk", goodClaims())
	ctx, cancel := context.WithTimeout(context.Background(), 2*every+time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the attacker: a junk kid every 10 ms
		defer wg.Done()
		for ctx.Err() == nil {
			_, _ = g.Verify(ctx, junk, nil)
			time.Sleep(10 * time.Millisecond) // pacing the attacker, not waiting for a state
		}
	}()
	time.Sleep(100 * time.Millisecond) // pacing: the attacker has spent the limiter
	srv.serve([]json.RawMessage{publicJWK(t, &k.rsa.PublicKey, "rsa1"), publicJWK(t, &k.other.PublicKey, "rsa2")}, false)
	legit := sign(t, jwt.SigningMethodRS256, k.other, "rsa2", goodClaims())
	var err error
	for ctx.Err() == nil {
		if _, err = g.Verify(context.Background(), legit, nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // pacing the user's retries
	}
	cancel()
	wg.Wait()
	if err != nil {
		t.Fatalf("a token of the rotated-in key, for %v while junk kids were sent: %v", 2*every+time.Second, err)
	}
}
