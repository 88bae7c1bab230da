package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// operatorNATS is deploy/nats/nats-server-operator.conf: a NATS server in
// operator mode with one account,
// SSEKAFKA, whose two scoped signing keys issue the users of each role:
// the edge key's template names the user in the subjects it may
// subscribe to (docs/security.md: a NATS identity per edge), so a new edge needs a
// user JWT and nothing in the server's config.
type operatorNATS struct {
	url            string
	account        string // public key
	edgeKey, cache nkeys.KeyPair
}

func startOperatorNATS(t *testing.T) *operatorNATS {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, _ := okp.PublicKey()
	sys, err := nkeys.CreateAccount()
	must(err)
	syspub, _ := sys.PublicKey()
	sc := jwt.NewAccountClaims(syspub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(okp)
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	oc.Name, oc.SystemAccount = "ssekafka", syspub
	opJWT, err := oc.Encode(okp)
	must(err)

	acc, err := nkeys.CreateAccount()
	must(err)
	apub, _ := acc.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Name = "SSEKAFKA"
	scoped := func(role string, pub, sub []string) nkeys.KeyPair {
		kp, err := nkeys.CreateAccount()
		must(err)
		s := jwt.NewUserScope()
		s.Key, _ = kp.PublicKey()
		s.Role = role
		s.Template.Pub.Allow.Add(pub...)
		s.Template.Sub.Allow.Add(sub...)
		s.Template.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		ac.SigningKeys.AddScopedSigner(s)
		return kp
	}
	on := &operatorNATS{account: apub}
	on.edgeKey = scoped("edge",
		[]string{"ssekafka.state.>", "ssekafka.meta.*", "ssekafka.renew.>"},
		[]string{"ssekafka.ev.>", "ssekafka.renew.{{name()}}.*", "_INBOX.{{name()}}.>"})
	on.cache = scoped("cache",
		[]string{"ssekafka.ev.>", "ssekafka.topics"},
		[]string{"ssekafka.state.>", "ssekafka.meta.*", "ssekafka.topics", "_INBOX.>"})
	accJWT, err := ac.Encode(okp)
	must(err)

	// deploy/nats/nats-server-operator.conf, beside a resolver.conf of
	// the shape nsc generate config --mem-resolver writes.
	dir := t.TempDir()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "nats", "nats-server-operator.conf"))
	must(err)
	conf := filepath.Join(dir, "nats-server.conf")
	must(os.WriteFile(conf, shipped, 0o600))
	must(os.WriteFile(filepath.Join(dir, "resolver.conf"), []byte(fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, syspub, apub, accJWT, syspub, sysJWT)), 0o600))
	opts, err := server.ProcessConfigFile(conf)
	must(err)
	opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, 0, true, true
	s, err := server.NewServer(opts)
	must(err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(s.Shutdown)
	on.url = s.ClientURL()
	return on
}

// creds issues a user named name with the signing key sk and writes its
// creds file.
func (on *operatorNATS) creds(t *testing.T, sk nkeys.KeyPair, name string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name, uc.IssuerAccount = name, on.account
	uc.SetScoped(true) // no permissions of its own: the signing key's template gives them
	ujwt, err := uc.Encode(sk)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	b, err := jwt.FormatUserConfig(ujwt, seed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each edge has its own NATS user, issued with the edges' scoped signing
// key: it may subscribe only to its own renewal subject and inboxes,
// publish renewals to any edge, and the product runs on it (a guarded
// stream renewed through the other edge).
func TestEdgesWithTheirOwnNATSIdentity(t *testing.T) {
	on := startOperatorNATS(t)
	e1, e2 := on.creds(t, on.edgeKey, "edge-1"), on.creds(t, on.edgeKey, "edge-2")
	violations := make(chan error, 10)
	connect := func(creds string, opts ...nats.Option) *nats.Conn {
		nc, err := nats.Connect(on.url, append(opts, nats.UserCredentials(creds), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			violations <- err
		}))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	edge1 := connect(e1, nats.CustomInboxPrefix("_INBOX.edge-1"))
	for _, subject := range []string{"ssekafka.renew.edge-2.k", "ssekafka.renew.*", "ssekafka.renew.>", "_INBOX.edge-2.x", "_INBOX.>"} {
		if _, err := edge1.SubscribeSync(subject); err == nil {
			_ = edge1.Flush()
			waitViolation(t, violations, "subscription to "+subject)
		}
	}
	edge2 := connect(e2)
	own, err := edge2.SubscribeSync("ssekafka.renew.edge-2.k")
	if err != nil {
		t.Fatal(err)
	}
	if err := edge2.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := edge1.Publish("ssekafka.renew.edge-2.k", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	if m, err := own.NextMsg(5 * time.Second); err != nil || string(m.Data) != "sealed" {
		t.Fatalf("a renewal between edges: %v, %v", m, err)
	}
	select {
	case err := <-violations:
		t.Fatalf("unexpected: %v", err)
	default:
	}

	nats := func(creds string, own bool) string {
		return fmt.Sprintf("nats: {url: %s, credentials: {credsFile: %s, ownIdentity: %v}}\n", on.url, creds, own)
	}
	guardedRenewalAcrossEdges(t, on.url, nats(on.creds(t, on.cache, "cache-1"), false), [2]string{nats(e1, true), nats(e2, true)})
}
