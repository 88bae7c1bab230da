package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ssekafka/ssekafka/edge"
	"github.com/ssekafka/ssekafka/guard"
)

// What continuous authorization promises (issue 10): a renewal proves the
// stream's roles, a forged one is dropped, and a token without a filter's
// attribute or past its exp is refused.

// adminAndLobbyRoutes are a stream that needs the admin role and a route
// of the same guard that needs none.
func adminAndLobbyRoutes() []edge.RouteConfig {
	return []edge.RouteConfig{
		{Paths: []string{"/admin"}, Topic: "tasks", Guarded: map[string][]string{"jwt": {"admin"}}},
		{Paths: []string{"/lobby"}, Topic: "tasks", Guarded: map[string][]string{"jwt": {}}},
	}
}

// A renewal must prove the roles of the stream it renews, not those of
// whatever route of the same guard it is POSTed to: a user whose admin
// role was taken away must not keep an admin stream by renewing it
// through /lobby.
func TestRenewalThroughAnotherRouteNeedsTheStreamsRoles(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: adminAndLobbyRoutes(), edgeCfg: guardConfig(t, j, 2*time.Second, nil)})
	exp := time.Unix(time.Now().Add(4*time.Second).Unix(), 0)
	c := s.connect("/admin", bearer(token(t, "k1", "alice", exp, "admin")))
	handle := challengeHandle(t, c)
	h := bearer(token(t, "k1", "alice", time.Now().Add(time.Hour), "read")) // no admin any more
	h.Set("Content-Type", "application/x-challenge-response")
	h.Set("X-Ssekafka-Stream", handle)
	if status, _, body := do(t, http.MethodPost, s.url+"/lobby", h); status != http.StatusForbidden {
		t.Errorf("renewal without the admin role, POSTed to /lobby: %d %q; want 403", status, body)
	}
	if ev, err := c.next(time.Until(exp) + 2*time.Second); err != errStreamEnded {
		t.Fatalf("admin stream past its token's expiry: %q, %v; want it ended", ev.Raw, err)
	}
}

// The holding edge takes a renewal message from NATS on trust: any client
// that may publish the renew subject extends any stream whose guard and
// identity it names, without a token. A renewal should carry the token so
// the holding edge verifies it again.
func TestForgedNATSRenewalDoesNotExtendAStream(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: guardConfig(t, j, 2*time.Second, nil)})
	exp := time.Unix(time.Now().Add(4*time.Second).Unix(), 0)
	c := s.connect("/tasks", bearer(token(t, "k1", "alice", exp, "read")))
	handle := challengeHandle(t, c)
	edgeID, n, _ := strings.Cut(handle, "-")
	id, _ := strconv.ParseUint(n, 10, 64)
	forged, _ := json.Marshal(map[string]any{"stream": id, "guard": "jwt", "identity": "alice", "kid": "k1",
		"expires": time.Now().Add(100 * 365 * 24 * time.Hour).UnixMilli()})
	// Not sealed to the edge's key: dropped unanswered, and counted.
	nc := s.connectNATS()
	if err := nc.Publish("ssekafka.renew."+edgeID, forged); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the forged renewal counted", func() bool {
		return s.edgeCounter("ssekafka_edge_renewal_messages_unsealed_total") == 1
	})
	if ev, err := c.next(time.Until(exp) + 2*time.Second); err != errStreamEnded {
		t.Fatalf("stream past its token's expiry after a forged NATS renewal: %q, %v; want it ended", ev.Raw, err)
	}
}

// A token without the claim an attribute comes from must not get a filter
// on the empty value: /tenant filters tenant=${attributes.tenant}, and a
// token with no tenant claim reads the records whose tenant header is
// empty (another "tenant"). Want a refusal (403) before any cache request.
func TestTokenWithoutFilterAttributeIsRefused(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: guardConfig(t, j, 0, nil)})
	empty := rec(0, "unowned-job", "for the empty tenant")
	empty.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte("")}}
	s.produce("tasks", empty)
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": testIssuer, "aud": "sse", "sub": "mallory",
		"exp": time.Now().Add(time.Hour).Unix(), "scope": "read"}) // no tenant claim
	tok.Header["kid"] = "k1"
	signed, err := tok.SignedString(rsaKeys()[0])
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := do(t, http.MethodGet, s.url+"/tenant", bearer(signed))
	if status == http.StatusOK {
		c := s.connect("/tenant", bearer(signed))
		var got []string
		for _, ev := range c.untilReady() {
			if ev.HasData && ev.Event != "ready" {
				got = append(got, ev.Data)
			}
		}
		c.close()
		t.Fatalf("a token without the tenant claim: 200, state %q; want 403", got)
	}
	t.Logf("%d %q", status, body)
}

// With a clock leeway, a token past its exp (but within the leeway)
// verifies, so the stream starts, sends its state part, and is closed at
// once by the expiry loop: an EventSource then reconnects every retry
// interval, getting the state part again each time, for the whole leeway.
// Want: a token already past its exp refused (401) at setup, leeway or not,
// as it would be ended before it could be used.
func TestTokenPastExpWithinLeewayIsRefused(t *testing.T) {
	j := newJWKS(t)
	s := newStack(t, stackOptions{routes: guardedRoutes(), edgeCfg: func(c *edge.Config) {
		g, err := guard.New(context.Background(), guard.Options{Name: "jwt", Issuer: testIssuer, Audience: "sse",
			KeysURL: j.url, Leeway: time.Minute, Logger: c.Logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		c.Guards = map[string]edge.Authorization{"jwt": {Guard: g, Credentials: guard.Credentials{
			Headers: map[string]string{"authorization": "Bearer {credentials}"}}}}
	}})
	s.produce("tasks", rec(0, "k", "state"))
	past := time.Now().Add(-5 * time.Second)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/tasks", nil)
	req.Header = bearer(token(t, "k1", "alice", past, "read"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("a token 5s past its exp: 200, body %q; want 401", body)
	}
	t.Logf("%d %q", resp.StatusCode, body)
}
