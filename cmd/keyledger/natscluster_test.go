package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsServerBinary builds nats-server from the module keyledger embeds (the
// version go.mod names) into a test's temporary folder.
func natsServerBinary(t testing.TB) (string, error) {
	bin := filepath.Join(t.TempDir(), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %v\n%s", err, out)
	}
	return bin, nil
}

// natsNode is one nats-server process of a test cluster.
type natsNode struct {
	name, conf, clientAddr string
	cmd                    *exec.Cmd
	out                    *bytes.Buffer
}

// natsCluster is a JetStream cluster of nats-server processes on loopback.
type natsCluster struct {
	t     testing.TB
	bin   string
	nodes []*natsNode
}

// startNATSCluster starts n nats-server processes as one JetStream cluster
// on free loopback ports, configuration and storage under dir, and waits
// until JetStream answers through every server.
func startNATSCluster(t testing.TB, dir string, n int) *natsCluster {
	t.Helper()
	bin, err := natsServerBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	c := &natsCluster{t: t, bin: bin}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	routes := make([]string, n)
	clusterAddrs := make([]string, n)
	for i := range n {
		clusterAddrs[i] = ledgertest.FreeAddr(t)
		routes[i] = fmt.Sprintf("%q", "nats-route://"+clusterAddrs[i])
	}
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		node := &natsNode{name: name, clientAddr: ledgertest.FreeAddr(t), conf: filepath.Join(dir, name+".conf")}
		store := filepath.Join(dir, name)
		conf := fmt.Sprintf(`server_name: %s
listen: %q
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: keyledger_test
  listen: %q
  routes: [%s]
  # Clients keep to the URLs they were given (the partition test puts
  # proxies there), instead of learning every server's own address.
  no_advertise: true
}
`, name, node.clientAddr, store, clusterAddrs[i], strings.Join(routes, ", "))
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		c.start(node)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			c.kill(node)
			if t.Failed() {
				t.Logf("nats-server %s's output:\n%s", node.name, node.out)
			}
		}
	})
	for _, node := range c.nodes {
		c.waitJetStream(node)
	}
	return c
}

func (c *natsCluster) start(node *natsNode) {
	c.t.Helper()
	node.out = &bytes.Buffer{}
	node.cmd = exec.Command(c.bin, "-c", node.conf)
	node.cmd.Stdout, node.cmd.Stderr = node.out, node.out
	if err := node.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// kill stops a server with SIGKILL (no clean shutdown) and reaps it.
func (c *natsCluster) kill(node *natsNode) {
	if node.cmd != nil && node.cmd.ProcessState == nil {
		_ = node.cmd.Process.Kill()
		_ = node.cmd.Wait()
	}
}

// urls is the comma-separated client URLs of every server.
func (c *natsCluster) urls() string {
	var u []string
	for _, node := range c.nodes {
		u = append(u, "nats://"+node.clientAddr)
	}
	return strings.Join(u, ",")
}

func (c *natsCluster) node(name string) *natsNode {
	for _, node := range c.nodes {
		if node.name == name {
			return node
		}
	}
	c.t.Fatalf("no nats-server %q", name)
	return nil
}

// waitJetStream waits until JetStream answers through node (the cluster has
// a meta leader and the server has joined it).
func (c *natsCluster) waitJetStream(node *natsNode) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := func() error {
			nc, err := nats.Connect("nats://"+node.clientAddr, nats.Timeout(2*time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("JetStream does not answer through %s: %v\n%s", node.name, err, node.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// connect is a client connection to the whole cluster, closed at cleanup.
func (c *natsCluster) connect() (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(5*time.Second))
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}
