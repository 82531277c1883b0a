package nftpolicy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/netns/netnstest"
	"github.com/vrouter-lab/vrouter/vrouter/policy"
)

func TestIntervals(t *testing.T) {
	show := func(es []nftables.SetElement) string {
		var parts []string
		for _, e := range es {
			s := fmt.Sprintf("%x", e.Key)
			if e.IntervalEnd {
				s = "end " + s
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ",")
	}
	for _, tc := range []struct {
		name string
		got  []nftables.SetElement
		want string
	}{
		{"one address", addrIntervals(nil, []netip.Addr{netip.MustParseAddr("10.0.0.1")}), "0a000001,end 0a000002"},
		{"prefix", addrIntervals([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, nil), "0a000000,end 0a000100"},
		{"host bits masked", addrIntervals([]netip.Prefix{netip.MustParsePrefix("10.0.0.7/30")}, nil), "0a000004,end 0a000008"},
		{"overlapping merged", addrIntervals([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.0.128/25")}, []netip.Addr{netip.MustParseAddr("10.0.0.5")}), "0a000000,end 0a000100"},
		{"adjacent merged", addrIntervals([]netip.Prefix{netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.0.0/24")}, nil), "0a000000,end 0a000200"},
		{"separate kept apart", addrIntervals(nil, []netip.Addr{netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.1")}), "0a000001,end 0a000002,0a000003,end 0a000004"},
		{"everything has no end", addrIntervals([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, nil), "00000000"},
		{"port and range", portIntervals([]policy.PortRange{{First: 8000, Last: 8080}, {First: 80, Last: 80}}), "0050,end 0051,1f40,end 1f91"},
		{"last port has no end", portIntervals([]policy.PortRange{{First: 65000, Last: 65535}}), "fde8"},
	} {
		if got := show(tc.got); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestComments(t *testing.T) {
	id := policy.RuleID{Policy: "prod/allow-web", Direction: policy.Ingress, Index: 3}
	c := ruleComment(id)
	if c != "policy prod/allow-web ingress rule 3" {
		t.Fatalf("comment %q", c)
	}
	if back, ok := parseComment(c); !ok || back != id {
		t.Fatalf("parse %q: %+v %v", c, back, ok)
	}
	for _, bad := range []string{"", "default deny", "policy x sideways rule 1", "policy x ingress rule one", "policy x ingress rule"} {
		if _, ok := parseComment(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

// nsPrefix starts the name of every namespace these tests make.
var nsPrefix = fmt.Sprintf("vnp%d-", os.Getpid())

var nsSeq atomic.Int32

// rig is a host namespace with workloads on veths, routed as a Calico
// host routes them: each workload has its /32 on eth0 and a default route
// through its host-side interface, whose proxy ARP answers.
type rig struct {
	host string
	wls  map[string]*workload
}

type workload struct {
	name, ns, ifname string
	addr             netip.Addr
	labels           map[string]string
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNS(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d%s", nsPrefix, nsSeq.Add(1), role)
	if err := netns.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

// rootRuleset fails the test if the root namespace's nftables ruleset
// changes while it runs.
func rootRuleset(t *testing.T) {
	before := run(t, "nft", "list", "ruleset")
	t.Cleanup(func() {
		if after := run(t, "nft", "list", "ruleset"); after != before {
			t.Errorf("root namespace's nftables ruleset changed\nbefore:\n%s\nafter:\n%s", before, after)
		}
	})
}

func newRig(t *testing.T, wls ...*workload) *rig {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "iproute2")
	netnstest.RequireCommand(t, "nft", "nftables")
	netnstest.RequireCommand(t, "ping", "iputils-ping")
	netnstest.GuardNamespaces(t, nsPrefix)
	netnstest.GuardRoot(t)
	rootRuleset(t)
	r := &rig{host: newNS(t, "h"), wls: map[string]*workload{}}
	run(t, "ip", "netns", "exec", r.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Proxy ARP answers for 169.254.1.1 only if the host routes it
	// elsewhere: a default route, as every Calico host has (here into a
	// veth pair whose both ends stay in the host namespace).
	run(t, "ip", "-n", r.host, "link", "add", "ens33", "up", "type", "veth", "peer", "name", "ens33p")
	run(t, "ip", "-n", r.host, "link", "set", "ens33p", "up")
	run(t, "ip", "-n", r.host, "route", "add", "default", "dev", "ens33")
	for i, w := range wls {
		w.ns = newNS(t, "w")
		w.ifname = fmt.Sprintf("cali%011d", i)
		run(t, "ip", "-n", r.host, "link", "add", w.ifname, "type", "veth", "peer", "name", "eth0", "netns", w.ns)
		run(t, "ip", "netns", "exec", r.host, "sysctl", "-qw", "net.ipv4.conf."+w.ifname+".proxy_arp=1", "net.ipv4.neigh."+w.ifname+".proxy_delay=0")
		run(t, "ip", "-n", r.host, "link", "set", w.ifname, "up")
		run(t, "ip", "-n", r.host, "route", "add", w.addr.String(), "dev", w.ifname, "scope", "link")
		run(t, "ip", "-n", w.ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", w.ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", w.ns, "addr", "add", w.addr.String()+"/32", "dev", "eth0")
		run(t, "ip", "-n", w.ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
		run(t, "ip", "-n", w.ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
		r.wls[w.name] = w
	}
	return r
}

func (r *rig) endpoints() ([]policy.Endpoint, map[string]string) {
	var eps []policy.Endpoint
	ifaces := map[string]string{}
	for _, w := range r.wls {
		eps = append(eps, policy.Endpoint{Name: w.name, Labels: w.labels, Addr: w.addr})
		ifaces[w.name] = w.ifname
	}
	return eps, ifaces
}

func (r *rig) apply(t *testing.T, tab *Table, pols ...policy.Policy) {
	t.Helper()
	for i := range pols {
		p := pols[i]
		p.Default()
		if err := policy.Validate(&p); len(err) > 0 {
			t.Fatalf("policy %s: %v", pols[i].Name, err)
		}
	}
	eps, ifaces := r.endpoints()
	if err := tab.Apply(policy.Compile(pols, eps), ifaces); err != nil {
		t.Fatal(err)
	}
}

// listen serves TCP on port in w's namespace, echoing a line back.
func (r *rig) listen(t *testing.T, w string, port int) {
	t.Helper()
	var l net.Listener
	err := netns.Do(r.wls[w].ns, func() error {
		var err error
		l, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
}

// dial connects from w to to:port, or fails within a short timeout.
func (r *rig) dial(from, to string, port int) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(r.wls[from].ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(r.wls[to].addr, uint16(port)).String(), 700*time.Millisecond)
		return err
	})
	return c, err
}

// echo sends a line on c and reports whether it came back.
func echo(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(700 * time.Millisecond))
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return false
	}
	buf := make([]byte, 6)
	n, err := c.Read(buf)
	return err == nil && string(buf[:n]) == "hello\n"
}

func (r *rig) tcp(from, to string, port int) bool {
	c, err := r.dial(from, to, port)
	if err != nil {
		return false
	}
	defer c.Close()
	return echo(c)
}

func (r *rig) ping(from, to string) bool {
	return exec.Command("ip", "netns", "exec", r.wls[from].ns, "ping", "-c", "1", "-W", "1", r.wls[to].addr.String()).Run() == nil
}

func order(f float64) *float64 { return &f }

func TestEnforcement(t *testing.T) {
	r := newRig(t,
		&workload{name: "web", addr: netip.MustParseAddr("10.65.0.1"), labels: map[string]string{"role": "frontend"}},
		&workload{name: "db", addr: netip.MustParseAddr("10.65.0.2"), labels: map[string]string{"role": "db"}},
		&workload{name: "other", addr: netip.MustParseAddr("10.65.1.3"), labels: map[string]string{"role": "batch"}},
	)
	// A table of somebody else's, which nothing here may touch.
	run(t, "ip", "netns", "exec", r.host, "nft", "add table inet theirs; add chain inet theirs c { type filter hook forward priority 10; }; add rule inet theirs c counter")
	theirs := run(t, "ip", "netns", "exec", r.host, "nft", "list", "table", "inet", "theirs")
	theirsRule := func() string {
		out := run(t, "ip", "netns", "exec", r.host, "nft", "list", "table", "inet", "theirs")
		// Only the counter's values may move.
		return regexpCounter(out)
	}
	wantTheirs := regexpCounter(theirs)

	tab, err := Open(r.host)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	for _, port := range []int{80, 81, 5432} {
		r.listen(t, "db", port)
		r.listen(t, "web", port)
		r.listen(t, "other", port)
	}

	r.apply(t, tab)
	for _, c := range []struct{ from, to string }{{"web", "db"}, {"other", "db"}, {"db", "web"}} {
		if !r.tcp(c.from, c.to, 80) || !r.ping(c.from, c.to) {
			t.Fatalf("no policy: %s → %s blocked", c.from, c.to)
		}
	}

	// db admits TCP 5432 and 80-81 from frontends only, and nothing else.
	dbIngress := policy.Policy{Kind: policy.KindNetworkPolicy, Name: "db-ingress", Order: order(10),
		Selector: "role == 'db'",
		Ingress: []policy.Rule{{Action: policy.Allow, Protocol: policy.ProtoTCP,
			Source:      policy.EntityRule{Selector: "role == 'frontend'"},
			Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 5432, Last: 5432}, {First: 80, Last: 81}}, NotPorts: []policy.PortRange{{First: 81, Last: 81}}}}},
	}
	r.apply(t, tab, dbIngress)
	matrix := []struct {
		from, to string
		port     int
		want     bool
	}{
		{"web", "db", 5432, true},
		{"web", "db", 80, true},
		{"web", "db", 81, false}, // notPorts
		{"other", "db", 5432, false},
		{"db", "web", 80, true}, // web is not policed; db's egress neither
		{"other", "web", 80, true},
	}
	for _, c := range matrix {
		if got := r.tcp(c.from, c.to, c.port); got != c.want {
			t.Errorf("db-ingress: tcp %s → %s:%d: %v, want %v", c.from, c.to, c.port, got, c.want)
		}
	}
	if r.ping("web", "db") {
		t.Errorf("db-ingress: ping web → db passed, want denied")
	}
	if !r.ping("db", "web") {
		t.Errorf("db-ingress: ping db → web denied, want passed (and its reply)")
	}
	hits, denied, err := tab.Counters()
	if err != nil {
		t.Fatal(err)
	}
	allow := policy.RuleID{Policy: "default/db-ingress", Direction: policy.Ingress, Index: 0}
	if hits[allow] < 2 || denied[policy.Ingress] < 2 {
		t.Errorf("counters: allow rule %d (want ≥ 2 connections), default deny %d (want ≥ 2)\n%v", hits[allow], denied[policy.Ingress], hits)
	}

	// An established flow is cut when a new policy denies it, and keeps
	// going while the policies allow it.
	c, err := r.dial("web", "db", 5432)
	if err != nil || !echo(c) {
		t.Fatalf("web → db:5432 before the change: %v", err)
	}
	defer c.Close()
	denyWeb := policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "deny-web", Order: order(1),
		Selector: "role == 'db'",
		Ingress:  []policy.Rule{{Action: policy.Deny, Source: policy.EntityRule{Selector: "role == 'frontend'"}}},
	}
	r.apply(t, tab, dbIngress, policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "log-all", Order: order(0),
		Selector: "all()", Types: []policy.Direction{policy.Ingress}, Ingress: []policy.Rule{{Action: policy.Log}}})
	if !echo(c) {
		t.Errorf("established web → db:5432 cut by a change that still allows it")
	}
	r.apply(t, tab, dbIngress, denyWeb)
	if echo(c) {
		t.Errorf("established web → db:5432 still flows after deny-web")
	}

	// Egress only: other may reach 10.65.0.0/24 on TCP, nothing else;
	// the replies come back through conntrack although other's ingress
	// is not opened for them... and other's ingress is not policed.
	egress := policy.Policy{Kind: policy.KindNetworkPolicy, Name: "other-egress",
		Selector: "role == 'batch'",
		Egress: []policy.Rule{
			{Action: policy.Pass, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: u8(8)}, Destination: policy.EntityRule{Selector: "role == 'frontend'"}},
			{Action: policy.Allow, Protocol: policy.ProtoTCP, Destination: policy.EntityRule{Nets: []netip.Prefix{netip.MustParsePrefix("10.65.0.0/24")}}},
		},
	}
	r.apply(t, tab, egress)
	if !r.tcp("other", "web", 80) || !r.tcp("other", "db", 81) {
		t.Errorf("other-egress: TCP to 10.65.0.0/24 denied")
	}
	if !r.ping("other", "web") {
		t.Errorf("other-egress: ping to web (Pass) denied")
	}
	if r.ping("other", "db") {
		t.Errorf("other-egress: ping to db passed, want default deny")
	}
	if !r.tcp("web", "other", 80) {
		t.Errorf("other-egress: web → other (not policed) denied")
	}

	if got := theirsRule(); got != wantTheirs {
		t.Errorf("somebody else's table changed:\n%s\nwant:\n%s", got, wantTheirs)
	}
	if err := tab.Remove(); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "netns", "exec", r.host, "nft", "list", "tables"); strings.Contains(out, "vrouter") || !strings.Contains(out, "table inet theirs") {
		t.Errorf("after Remove: tables\n%s", out)
	}
	if err := tab.Remove(); err != nil {
		t.Errorf("Remove without a table: %v", err)
	}
	if !r.ping("web", "db") {
		t.Errorf("after Remove: ping web → db denied")
	}
}

func u8(v uint8) *uint8 { return &v }

// regexpCounter blanks the values of nft's counters.
func regexpCounter(s string) string {
	f := strings.Fields(s)
	for i := range f {
		if i > 0 && (f[i-1] == "packets" || f[i-1] == "bytes") {
			f[i] = "N"
		}
	}
	return strings.Join(f, " ")
}

// TestListing checks the table's text as nft prints it, written by hand
// from the design in the package doc (nft folds "meta l4proto tcp" into
// "tcp dport"; a rule whose selector selects nobody is left out).
func TestListing(t *testing.T) {
	r := newRig(t,
		&workload{name: "a", addr: netip.MustParseAddr("10.66.0.1"), labels: map[string]string{"app": "a"}},
		&workload{name: "b", addr: netip.MustParseAddr("10.66.0.2"), labels: map[string]string{"app": "b"}},
	)
	tab, err := Open(r.host)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	r.apply(t, tab, policy.Policy{Kind: policy.KindGlobalNetworkPolicy, Name: "b-in", Selector: "app == 'b'",
		Ingress: []policy.Rule{
			{Action: policy.Deny, Protocol: policy.ProtoUDP, Source: policy.EntityRule{NotNets: []netip.Prefix{netip.MustParsePrefix("10.66.0.0/16")}}},
			{Action: policy.Allow, Protocol: policy.ProtoTCP, Source: policy.EntityRule{Selector: "app == 'a'"}, Destination: policy.EntityRule{Ports: []policy.PortRange{{First: 8000, Last: 8080}}}},
			{Action: policy.Allow, Source: policy.EntityRule{Selector: "app == 'nobody'"}},
		}})
	got := run(t, "ip", "netns", "exec", r.host, "nft", "list", "table", "ip", "vrouter")
	b := r.wls["b"].ifname
	want := `table ip vrouter {
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		ct state established ct direction reply accept comment "reply of a tracked flow"
		ct state related accept comment "related to a tracked flow"
		oifname "` + b + `" jump cali-tw-` + b + ` comment "to b"
	}

	chain filter-INPUT {
		type filter hook input priority filter; policy accept;
		ct state established ct direction reply accept comment "reply of a tracked flow"
		ct state related accept comment "related to a tracked flow"
	}

	chain cali-tw-` + b + ` {
		ct state invalid counter packets 0 bytes 0 drop comment "invalid"
		meta l4proto udp ip saddr != { 10.66.0.0/16 } counter packets 0 bytes 0 drop comment "policy b-in ingress rule 0"
		ip saddr { 10.66.0.1 } tcp dport { 8000-8080 } counter packets 0 bytes 0 return comment "policy b-in ingress rule 1"
		counter packets 0 bytes 0 drop comment "default deny"
	}
}
`
	if got != want {
		t.Errorf("nft list table ip vrouter:\n%s\nwant:\n%s", got, want)
	}
}

// FuzzComments: any comment parses to a rule ID whose comment is itself,
// or not at all.
func FuzzComments(f *testing.F) {
	f.Add("policy prod/allow-web ingress rule 3")
	f.Add("policy x egress rule -1")
	f.Add("default deny")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := parseComment(s)
		if !ok {
			return
		}
		if back, ok := parseComment(ruleComment(id)); !ok || back != id {
			t.Fatalf("%q → %+v → %q → %+v", s, id, ruleComment(id), back)
		}
	})
}
