package main

import (
	"bufio"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// TestComposeNATSCluster runs deploy/nats/nats-server.conf three times, as
// nats-1..3 of docker-compose.yml do (on loopback ports): the servers form
// one cluster over authenticated routes, so a change a cache publishes on
// nats-1 reaches an edge connected to nats-3; a route that does not know the
// route password is refused.
func TestComposeNATSCluster(t *testing.T) {
	const routePW = "route-secret-9"
	t.Setenv("SSEKAFKA_NATS_CACHE_PASSWORD", "cache-secret-7")
	t.Setenv("SSEKAFKA_NATS_EDGE_PASSWORD", "edge-secret-8")
	t.Setenv("SSEKAFKA_NATS_ROUTE_PASSWORD", routePW)
	clusterAddr := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	for i, a := range clusterAddr {
		t.Setenv(fmt.Sprintf("SSEKAFKA_NATS_ROUTE_%d", i+1), "nats://route:"+routePW+"@"+a)
	}
	var servers []*server.Server
	for i, a := range clusterAddr {
		t.Setenv("SSEKAFKA_NATS_NAME", fmt.Sprintf("nats-%d", i+1))
		opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "deploy", "nats", "nats-server.conf"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(a)
		opts.Host, opts.Port, opts.HTTPPort, opts.NoSigs, opts.NoLog = "127.0.0.1", server.RANDOM_PORT, 0, true, true
		opts.Cluster.Host = "127.0.0.1"
		fmt.Sscan(port, &opts.Cluster.Port)
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-%d not ready", i+1)
		}
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}

	edgeNC, err := nats.Connect(servers[2].ClientURL(), nats.UserInfo("edge", "edge-secret-8"))
	if err != nil {
		t.Fatal(err)
	}
	defer edgeNC.Close()
	cacheNC, err := nats.Connect(servers[0].ClientURL(), nats.UserInfo("cache", "cache-secret-7"))
	if err != nil {
		t.Fatal(err)
	}
	defer cacheNC.Close()
	sub, err := edgeNC.SubscribeSync("ssekafka.ev.tasks.0")
	if err != nil {
		t.Fatal(err)
	}
	if err := edgeNC.Flush(); err != nil {
		t.Fatal(err)
	}
	// The routes (and the subscription's interest) take a moment: publish
	// until one arrives.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := cacheNC.Publish("ssekafka.ev.tasks.0", []byte("change")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
			if string(m.Data) != "change" {
				t.Fatalf("got %q", m.Data)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a change published on nats-1 never reached an edge on nats-3: no cluster")
		}
	}

	// A route connecting with a wrong password, or none, is refused.
	for _, connect := range []string{
		`CONNECT {"user":"route","pass":"wrong","cluster":"ssekafka"}`,
		`CONNECT {"cluster":"ssekafka"}`,
	} {
		c, err := net.DialTimeout("tcp", clusterAddr[0], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "INFO ") {
			t.Fatalf("route port: %q, %v", line, err)
		}
		fmt.Fprintf(c, "%s\r\nPING\r\n", connect)
		line, err := r.ReadString('\n')
		if err != nil || !strings.Contains(line, "Authorization Violation") {
			t.Errorf("%s: got %q, %v; want an authorization violation", connect, line, err)
		}
		c.Close()
	}
}
