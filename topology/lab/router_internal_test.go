package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vrouter-lab/vrouter/topology"
)

// generatedLab has a router per daemon, with and without announcements,
// passwords and a hold timer, peering with nodes in two ASes.
const generatedLab = `name: gen
ipPools: [{name: p, cidr: 10.244.0.0/16}]
bgp: {asNumber: 64512, holdTime: 0s}
networks: [{name: lan, cidr: 192.168.50.0/24}]
nodes:
  node-1: {network: lan, address: 192.168.50.10}
  node-2: {network: lan, address: 192.168.50.11, asNumber: 64513}
routers:
  b1: {network: lan, address: 192.168.50.100, daemon: bird, announce: [10.99.0.0/24, 10.98.0.1/32]}
  b2: {network: lan, address: 192.168.50.101, daemon: bird2, asNumber: 64600}
  fr: {network: lan, address: 192.168.50.102, daemon: frr, announce: [10.97.0.0/16]}
  fr-none: {network: lan, address: 192.168.50.103, daemon: frr, asNumber: 64601}
  b1-rr: {network: lan, address: 192.168.50.104, daemon: bird, routeReflectorClusterID: 244.0.0.2, password: own, holdTime: 30s}
  b2-rr: {network: lan, address: 192.168.50.105, daemon: bird2, routeReflectorClusterID: 244.0.0.3, password: own, holdTime: 30s}
bgpPeers:
  - {name: b1, peerIP: 192.168.50.100, password: "pw with spaces"}
  - {name: b2, peerIP: 192.168.50.101}
  - {name: fr, peerIP: 192.168.50.102, password: s3cret}
  - {name: fr-none, node: node-2, peerIP: 192.168.50.103}
  - {name: b1-rr, peerIP: 192.168.50.104, password: theirs}
  - {name: b2-rr, peerIP: 192.168.50.105}
`

// Every generated daemon configuration is one the daemon itself accepts
// (bird -p, bgpd -C), and names each peer node with its AS.
func TestGeneratedConfigsParse(t *testing.T) {
	for _, tc := range []struct{ hold, keepalive, gr string }{{"0s", "0s", "false"}, {"9s", "3s", "true"}} {
		src := strings.Replace(generatedLab, "holdTime: 0s", "holdTime: "+tc.hold+", keepaliveTime: "+tc.keepalive+", gracefulRestart: "+tc.gr+", restartTime: 60s", 1)
		l, err := topology.Parse("gen.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.Routers {
			t.Run(r.Name+"/hold="+tc.hold, func(t *testing.T) {
				var text string
				var check []string
				// bgpd -C drops to user frr too: the file must be readable.
				dir := t.TempDir()
				for _, d := range []string{dir, filepath.Dir(dir)} {
					if err := os.Chmod(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				file := filepath.Join(dir, "daemon.conf")
				switch r.Daemon {
				case topology.DaemonBIRD:
					requireBinary(t, "/usr/sbin/bird", "bird")
					text, check = birdConfig(l, r, false), []string{"/usr/sbin/bird", "-p", "-c", file}
				case topology.DaemonBIRD2:
					bin := os.Getenv("VROUTER_BIRD2")
					if bin == "" {
						bin = DefaultBIRD2
					}
					requireBinary(t, bin, "bird2 (extracted into /opt/vrouter-bird2)")
					text, check = birdConfig(l, r, true), []string{bin, "-p", "-c", file}
				case topology.DaemonFRR:
					requireBinary(t, "/usr/lib/frr/bgpd", "frr")
					text, check = frrConfig(l, r), []string{"/usr/lib/frr/bgpd", "-C", "-f", file}
				}
				if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				var out []byte
				if r.Daemon == topology.DaemonFRR {
					before, _ := filepath.Glob(filepath.Join(frrTmp, "bgpd.*"))
					o, err := checkFRRConfig(check[0], file)
					if err != nil {
						t.Fatalf("%v: %v\n%s\nconfig:\n%s", check, err, o, text)
					}
					if after, _ := filepath.Glob(filepath.Join(frrTmp, "bgpd.*")); len(after) > len(before) {
						t.Errorf("bgpd -C left files in %s: %v (before: %v)", frrTmp, after, before)
					}
				} else if out, err = exec.Command(check[0], check[1:]...).CombinedOutput(); err != nil {
					t.Fatalf("%v: %v\n%s\nconfig:\n%s", check, err, out, text)
				}
				for _, p := range routerPeers(l, r) {
					if !strings.Contains(text, p.Address.String()) {
						t.Errorf("config lacks peer %s:\n%s", p.Address, text)
					}
				}
				if len(routerPeers(l, r)) == 0 {
					t.Errorf("router %s has no peers", r.Name)
				}
				for _, a := range r.Announce {
					if !strings.Contains(text, a.String()) {
						t.Errorf("config does not announce %s:\n%s", a, text)
					}
				}
				if r.Daemon != topology.DaemonBIRD && r.Daemon != topology.DaemonBIRD2 {
					return
				}
				// the lab file's reflector, key, hold time and graceful
				// restart reach BIRD's configuration
				has := func(want string, yes bool) {
					if strings.Contains(text, want) != yes {
						t.Errorf("config has %q: %v, want %v:\n%s", want, !yes, yes, text)
					}
				}
				rr := r.RouteReflectorClusterID.IsValid()
				has("rr cluster id "+r.RouteReflectorClusterID.String()+";", rr)
				has("rr client;", rr)
				// clients (iBGP) keep the next hop; other peers get the router's
				clients := 0
				for _, p := range routerPeers(l, r) {
					if rr && p.ASN == r.ASNumber {
						clients++
					}
				}
				if n := strings.Count(text, "rr client;"); n != clients {
					t.Errorf("%d rr clients, want %d:\n%s", n, clients, text)
				}
				if n := strings.Count(text, "next hop self;"); n != len(routerPeers(l, r))-clients {
					t.Errorf("%d sessions with next hop self, want %d:\n%s", n, len(routerPeers(l, r))-clients, text)
				}
				has(`password "own";`, rr)
				has("hold time 30;", rr)
				has("keepalive time", !rr && tc.hold != "0s")
				has("graceful restart on;\n  graceful restart time 60;", tc.gr == "true")
			})
		}
	}
}

// requireBinary fails (under CI) or skips the test when path is missing.
func requireBinary(t *testing.T, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; install the Debian package %s", path, pkg)
	}
	t.Skipf("%s not found; install the Debian package %s", path, pkg)
}
