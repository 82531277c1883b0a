package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vrouter-lab/vrouter/topology"
	"github.com/vrouter-lab/vrouter/vrouter/ipam"
	"github.com/vrouter-lab/vrouter/vrouter/netns"
	"github.com/vrouter-lab/vrouter/vrouter/resources"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// An etcd lab (datastore: etcd) runs a 3-member etcd cluster (Debian's
// etcd-server) and its agents keep IPAM state there instead of in the
// state directory's bbolt file. The cluster lives on the lab's etcd
// network, a management network apart from the lab's underlay, as a real
// cluster's hosts reach etcd over theirs:
//
//   - a Linux bridge (br0) in namespace vr-<lab>.etcd.net, with an
//     address of its own from which vrouter's commands (ipam show, get
//     blocks, the tests) reach the members, dialing from that namespace;
//   - each member in a namespace of its own, vr-<lab>.etcd<i>.etcd, its
//     eth0 on the bridge (the first addresses of the subnet), serving
//     clients on port 2379 and its peers on 2380, its data under the
//     state directory (etcd/<member>/, 0700);
//   - each calico node joined to the bridge by a veth whose node end is
//     mgmt0 (topology.EtcdInterface), so its agent (userspace or kernel
//     dataplane alike) reaches the members through its namespace's
//     kernel. The subnet is the lab's topology.EtcdSubnet, which no
//     network, pool or peer of the lab overlaps.
//
// Nothing is made in the root namespace: deleting the lab's namespaces
// removes the bridge and every veth; destroy stops the members by their
// pid files (etcd/<member>.pid), after the agents.

// etcdMembers is the size of an etcd lab's cluster.
var etcdMembers = len(topology.EtcdMemberNames())

// Ports of an etcd member.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
)

// Offsets in the etcd subnet: the members first, then the bridge's own
// address, then the nodes in lab file order.
const (
	etcdMemberOffset = 1
	etcdBridgeOffset = 10
	etcdNodeOffset   = 16
)

// EtcdState is the etcd cluster of a deployed etcd lab.
type EtcdState struct {
	Subnet netip.Prefix `json:"subnet"`
	// Namespace holds the etcd network's bridge, with Address.
	Namespace string       `json:"namespace"`
	Address   netip.Addr   `json:"address"`
	Members   []EtcdMember `json:"members"`
	// Nodes are the calico nodes' addresses on the etcd network (their
	// mgmt0), in lab file order.
	Nodes []EtcdNode `json:"nodes"`
}

// EtcdMember is one member of an etcd lab's cluster.
type EtcdMember struct {
	Name      string     `json:"name"`
	Namespace string     `json:"namespace"`
	Address   netip.Addr `json:"address"`
	DataDir   string     `json:"dataDir"`
	Log       string     `json:"log"`
	PIDFile   string     `json:"pidFile"`
}

// EtcdNode is a calico node's address on the etcd network.
type EtcdNode struct {
	Node    string     `json:"node"`
	Address netip.Addr `json:"address"`
}

// EtcdNamespace is the namespace of an etcd lab's etcd network bridge:
// vr-<lab>.etcd.net (the second dot keeps it apart from every node's and
// workload's namespace, its suffix from a network's bridge).
func EtcdNamespace(lab string) string {
	return topology.LabNamespacePrefix(lab) + "etcd.net"
}

// etcdMemberName is the name of member i.
func etcdMemberName(i int) string { return topology.EtcdMemberNames()[i] }

// etcdMemberNamespace is the namespace of an etcd lab's member:
// vr-<lab>.<member>.etcd.
func etcdMemberNamespace(lab, member string) string {
	return topology.LabNamespacePrefix(lab) + member + ".etcd"
}

// ClientURL is the member's client URL, on the etcd network.
func (m EtcdMember) ClientURL() string {
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(m.Address, etcdClientPort))
}

// peerURL is the member's peer URL.
func (m EtcdMember) peerURL() string {
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(m.Address, etcdPeerPort))
}

// Endpoints are the members' client URLs, in member order.
func (e *EtcdState) Endpoints() []string {
	var out []string
	for _, m := range e.Members {
		out = append(out, m.ClientURL())
	}
	return out
}

// Member returns the named member.
func (e *EtcdState) Member(name string) (EtcdMember, bool) {
	for _, m := range e.Members {
		if m.Name == name {
			return m, true
		}
	}
	return EtcdMember{}, false
}

