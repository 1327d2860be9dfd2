package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keyledger/keyledger/internal/ledgertest"
	"github.com/keyledger/keyledger/schemas"
)

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Entrypoint  []string          `yaml:"entrypoint"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
}

// TestComposeFileOnLoopback runs docker-compose.yml's services as processes
// on loopback, from the compose file's own commands, NATS configurations
// and environment, because this machine has no Docker: the three NATS
// servers with deploy/nats/nats{1,2,3}.conf, the two keyledger nodes with
// the compose environment, and examples/webhook-receiver. Host names and
// ports become loopback addresses, /data a folder per service, and the
// compose network's range (allowed for webhooks) loopback's. Then it
// follows the README: register the receiver on node-a, create a key on
// node-a, validate it on node-b, revoke it on node-b; the receiver, given
// the endpoint's secret, prints each event once, with a verified signature.
//
// What it cannot check: the image build, the non-root user and the
// volumes, which need Docker.
func TestComposeFileOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts nats-server processes")
	}
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose composeFile
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	svc := func(name string) composeService {
		s, ok := compose.Services[name]
		if !ok {
			t.Fatalf("docker-compose.yml has no service %s", name)
		}
		return s
	}
	dir := t.TempDir()
	natsBin, err := natsServerBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	receiverBin := filepath.Join(dir, "webhook-receiver")
	if out, err := exec.Command("go", "build", "-o", receiverBin, "github.com/keyledger/keyledger/examples/webhook-receiver").CombinedOutput(); err != nil {
		t.Fatalf("go build webhook-receiver: %v\n%s", err, out)
	}

	// Every host:port of the compose network, on loopback.
	hosts := map[string]string{}
	for _, n := range []string{"nats1", "nats2", "nats3"} {
		hosts[n+":4222"] = ledgertest.FreeAddr(t)
		hosts[n+":6222"] = ledgertest.FreeAddr(t)
		hosts[n+":8222"] = ledgertest.FreeAddr(t)
	}
	hosts["node-a:8080"], hosts["node-b:8080"] = ledgertest.FreeAddr(t), ledgertest.FreeAddr(t)
	hosts["webhook-receiver:9000"] = ledgertest.FreeAddr(t)
	// onLoopback rewrites compose host names in s; listen addresses
	// (0.0.0.0:port) are the service's own.
	onLoopback := func(service, s string) string {
		s = regexp.MustCompile(`0\.0\.0\.0:(\d+)`).ReplaceAllStringFunc(s, func(m string) string {
			a, ok := hosts[service+":"+strings.TrimPrefix(m, "0.0.0.0:")]
			if !ok {
				t.Fatalf("%s listens on %s, which the test does not map", service, m)
			}
			return a
		})
		for h, a := range hosts {
			s = strings.ReplaceAll(s, h, a)
		}
		return s
	}
	start := func(name string, args []string, env []string) *ledgertest.SyncBuffer {
		t.Helper()
		out := &ledgertest.SyncBuffer{}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("%s's output:\n%s", name, out)
			}
		})
		return out
	}
	// The image's entry points (Dockerfile) as built here.
	binaries := map[string]string{
		"/usr/local/bin/nats-server": natsBin, "/usr/local/bin/keyledger": os.Args[0],
		"/usr/local/bin/webhook-receiver": receiverBin,
	}
	entry := func(name string, s composeService) []string {
		ep := s.Entrypoint
		if len(ep) == 0 {
			ep = []string{"/usr/local/bin/keyledger"} // the Dockerfile's ENTRYPOINT
		}
		bin, ok := binaries[ep[0]]
		if !ok {
			t.Fatalf("%s: entrypoint %v is not in the image", name, ep)
		}
		return append([]string{bin}, s.Command...)
	}

	// The NATS cluster: each server's configuration file, as mounted.
	for _, name := range []string{"nats1", "nats2", "nats3"} {
		s := svc(name)
		args := entry(name, s)
		var conf string
		for _, v := range s.Volumes {
			src, dst, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") && strings.HasPrefix(dst, "/etc/nats/") {
				b, err := os.ReadFile(filepath.Join("../..", src))
				if err != nil {
					t.Fatal(err)
				}
				conf = string(b)
				dst, _, _ = strings.Cut(dst, ":")
				local := filepath.Join(dir, name+".conf")
				for i := range args {
					if args[i] == dst {
						args[i] = local
					}
				}
				if !strings.Contains(conf, "sync_interval: always") {
					t.Errorf("%s: %s does not fsync every write", name, src)
				}
				conf = strings.ReplaceAll(onLoopback(name, conf), "store_dir: /data", fmt.Sprintf("store_dir: %q", filepath.Join(dir, name)))
				if err := os.WriteFile(local, []byte(conf), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		if conf == "" {
			t.Fatalf("%s mounts no configuration under /etc/nats", name)
		}
		start(name, args, nil)
	}
	nc := &natsCluster{t: t}
	for _, name := range []string{"nats1", "nats2", "nats3"} {
		nc.nodes = append(nc.nodes, &natsNode{name: name, clientAddr: hosts[name+":4222"], out: &bytes.Buffer{}})
	}
	for _, n := range nc.nodes {
		nc.waitJetStream(n)
	}
	// The two keyledger nodes, with the compose environment: the four
	// shared secrets from the shell, as the README's export line.
	shell := map[string]string{
		"KEYLEDGER_ADMIN_KEY":          testAdminKey,
		"KEYLEDGER_SEAL_KEY":           "0000000000000000000000000000000000000000000000000000000000000004",
		"KEYLEDGER_WEBHOOK_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"KEYLEDGER_WIDGET_KEY":         "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
	}
	interpolate := regexp.MustCompile(`\$\{([A-Z_]+)(:[?-][^}]*)?\}`)
	composeEnv := func(name string, s composeService) []string {
		env := []string{"KEYLEDGER_DATA=" + filepath.Join(dir, name)} // the Dockerfile's ENV
		for k, v := range s.Environment {
			v = interpolate.ReplaceAllStringFunc(v, func(m string) string {
				sub := interpolate.FindStringSubmatch(m)
				if val, ok := shell[sub[1]]; ok {
					return val
				}
				if strings.HasPrefix(sub[2], ":?") {
					t.Fatalf("%s: %s needs %s, which the README does not say to set", name, k, sub[1])
				}
				return ""
			})
			if k == "KEYLEDGER_WEBHOOK_ALLOW" {
				v = "127.0.0.0/8" // the compose network is loopback here
			}
			env = append(env, k+"="+onLoopback(name, v))
		}
		return env
	}
	for _, name := range []string{"node-a", "node-b"} {
		s := svc(name)
		if s.Environment["KEYLEDGER_NODE"] != name {
			t.Errorf("%s: KEYLEDGER_NODE %q", name, s.Environment["KEYLEDGER_NODE"])
		}
		env := append(os.Environ(), "KEYLEDGER_TEST_AS_MAIN=1")
		start(name, entry(name, s), append(env, composeEnv(name, s)...))
	}
	base := func(name string) string { return "http://" + hosts[name+":8080"] }
	for _, name := range []string{"node-a", "node-b"} {
		waitReady(t, base(name))
	}

	// The README: register the receiver on node-a.
	setCatalogue(t, base("node-a"), "projects:read")
	var we schemas.WebhookEndpoint
	body := schemas.CreateWebhookEndpointRequest{URL: onLoopback("", "http://webhook-receiver:9000/hook"), Events: []string{schemas.EventAPIKeyCreated, schemas.EventAPIKeyRevoked}}
	if st, raw := call(t, "POST", base("node-a")+"/webhook_endpoints", body, &we); st != 201 || we.Secret == nil {
		t.Fatalf("register the receiver: %d %s", st, raw)
	}
	rs := svc("webhook-receiver")
	rs.Environment["WEBHOOK_SECRET"] = *we.Secret // WEBHOOK_SECRET=whsec_... docker compose up webhook-receiver
	received := start("webhook-receiver", entry("webhook-receiver", rs), composeEnv("webhook-receiver", rs))

	k := createKey(t, base("node-a"), "org_compose", schemas.CreateAPIKeyRequest{Name: "compose", Permissions: []string{"projects:read"}})
	if v := validate(t, base("node-b"), *k.Value); v.APIKey == nil || v.APIKey.ID != k.ID {
		t.Fatalf("node-b on a key node-a created: %+v", v)
	}
	if st, raw := call(t, "DELETE", base("node-b")+"/api_keys/"+k.ID, nil, nil); st != 200 {
		t.Fatalf("revoke on node-b: %d %s", st, raw)
	}
	if v := validate(t, base("node-a"), *k.Value); v.APIKey != nil || v.Reason != schemas.ReasonRevoked {
		t.Fatalf("node-a after node-b answered the revoke: %+v", v)
	}
	deliveries := regexp.MustCompile(`delivery (\S+) (api_key\.\w+) org=org_compose`)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := received.String()
		if strings.Contains(out, "refused") {
			t.Fatalf("the receiver refused a delivery's signature:\n%s", out)
		}
		got := map[string]int{}
		ids := map[string]int{}
		for _, m := range deliveries.FindAllStringSubmatch(out, -1) {
			got[m[2]]++
			ids[m[1]]++
		}
		if got[schemas.EventAPIKeyCreated] >= 1 && got[schemas.EventAPIKeyRevoked] >= 1 {
			for id, n := range ids {
				if n > 1 {
					t.Errorf("delivery %s printed %d times", id, n)
				}
			}
			if len(ids) != 2 {
				t.Errorf("the receiver printed %d deliveries, want 2:\n%s", len(ids), out)
			}
			t.Logf("compose services on loopback: the receiver printed %v", got)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver never printed both deliveries:\n%s", out)
		}
	}
}
