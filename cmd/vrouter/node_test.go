package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
)

// `node run` takes --dataplane (userspace or kernel) and refuses any other
// name, in the flag or in the config file, before starting anything.
func TestNodeRunDataplane(t *testing.T) {
	out, err := run(t, "node", "run", "--help")
	if err != nil || !strings.Contains(out, "--dataplane") || !strings.Contains(out, "kernel") {
		t.Fatalf("node run --help: %v\n%s", err, out)
	}
	dir := t.TempDir()
	write := func(extra string) string {
		path := filepath.Join(dir, "node.json")
		cfg := `{"node":"node1","prefix":"192.168.50.10/24","interface":"ens33"` + extra + `}`
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if _, err := run(t, "node", "run", "--config", write(""), "--dataplane", "ebpf"); err == nil || !strings.Contains(err.Error(), `unknown dataplane "ebpf"`) {
		t.Errorf("--dataplane ebpf: %v, want an unknown dataplane error", err)
	}
	if _, err := run(t, "node", "run", "--config", write(`,"dataplane":"ebpf"`)); err == nil || !strings.Contains(err.Error(), `unknown dataplane "ebpf"`) {
		t.Errorf(`"dataplane": "ebpf" in the config: %v, want an unknown dataplane error`, err)
	}
}

// `node run` takes --datastore bbolt|etcd with --etcd-* flags and refuses
// an incomplete or unknown selection before starting anything.
func TestNodeRunDatastore(t *testing.T) {
	out, err := run(t, "node", "run", "--help")
	for _, f := range []string{"--datastore", "--etcd-endpoints", "--etcd-cert", "--etcd-key", "--etcd-ca"} {
		if err != nil || !strings.Contains(out, f) {
			t.Fatalf("node run --help lacks %s: %v\n%s", f, err, out)
		}
	}
	path := filepath.Join(t.TempDir(), "node.json")
	cfg := `{"node":"node1","prefix":"192.168.50.10/24","interface":"ens33","datastore":"/nonexistent/ipam.db"}`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--datastore", "consul"}, `unknown datastore "consul"`},
		{[]string{"--datastore", "etcd"}, "needs endpoints"},
		{[]string{"--etcd-endpoints", "http://127.0.0.1:2379"}, "need --datastore etcd"},
		{[]string{"--datastore", "etcd", "--etcd-endpoints", "127.0.0.1:2379"}, "not an http:// or https:// URL"},
		{[]string{"--datastore", "etcd", "--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-cert", "c.pem"}, "needs its key"},
	} {
		args := append([]string{"node", "run", "--config", path}, tc.args...)
		if _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// `vrouter node run` refuses a node file with problems, listing them as
// FILE:LINE: FIELD: message, before it touches anything.
func TestNodeRunBadNodeFile(t *testing.T) {
	netnstest.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(path, []byte("address: 192.168.50.10/24\ninterface: ens33\nasNumber: many\nipPools:\n  - cidr: 10.244.0.0/16\n    ipipMode: Sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "node", "run", "--config", path)
	want := path + `:3: asNumber: "many" is not a whole number` + "\n" + path + `:6: ipPools[0].ipipMode: "Sometimes": want Never, Always or CrossSubnet`
	if err == nil || err.Error() != want {
		t.Errorf("node run with a bad node file: %v\nwant:\n%s", err, want)
	}
}

// node status on a real host whose agent is not running says so, and how
// to start it there (systemd, not a lab).
func TestNodeStatusHostAgentDown(t *testing.T) {
	netnstest.RequireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(path, []byte("node: h1\naddress: 192.168.50.10/24\ninterface: ens33\nasNumber: 64512\nipPools:\n  - cidr: 10.244.0.0/16\nstateDir: "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "node", "status", "--config", path)
	if err == nil || !strings.Contains(err.Error(), "node h1: agent is not running (no answer on "+dir+"/nodes/h1.sock); start it with: systemctl start vrouter-node") || out != "vrouter process is not running.\n" {
		t.Errorf("node status with no agent: %v\n%s", err, out)
	}
}