// addrAt returns the address offset places into prefix p.
func addrAt(p netip.Prefix, offset int) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(offset)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// etcdEndpoints are the client URLs of etcd lab l's members, as its
// agents are configured with them.
func etcdEndpoints(l *topology.Lab) ([]string, error) {
	subnet, ok := l.EtcdSubnet()
	if !ok {
		return nil, fmt.Errorf("lab %s: no free subnet for its etcd network", l.Name)
	}
	var out []string
	for i := range etcdMembers {
		out = append(out, EtcdMember{Address: addrAt(subnet, etcdMemberOffset+i)}.ClientURL())
	}
	return out, nil
}

// planEtcd plans etcd lab l's cluster in state directory dir (nil for a
// lab on bbolt) and checks that etcd is installed.
func planEtcd(l *topology.Lab, dir string) (*EtcdState, error) {
	if !l.Etcd() {
		return nil, nil
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		return nil, fmt.Errorf("lab %s has datastore: etcd, but etcd is not installed: install Debian's etcd-server (apt-get install etcd-server): %w", l.Name, err)
	}
	subnet, ok := l.EtcdSubnet()
	if !ok {
		return nil, fmt.Errorf("lab %s: no free subnet for its etcd network", l.Name)
	}
	e := &EtcdState{Subnet: subnet, Namespace: EtcdNamespace(l.Name), Address: addrAt(subnet, etcdBridgeOffset)}
	for i := range etcdMembers {
		name := etcdMemberName(i)
		files := etcdMemberPaths(dir, name)
		e.Members = append(e.Members, EtcdMember{
			Name: name, Namespace: etcdMemberNamespace(l.Name, name), Address: addrAt(subnet, etcdMemberOffset+i),
			DataDir: etcdDataDir(dir, name), Log: files.Log, PIDFile: files.PIDFile,
		})
	}
	for i, n := range l.Nodes {
		e.Nodes = append(e.Nodes, EtcdNode{Node: n.Name, Address: addrAt(subnet, etcdNodeOffset+i)})
	}
	return e, nil
}

// provisionEtcd makes the cluster's directories, the etcd network's
// namespaces, bridge and veths (the nodes' namespaces being there), and
// records the cluster in st.
func provisionEtcd(ctx context.Context, e *EtcdState, st *State) error {
	if e == nil {
		return nil
	}
	if err := os.Mkdir(etcdDir(st.Dir), dirMode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(etcdDir(st.Dir), dirMode); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	st.Etcd = e
	if err := st.save(); err != nil {
		return err
	}
	b := bridge{network: "etcd", namespace: e.Namespace, mtu: topology.DefaultMTU}
	for _, m := range e.Members {
		if err := interrupted(ctx); err != nil {
			return err
		}
		if err := createNamespace(m.Namespace); err != nil {
			return err
		}
		if err := os.Mkdir(m.DataDir, dirMode); err != nil {
			return fmt.Errorf("etcd member %s: create data directory: %w", m.Name, err)
		}
		b.ports = append(b.ports, bridgePort{namespace: m.Namespace, iface: "eth0", address: netip.PrefixFrom(m.Address, e.Subnet.Bits())})
	}
	for _, n := range e.Nodes {
		ns := topology.LabNamespacePrefix(st.Name) + n.Node
		b.ports = append(b.ports, bridgePort{namespace: ns, iface: topology.EtcdInterface, address: netip.PrefixFrom(n.Address, e.Subnet.Bits())})
	}
	if err := createNamespace(e.Namespace); err != nil {
		return err
	}
	if err := b.create(); err != nil {
		return fmt.Errorf("etcd network: %w", err)
	}
	h, err := netns.Handle(e.Namespace)
	if err != nil {
		return err
	}
	defer h.Close()
	br, err := h.LinkByName(BridgeName)
	if err != nil {
		return fmt.Errorf("etcd network: %w", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: e.Address.AsSlice(), Mask: net.CIDRMask(e.Subnet.Bits(), 32)}}
	if err := h.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("etcd network: add %s to %s: %w", e.Address, BridgeName, err)
	}
	return nil
}

// memberArgs is the command line of member m of cluster e, whose initial
// cluster token is the lab's name.
func (e *EtcdState) memberArgs(bin, lab string, m EtcdMember) []string {
	var cluster []string
	for _, o := range e.Members {
		cluster = append(cluster, o.Name+"="+o.peerURL())
	}
	return []string{bin,
		"--name", m.Name,
		"--data-dir", m.DataDir,
		// Also on the member's loopback, for etcdctl through vrouter exec.
		"--listen-client-urls", m.ClientURL() + ",http://127.0.0.1:2379",
		"--advertise-client-urls", m.ClientURL(),
		"--listen-peer-urls", m.peerURL(),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", strings.Join(cluster, ","),
		// "new" is ignored once the data directory holds a member: a
		// restarted member rejoins with its data.
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "vrouter-" + lab,
		"--logger", "zap", "--log-outputs", "stderr",
	}
}

// startEtcd starts every member of cluster e, then waits until each
// serves (which takes a quorum) or ctx ends.
func startEtcd(ctx context.Context, e *EtcdState, lab string, progress func(string, ...any)) error {
	if e == nil {
		return nil
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	for _, m := range e.Members {
		if err := startProcess(m.Namespace, e.memberArgs(bin, lab, m), m.Log, m.PIDFile, nil); err != nil {
			return fmt.Errorf("etcd member %s: start: %w", m.Name, err)
		}
		progress("etcd member %s: started in namespace %s (%s)", m.Name, m.Namespace, m.ClientURL())
	}
	for _, m := range e.Members {
		if err := e.waitServing(ctx, m); err != nil {
			return err
		}
	}
	progress("etcd: %d members serving on %s", len(e.Members), e.Subnet)
	return nil
}

// waitServing waits until member m answers a linearizable read or ctx
// ends; a member whose process exits ends it with an error.
func (e *EtcdState) waitServing(ctx context.Context, m EtcdMember) error {
	for {
		if !processAlive(m.PIDFile) {
			return fmt.Errorf("etcd member %s exited; last log lines:\n%s", m.Name, tail(m.Log, 10))
		}
		if e.serving(ctx, m) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd member %s: not serving (%v); see %s", m.Name, ctx.Err(), m.Log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serving reports whether member m answers a linearizable read (which
// needs a quorum) within a second.
func (e *EtcdState) serving(ctx context.Context, m EtcdMember) bool {
	cli, err := e.client([]string{m.ClientURL()})
	if err != nil {
		return false
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = cli.Get(cctx, "/vrouter/health")
	return err == nil
}

// Dialer opens TCP connections from the etcd network's namespace, so a
// process in any namespace (vrouter's commands run in the root one)
// reaches the members.
func (e *EtcdState) Dialer() func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if i := strings.Index(addr, "://"); i >= 0 {
			addr = addr[i+3:]
		}
		var c net.Conn
		err := netns.Do(e.Namespace, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return c, err
	}
}

// client returns an etcd client of endpoints, dialing through the etcd
// network; the caller closes it.
func (e *EtcdState) client(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(e.Dialer())},
	})
}

// OpenEtcd opens the IPAM datastore of etcd lab s from this process
// (dialing through the lab's etcd network); the caller closes it.
func (s *State) OpenEtcd(ctx context.Context) (*ipam.EtcdStore, error) {
	if s.Etcd == nil {
		return nil, fmt.Errorf("lab %s keeps its IPAM state in bbolt (%s), not etcd", s.Name, ipamPath(s.Dir))
	}
	return ipam.OpenEtcd(ctx, ipam.EtcdConfig{Endpoints: s.Etcd.Endpoints(), Dialer: s.Etcd.Dialer()})
}

// EtcdMemberStatus is what `vrouter inspect` shows of an etcd member.
type EtcdMemberStatus struct {
	EtcdMember
	Endpoint string `json:"endpoint"`
	// State: running (leader), running (follower), running (no quorum)
	// when its process runs but it does not serve, down, or missing (its
	// namespace was deleted outside vrouter).
	State string `json:"state"`
}

// EtcdStatus returns the state of every member of etcd lab s (none for a
// lab on bbolt).
func (s *State) EtcdStatus(ctx context.Context) []EtcdMemberStatus {
	if s.Etcd == nil {
		return nil
	}
	var out []EtcdMemberStatus
	for _, m := range s.Etcd.Members {
		out = append(out, EtcdMemberStatus{EtcdMember: m, Endpoint: m.ClientURL(), State: s.Etcd.memberState(ctx, m)})
	}
	return out
}

func (e *EtcdState) memberState(ctx context.Context, m EtcdMember) string {
	if !netns.Exists(m.Namespace) {
		return "missing"
	}
	if !processAlive(m.PIDFile) {
		return "down"
	}
	cli, err := e.client([]string{m.ClientURL()})
	if err != nil {
		return "running (no answer)"
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := cli.Status(cctx, m.ClientURL())
	if err != nil {
		return "running (no answer)"
	}
	if len(st.Errors) > 0 || st.Leader == 0 {
		return "running (no quorum)"
	}
	if st.Leader == st.Header.MemberId {
		return "running (leader)"
	}
	return "running (follower)"
}

// StopEtcdMember stops member name of etcd lab s: SIGTERM (SIGKILL after
// five seconds), or SIGKILL at once with kill, as a crash.
func (s *State) StopEtcdMember(name string, kill bool) error {
	m, err := s.etcdMember(name)
	if err != nil {
		return err
	}
	pid, ok := agentPID(m.PIDFile)
	if !ok {
		return fmt.Errorf("etcd member %s is not running", name)
	}
	if !kill {
		return stopAgent(m.PIDFile)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill etcd member %s (%d): %w", name, pid, err)
	}
	for i := 0; i < 250 && processAlive(m.PIDFile); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	waitReaped(pid, time.Now().Add(5*time.Second))
	return nil
}

// StartEtcdMember starts stopped member name of etcd lab s again, with
// its data; once a quorum of the members runs, it waits until the member
// serves or ctx ends. It returns whether the member serves.
func (s *State) StartEtcdMember(ctx context.Context, name string) (bool, error) {
	m, err := s.etcdMember(name)
	if err != nil {
		return false, err
	}
	if processAlive(m.PIDFile) {
		return false, fmt.Errorf("etcd member %s is already running", name)
	}
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	if err := startProcess(m.Namespace, s.Etcd.memberArgs(bin, s.Name, m), m.Log, m.PIDFile, nil); err != nil {
		return false, fmt.Errorf("etcd member %s: start: %w", m.Name, err)
	}
	running := 0
	for _, o := range s.Etcd.Members {
		if processAlive(o.PIDFile) {
			running++
		}
	}
	if running <= len(s.Etcd.Members)/2 {
		// No quorum yet: it serves once enough members run.
		if !processAlive(m.PIDFile) {
			return false, fmt.Errorf("etcd member %s exited; last log lines:\n%s", m.Name, tail(m.Log, 10))
		}
		return false, nil
	}
	if err := s.Etcd.waitServing(ctx, m); err != nil {
		return false, err
	}
	return true, nil
}

func (s *State) etcdMember(name string) (EtcdMember, error) {
	if s.Etcd == nil {
		return EtcdMember{}, fmt.Errorf("lab %s runs no etcd (its datastore is bbolt)", s.Name)
	}
	m, ok := s.Etcd.Member(name)
	if !ok {
		var names []string
		for _, o := range s.Etcd.Members {
			names = append(names, o.Name)
		}
		return EtcdMember{}, fmt.Errorf("lab %s has no etcd member %q (its members: %s)", s.Name, topology.Shorten(name), strings.Join(names, ", "))
	}
	return m, nil
}

// seedEtcd writes what the agents of etcd lab l read from etcd before
// they start: the default BGPConfiguration, with the lab's AS and
// node-to-node mesh setting (the agents write the IP pools themselves
// when etcd has none).
func seedEtcd(ctx context.Context, e *EtcdState, l *topology.Lab) error {
	if e == nil {
		return nil
	}
	store, err := ipam.OpenEtcd(ctx, ipam.EtcdConfig{Endpoints: e.Endpoints(), Dialer: e.Dialer()})
	if err != nil {
		return err
	}
	defer store.Close()
	mesh, asn := l.BGP.NodeToNodeMesh, l.BGP.ASNumber
	cfg := &resources.BGPConfiguration{
		TypeMeta: resources.TypeMeta{APIVersion: resources.APIVersion, Kind: resources.KindBGPConfiguration},
		Metadata: resources.Metadata{Name: "default"},
		Spec:     resources.BGPConfigurationSpec{NodeToNodeMeshEnabled: &mesh, ASNumber: &asn},
	}
	if err := resources.FromIPAM(store).Put(ctx, cfg); err != nil {
		return fmt.Errorf("etcd: write the lab's BGPConfiguration: %w", err)
	}
	return nil
}
